"""Decode audio files and ComfyUI waveforms into the float32 mono 16 kHz signal the encoders need.

PyAV (FFmpeg) does all decoding and resampling: it reads every container users bring (wav, mp3,
m4a/aac, flac, ogg, the audio track of mp4/mkv videos) and torchaudio does not work with the
torch builds this pack supports.

Channels are averaged by us rather than by FFmpeg's "mono" layout: FFmpeg mixes stereo as
0.707 * (L + R), which changes the level, while ComfyUI AUDIO waveforms are averaged in
`to_mono_16k`; doing both the same way gives the same features for a file and its ComfyUI tensor.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import torch

from ..errors import AudioError


def _resampler(rate: int) -> av.AudioResampler:
    # Planar float keeps channels apart so that they can be averaged afterwards.
    return av.AudioResampler(format="fltp", rate=rate)


def _frames_to_mono(frames) -> list[np.ndarray]:
    return [frame.to_ndarray().mean(axis=0, dtype=np.float32) for frame in frames]


def load_audio(path, sample_rate: int = 16000, start: float = 0.0, duration: float | None = None) -> torch.Tensor:
    """Decode the first audio stream of `path` to a float32 mono tensor [T] at `sample_rate`.

    `start` and `duration` are in seconds, measured from the first decoded sample; the result has
    exactly round(duration * sample_rate) samples unless the audio ends earlier (then it is
    shorter). Decoding stops as soon as the requested span is read.
    """
    waveform, _ = decode_audio(path, sample_rate, start, duration, mono=True)
    return waveform[0]


def decode_audio(path, sample_rate: int | None = None, start: float = 0.0, duration: float | None = None,
                 mono: bool = False) -> tuple[torch.Tensor, int]:
    """Decode the first audio stream of `path` → (float32 [C, T], rate): the file's own channels
    (or their average when `mono`) at `sample_rate` (None: the file's own rate). `start` /
    `duration` as in `load_audio`."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"Audio file not found: {path}. Check the path or pick another file.")
    if start < 0 or (duration is not None and duration <= 0):
        raise AudioError(f"Invalid span for {path}: start={start}, duration={duration}; "
                         "start must be >= 0 and duration > 0 (or None for the whole file).")
    chunks: list[np.ndarray] = []  # [C, t] pieces
    have = 0  # samples decoded so far, counted from the first decoded sample
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioError(f"{path} has no audio track. Use a file that contains sound.")
            stream = container.streams.audio[0]
            sample_rate = int(sample_rate or stream.rate or stream.codec_context.sample_rate)
            skip = round(start * sample_rate)
            wanted = None if duration is None else round(duration * sample_rate)
            resampler = _resampler(sample_rate)

            def take(frames) -> bool:
                """Keep the part of `frames` inside the span; True once the span is complete."""
                nonlocal have
                for frame in frames:
                    data = frame.to_ndarray().astype(np.float32, copy=False)
                    if mono:
                        data = data.mean(axis=0, keepdims=True, dtype=np.float32)
                    lo = min(max(skip - have, 0), data.shape[1])
                    have += data.shape[1]
                    chunks.append(data[:, lo:])
                    if wanted is not None and have >= skip + wanted:
                        return True
                return False

            done = False
            for frame in container.decode(stream):
                if take(resampler.resample(frame)):
                    done = True
                    break
            if not done:
                take(resampler.resample(None))
    except AudioError:
        raise
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as err:
        raise AudioError(f"Cannot decode audio from {path}: {err}. The file is damaged or not an "
                         "audio/video file; re-export it as wav, mp3, m4a or flac.") from err

    audio = np.concatenate(chunks, axis=1) if chunks else np.zeros((1, 0), np.float32)
    if wanted is not None:
        audio = audio[:, :wanted]
    if audio.shape[1] == 0:
        if have and skip >= have:
            raise AudioError(f"start={start} s is past the end of {path} "
                             f"({have / sample_rate:.2f} s long). Use a smaller start.")
        raise AudioError(f"{path} contains no audio samples. Use a file that contains sound.")
    return torch.from_numpy(np.ascontiguousarray(audio)), sample_rate


def to_mono_16k(waveform: torch.Tensor, sample_rate: int, target_rate: int = 16000) -> torch.Tensor:
    """Average the channels of a ComfyUI AUDIO waveform ([B, C, T], [C, T] or [T]) and resample.

    Batched input is averaged over the batch too: a ComfyUI AUDIO holds one clip in practice.
    Returns float32 [round(T * target_rate / sample_rate)] on the CPU.
    """
    if waveform.ndim not in (1, 2, 3) or waveform.shape[-1] == 0:
        raise AudioError(f"Expected an audio waveform shaped [B, C, T], [C, T] or [T] with T > 0, "
                         f"got shape {tuple(waveform.shape)}. Connect a ComfyUI AUDIO output.")
    mono = waveform.detach().to("cpu", torch.float32).reshape(-1, waveform.shape[-1]).mean(dim=0)
    if sample_rate == target_rate:
        return mono.contiguous()

    frame = av.AudioFrame.from_ndarray(mono.numpy()[None], format="fltp", layout="mono")
    frame.sample_rate = int(sample_rate)
    resampler = _resampler(target_rate)
    parts = _frames_to_mono(resampler.resample(frame) + resampler.resample(None))
    out = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    # FFmpeg may emit a sample more or less than the exact ratio; make the length predictable.
    length = round(len(mono) * target_rate / sample_rate)
    out = np.pad(out[:length], (0, max(0, length - len(out))))
    return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))
