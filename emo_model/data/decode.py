"""Decode a source video for data preparation: facts up front, then frames resampled to a fixed fps.

Frames are resampled by timestamps, not by count, so variable-frame-rate phone videos come out at
the training fps with correct timing: output frame i (time i / fps from the first frame) is the
source frame on screen at that moment. Frames are handed out one at a time, so memory holds one
clip, never the whole video.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import av
import numpy as np

# Timestamps that go backwards after decoding mean a broken file; a few are tolerated (dropped).
_MAX_BACKWARD_SHARE = 0.1


class SkipVideo(Exception):
    """This video (or the rest of it) cannot become training data; the message is the reason."""


@dataclass(frozen=True)
class VideoFacts:
    seconds: float  # the video track's length
    width: int
    height: int
    audio_offset: float  # seconds from the first video frame to the first audio sample


def probe(path: Path) -> VideoFacts:
    """Container facts without decoding frames; SkipVideo for unreadable files and missing tracks."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise SkipVideo("no video track")
            video = container.streams.video[0]
            if not container.streams.audio:
                raise SkipVideo("no audio track")
            audio = container.streams.audio[0]
            seconds = _stream_seconds(video, container)
            width, height = video.codec_context.width, video.codec_context.height
            offset = _start(audio) - _start(video)
    except (av.FFmpegError, UnicodeDecodeError) as e:
        raise SkipVideo(f"unreadable ({e})") from e
    if not width or not height:
        raise SkipVideo("video track has no picture size")
    if not seconds or not math.isfinite(seconds):
        raise SkipVideo("video length unknown (no duration in the container)")
    return VideoFacts(seconds, width, height, offset)


def _start(stream) -> float:
    return float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0


def _stream_seconds(video, container) -> float:
    if video.duration is not None:
        return float(video.duration * video.time_base)
    if container.duration is not None:  # microseconds, measured from the container's start
        return container.duration / 1e6 - _start(video)
    return 0.0


def resampled_frames(path: Path, fps: float) -> Iterator[np.ndarray]:
    """RGB uint8 [H, W, 3] frames at `fps`, from the first frame to the end of the video track.

    Raises SkipVideo (at the point of failure: frames already handed out stay valid) when frames
    carry no timestamps, when timestamps run backwards too often, or when decoding fails.
    """
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            yield from _resample(container.decode(stream), stream, fps)
    except (av.FFmpegError, UnicodeDecodeError) as e:
        raise SkipVideo(f"decoding failed ({e})") from e


def _resample(frames, stream, fps: float) -> Iterator[np.ndarray]:
    start = last = None
    shown = None  # the source frame on screen now, decoded lazily (dropped frames are never converted)
    image = None
    emitted = backward = seen = 0
    step = 1 / float(stream.average_rate or stream.guessed_rate or fps)
    for frame in frames:
        if frame.pts is None:
            raise SkipVideo("video frames carry no timestamps")
        t = float(frame.pts * stream.time_base)
        start = t if start is None else start
        t -= start
        seen += 1
        if last is not None and t <= last:
            backward += 1
            if backward > 10 and backward > _MAX_BACKWARD_SHARE * seen:
                raise SkipVideo(f"broken timestamps ({backward} of {seen} frames go backwards)")
            continue
        while shown is not None and emitted / fps < t - 1e-4:
            image = shown.to_ndarray(format="rgb24") if image is None else image
            yield image
            emitted += 1
        shown, image, last = frame, None, t
    # The last frame stays on screen for one source frame interval.
    while shown is not None and emitted / fps < last + step - 1e-4:
        image = shown.to_ndarray(format="rgb24") if image is None else image
        yield image
        emitted += 1
