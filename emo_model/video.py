"""Write and read H.264/AAC mp4 files with PyAV (FFmpeg), the format every player and browser takes.

Writing is atomic: the file is encoded into a hidden temporary file next to the target and renamed
over it only when complete, so a crash or a cancel never leaves a half-written video behind.
H.264 in yuv420p needs an even width and height; odd sizes are padded by repeating the last row /
column (one pixel, invisible) rather than cropped, so no picture content is lost.
"""
from __future__ import annotations

import math
import os
import uuid
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from .errors import InputError

# Frames converted to uint8 and encoded per step: bounds the extra memory to a chunk, not a video.
_CHUNK = 16
# Sample rates of the MPEG-4 audio table that FFmpeg's AAC encoder accepts.
_AAC_RATES = tuple(sorted(av.codec.Codec("aac", "w").audio_rates))


@dataclass
class VideoData:
    frames: np.ndarray  # uint8 [N, H, W, 3]
    fps: float
    audio: np.ndarray | None  # float32 [C, T] in -1..1, trimmed to N / fps
    sample_rate: int | None


def write_video(path: str | os.PathLike, frames, fps: float, audio=None, sample_rate: int | None = None,
                crf: int = 19, preset: str = "medium") -> Path:
    """Encode `frames` ([N, H, W, 3], uint8 or float 0..1; torch or numpy) and optional `audio`
    ([C, T] or [T] float in -1..1 at `sample_rate`) into an H.264/AAC mp4 at `path`.

    The audio is cut or padded with silence to exactly N / fps seconds; two or more channels are
    written as stereo (the first two), one as mono. Returns the path written.
    """
    path = Path(path)
    count, height, width = _check_frames(frames)
    try:
        fps = float(fps)  # numpy scalars included
    except (TypeError, ValueError):
        fps = math.nan
    if not (math.isfinite(fps) and fps > 0):
        raise InputError(f"fps must be a number > 0, got {fps!r}.")
    rate = Fraction(fps).limit_denominator(1001)
    if audio is not None:
        audio, sample_rate = _prepare_audio(audio, sample_rate, count / rate)

    tmp = _claim_temp(path)
    try:
        with av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
            _encode(container, frames, count, width, height, rate, crf, preset, audio, sample_rate)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # KeyboardInterrupt / ComfyUI cancel included: never leave a partial file
        tmp.unlink(missing_ok=True)
        raise
    return path


def _check_frames(frames) -> tuple[int, int, int]:
    if not isinstance(frames, (torch.Tensor, np.ndarray)):
        raise InputError(f"frames must be a torch tensor or numpy array [N, H, W, 3], got {type(frames).__name__}.")
    if frames.ndim != 4 or frames.shape[-1] != 3 or 0 in frames.shape:
        raise InputError(f"frames must be shaped [N, H, W, 3] with N, H, W > 0 (RGB), got {tuple(frames.shape)}.")
    if isinstance(frames, torch.Tensor):
        usable = frames.dtype == torch.uint8 or frames.is_floating_point()
    else:
        usable = frames.dtype == np.uint8 or np.issubdtype(frames.dtype, np.floating)
    if not usable:
        raise InputError(f"frames must be uint8 (0..255) or float (0..1), got {frames.dtype}.")
    return frames.shape[0], frames.shape[1], frames.shape[2]


def _prepare_audio(audio, sample_rate, seconds: Fraction) -> tuple[np.ndarray, int]:
    """float32 [C, T] (C = 1 or 2) at an AAC sample rate, exactly `seconds` long."""
    if sample_rate is None or sample_rate <= 0:
        raise InputError(f"audio needs its sample rate (an integer > 0), got sample_rate={sample_rate!r}.")
    wave = audio.detach().cpu().float().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio, np.float32)
    if wave.ndim == 1:
        wave = wave[None]
    if wave.ndim != 2 or wave.shape[0] == 0:
        raise InputError(f"audio must be shaped [channels, samples] or [samples], got {tuple(wave.shape)}.")
    wave = np.ascontiguousarray(wave[:2], dtype=np.float32)
    rate = int(sample_rate)
    if rate not in _AAC_RATES:
        target = min((r for r in _AAC_RATES if r >= rate), default=_AAC_RATES[-1])
        wave, rate = _resample(wave, rate, target), target
    length = round(seconds * rate)
    wave = np.pad(wave[:, :length], ((0, 0), (0, max(0, length - wave.shape[1]))))
    return np.ascontiguousarray(wave), rate


def _resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    frame = av.AudioFrame.from_ndarray(wave, format="fltp", layout=_layout(wave))
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="fltp", layout=_layout(wave), rate=target)
    parts = [f.to_ndarray() for f in resampler.resample(frame) + resampler.resample(None)]
    return np.concatenate(parts, axis=1) if parts else np.zeros((wave.shape[0], 0), np.float32)


def _layout(wave: np.ndarray) -> str:
    return "stereo" if wave.shape[0] == 2 else "mono"


