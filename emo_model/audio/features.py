"""Align audio-encoder features with video frames and cut the paper's per-frame windows.

Time convention used throughout: item i of a sequence sampled at `rate` Hz stands for the interval
[i / rate, (i + 1) / rate) and is located at its centre (i + 0.5) / rate. This holds for video
frames (rate = fps) and for encoder features (rate = the encoder's feature rate, 50 Hz for
wav2vec2 and Whisper; their true receptive-field centres differ from this by under 10 ms, a
third of a 30 fps frame).
"""

from __future__ import annotations

import math

import torch

from ..errors import AudioError


def num_video_frames(num_samples: int, sample_rate: float, fps: float) -> int:
    """Number of video frames fully covered by `num_samples` of audio: floor(duration * fps).

    A tolerance of 1e-6 frame absorbs float error, so 1 s of audio at 25 fps is 25 frames, not 24.
    """
    return math.floor(num_samples * fps / sample_rate + 1e-6)


def features_to_fps(features: torch.Tensor, feature_rate: float, fps: float, num_frames: int) -> torch.Tensor:
    """Resample features [T', L, D] to [num_frames, L, D] at `fps`.

    Frame i is sampled at its centre (i + 0.5) / fps by linear interpolation between the two
    nearest features (see the module's time convention); times beyond the first or last feature
    take that feature (edge clamp), so `num_frames` may ask for slightly more than the audio covers.
    """
    if features.ndim != 3 or features.shape[0] == 0:
        raise AudioError(f"Expected audio features shaped [T, L, D] with T > 0, got {tuple(features.shape)}; "
                         "the audio is probably empty or too short.")
    # Position of each frame centre in feature-index units (feature j sits at index j).
    pos = (torch.arange(num_frames, dtype=torch.float64) + 0.5) * (feature_rate / fps) - 0.5
    pos = pos.clamp(0, features.shape[0] - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=features.shape[0] - 1)
    w = (pos - lo).to(features.dtype).view(-1, 1, 1)
    return features[lo] * (1 - w) + features[hi] * w


def frame_windows(frame_features: torch.Tensor, radius: int = 2, frames: torch.Tensor | None = None) -> torch.Tensor:
    """Stack each frame's neighbours: [N, L, D] -> [len(frames), 2 * radius + 1, L, D] (paper §3.2, m = 2).

    Window of frame i holds frames i - radius .. i + radius; indices outside [0, N) repeat the
    first or last frame, so the edge frames still get a full window. `frames` (default: all)
    selects the frames to build windows for, so a sampler builds one clip's windows at a time.
    """
    n = frame_features.shape[0]
    if n == 0:
        raise AudioError("No video frames to build audio windows for; the audio is shorter than one frame.")
    frames = torch.arange(n) if frames is None else frames
    idx = (frames.view(-1, 1) + torch.arange(-radius, radius + 1).view(1, -1)).clamp(0, n - 1)
    return frame_features[idx]