def _claim_temp(path: Path) -> Path:
    """Create the hidden temp file next to `path`; a folder we cannot write to fails here, before encoding."""
    folder = path.parent
    if not folder.is_dir():
        raise InputError(f"Output folder {folder} does not exist (or is not a folder). "
                         "Create it first or choose an existing output folder.")
    # Same folder, so os.replace is a rename: readers see no file or the whole video.
    tmp = folder / f".{path.stem}.{uuid.uuid4().hex[:8]}.part.mp4"
    try:
        open(tmp, "xb").close()
    except OSError as e:
        raise InputError(f"Cannot write to the output folder {folder} ({e.strerror}). "
                         "Choose a folder you have write permission for, or free some disk space.") from e
    return tmp


def _encode(container, frames, count, width, height, rate, crf, preset, audio, sample_rate) -> None:
    video = container.add_stream("libx264", rate=rate, options={"crf": str(crf), "preset": preset})
    video.width, video.height = width + width % 2, height + height % 2
    video.pix_fmt = "yuv420p"
    sound = fifo = None
    if audio is not None:
        sound = container.add_stream("aac", rate=sample_rate, layout=_layout(audio))
        fifo = av.AudioFifo()
    sent = 0  # audio samples handed to the fifo so far

    for start in range(0, count, _CHUNK):
        upto = 0 if audio is None else audio.shape[1] * min(start + _CHUNK, count) // count
        chunk = _to_uint8(frames[start:start + _CHUNK])
        if width % 2 or height % 2:
            chunk = np.pad(chunk, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        for image in chunk:
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        if sound is not None and upto > sent:
            # Feed the audio along with the video so the muxer interleaves without buffering all of it.
            piece = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[:, sent:upto]), format="fltp",
                                               layout=_layout(audio))
            piece.sample_rate, piece.pts, piece.time_base = sample_rate, sent, Fraction(1, sample_rate)
            fifo.write(piece)
            sent = upto
            for block in fifo.read_many(sound.codec_context.frame_size):
                container.mux(sound.encode(block))
    container.mux(video.encode(None))
    if sound is not None:
        last = fifo.read()  # the last, shorter block (AAC takes a short final frame)
        if last is not None:
            container.mux(sound.encode(last))
        container.mux(sound.encode(None))


def _to_uint8(chunk) -> np.ndarray:
    chunk = torch.as_tensor(chunk)
    if chunk.dtype != torch.uint8:
        # Converted on the frames' device, so only uint8 crosses to the CPU.
        chunk = (chunk.float().clamp(0, 1) * 255).round().to(torch.uint8)
    return chunk.cpu().numpy()


def read_video(path: str | os.PathLike) -> VideoData:
    """Decode a video file: all frames as RGB uint8, audio (if any) as float32 [C, T] trimmed to N / fps."""
    path = _existing(path)
    images, parts = [], []
    try:
        with av.open(str(path)) as container:
            video = _video_stream(container, path)
            sound = container.streams.audio[0] if container.streams.audio else None
            fps = float(video.average_rate or video.guessed_rate)
            resampler = av.AudioResampler(format="fltp")  # whatever the decoder gives, as planar float
            for frame in container.decode(*[s for s in (video, sound) if s is not None]):
                if isinstance(frame, av.VideoFrame):
                    images.append(frame.to_ndarray(format="rgb24"))
                else:
                    parts += [f.to_ndarray() for f in resampler.resample(frame)]
            parts += [f.to_ndarray() for f in resampler.resample(None)] if sound is not None else []
    except (av.FFmpegError, UnicodeDecodeError) as e:
        raise InputError(f"Cannot decode {path}: {e}. The file is damaged or not a video.") from e
    if not images:
        raise InputError(f"{path} contains no video frames. Use another video file.")
    audio = sample_rate = None
    if parts:
        sample_rate = sound.codec_context.sample_rate
        # AAC pads its last frame; the real track is exactly as long as the video.
        audio = np.ascontiguousarray(np.concatenate(parts, axis=1)[:, :round(len(images) * sample_rate / fps)],
                                     dtype=np.float32)
    return VideoData(np.stack(images), fps, audio, sample_rate)


def probe_video(path: str | os.PathLike) -> dict:
    """Stream facts from the container headers (no decoding, except counting packets when the
    container does not store the frame count)."""
    path = _existing(path)
    try:
        with av.open(str(path)) as container:
            video = _video_stream(container, path)
            sound = container.streams.audio[0] if container.streams.audio else None
            frames = video.frames or sum(1 for p in container.demux(video) if p.size)
            audio_seconds = None
            if sound is not None and sound.duration is not None:
                audio_seconds = float(sound.duration * sound.time_base)
            return {
                "frames": frames,
                "fps": float(video.average_rate or video.guessed_rate),
                "width": video.codec_context.width,
                "height": video.codec_context.height,
                "has_audio": sound is not None,
                "audio_seconds": audio_seconds,
                "video_codec": video.codec_context.name,
                "audio_codec": sound.codec_context.name if sound is not None else None,
            }
    except (av.FFmpegError, UnicodeDecodeError) as e:
        raise InputError(f"Cannot read {path}: {e}. The file is damaged or not a video.") from e


def _video_stream(container, path: Path):
    if not container.streams.video:
        raise InputError(f"{path} has no video track. Use a video file.")
    return container.streams.video[0]


def _existing(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Video file not found: {path}. Check the path or pick another file.")
    return path
