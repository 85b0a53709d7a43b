"""Measurements on frames of synthetic cartoon heads (generated or rendered), for the benchmark.

Each works from what the renderer guarantees (render.py), so it can be checked on ground-truth
renders first (the benchmark prints that row as the measurements' own calibration):
- mouth opening: darkness inside the mouth box of the reference pose (the mouth interior is the
  only near-black colour below the eyes);
- head roll: the in-plane rotation about the face centre that best maps the reference frame onto a
  frame (masked least squares over a grid of angles and small shifts, then a finer angle grid);
- head speed: mean |Δroll| per frame of the lightly smoothed roll track;
- frame change: mean absolute pixel difference of consecutive frames, split into those across a
  clip boundary and those within clips (continuity);
- PSNR and SSIM (scikit-image) against reference frames.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch
import torch.nn.functional as F
from skimage.metrics import structural_similarity


def mouth_opening(frames: np.ndarray, mouth_box, margin: float = 1.0) -> np.ndarray:
    """Darkness of the mouth box in each frame, uint8 [N, H, W, 3] → float [N] (0 = closed).

    The box (x0, y0, x1, y1 in pixels, where the fully open mouth lies) is widened by `margin` pixels.
    A pixel counts by how far its channel sum is below 200 (the interior sums to 64, skin and lips far above).
    """
    h, w = frames.shape[1:3]
    x0, y0, x1, y1 = mouth_box
    x0, y0 = max(int(math.floor(x0 - margin)), 0), max(int(math.floor(y0 - margin)), 0)
    x1, y1 = min(int(math.ceil(x1 + margin)), w), min(int(math.ceil(y1 + margin)), h)
    patch = frames[:, y0:y1, x0:x1].astype(np.float32).sum(axis=3)
    return np.clip((200.0 - patch) / 200.0, 0.0, 1.0).sum(axis=(1, 2))


def _rotations(reference: torch.Tensor, centre, angles, shifts) -> torch.Tensor:
    """reference [3, H, W] turned by each angle (degrees, counter-clockwise on screen) about `centre`
    (x, y pixels), then shifted by each (sx, sy) pixels → [len(angles) * len(shifts), 3, H, W]."""
    _, h, w = reference.shape
    to_unit = torch.tensor([[2 / w, 0, 1 / w - 1], [0, 2 / h, 1 / h - 1], [0, 0, 1]], dtype=torch.float64)
    c = torch.tensor(centre, dtype=torch.float64)
    theta = []
    for a in angles:
        t = math.radians(a)
        # On screen (y down) a counter-clockwise turn maps offsets (x, y) → (x cos + y sin, -x sin + y cos);
        # the grid needs, for each output pixel p, its source: R⁻¹ (p − c − shift) + c.
        inverse = torch.tensor([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]], dtype=torch.float64)
        for shift in shifts:
            source = torch.eye(3, dtype=torch.float64)
            source[:2, :2] = inverse
            source[:2, 2] = c - inverse @ (c + torch.tensor(shift, dtype=torch.float64))
            theta.append((to_unit @ source @ torch.linalg.inv(to_unit))[:2])
    theta = torch.stack(theta).float()
    grid = F.affine_grid(theta, [len(theta), 3, h, w], align_corners=False)
    return F.grid_sample(reference[None].expand(len(theta), -1, -1, -1), grid, mode="bilinear",
                         padding_mode="border", align_corners=False)


def _best_pose(frames: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor, centre, angles, shifts):
    """For each frame [N, 3, H, W], the (angle, shift) whose transformed reference is nearest in the mask."""
    candidates = (_rotations(reference, centre, angles, shifts) * mask).flatten(1)
    x = (frames * mask).flatten(1)
    # ||x − c||² = ||x||² − 2 x·c + ||c||², every (frame, candidate) pair in one matmul.
    cost = x.pow(2).sum(1, keepdim=True) - 2 * x @ candidates.T + candidates.pow(2).sum(1)[None]
    index = cost.argmin(1).tolist()
    return [angles[i // len(shifts)] for i in index], [shifts[i % len(shifts)] for i in index]


def head_roll(frames: np.ndarray, reference: np.ndarray, centre, region, max_roll: float = 30.0,
              max_shift: int = 3) -> np.ndarray:
    """Roll of each frame relative to `reference`, degrees [N] (counter-clockwise on screen positive).

    frames uint8 [N, H, W, 3]; reference uint8 [H, W, 3]; centre (x, y) of the reference face;
    region (x0, y0, x1, y1): the pixels compared (the face and hair, where rotation shows).
    """
    x = torch.from_numpy(np.array(frames)).permute(0, 3, 1, 2).float() / 255
    ref = torch.from_numpy(np.array(reference)).permute(2, 0, 1).float() / 255
    h, w = ref.shape[-2:]
    mask = torch.zeros(1, h, w)
    x0, y0, x1, y1 = region
    mask[:, max(int(y0), 0):min(int(math.ceil(y1)), h), max(int(x0), 0):min(int(math.ceil(x1)), w)] = 1
    coarse = [float(a) for a in np.arange(-max_roll, max_roll + 0.5, 1.0)]
    shifts = [(float(sx), float(sy)) for sx in range(-max_shift, max_shift + 1) for sy in range(-max_shift, max_shift + 1)]
    angles, found = _best_pose(x, ref, mask, centre, coarse, shifts)
    out = np.empty(len(frames))
    for i in range(len(frames)):  # refine: 0.1° steps around the coarse angle, half-pixel shifts
        fine = [angles[i] + d for d in np.linspace(-1.0, 1.0, 21)]
        near = [(found[i][0] + dx, found[i][1] + dy) for dx in (-0.5, 0.0, 0.5) for dy in (-0.5, 0.0, 0.5)]
        out[i] = _best_pose(x[i:i + 1], ref, mask, centre, fine, near)[0][0]
    return out


def head_speed(roll: np.ndarray, smooth: int = 5) -> float:
    """Mean |Δroll| in degrees per frame after a centred moving average of `smooth` frames."""
    if len(roll) < smooth + 2:
        raise ValueError(f"need more than {smooth + 1} frames to measure head speed, got {len(roll)}")
    kernel = np.ones(smooth) / smooth
    track = np.convolve(roll, kernel, mode="valid")
    return float(np.abs(np.diff(track)).mean())


def frame_changes(frames: np.ndarray, clip_starts) -> tuple[float, float]:
    """(mean change across clip boundaries, mean change within clips) of uint8 frames [N, H, W, 3].
    change t = mean |frame t − frame t−1|; t is a boundary when a clip starts there. `clip_starts`: the
    first frame of every clip, or an int f for clips of f frames."""
    diffs = np.abs(np.diff(frames.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))
    t = np.arange(1, len(frames))
    starts = list(range(0, len(frames), int(clip_starts)) if isinstance(clip_starts, numbers.Integral) else clip_starts)
    boundary = np.isin(t, starts)
    if not boundary.any() or boundary.all():
        raise ValueError(f"{len(frames)} frames in clips starting at {starts}: need at least one boundary "
                         "and one within-clip pair")
    return float(diffs[boundary].mean()), float(diffs[~boundary].mean())


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Mean per-frame PSNR (dB) of uint8 frames [N, H, W, 3]."""
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).reshape(len(a), -1).mean(axis=1)
    return float(np.mean(10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-10))))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean per-frame SSIM of uint8 frames [N, H, W, 3] (7x7 windows, colour channels)."""
    return float(np.mean([structural_similarity(x, y, channel_axis=2, data_range=255) for x, y in zip(a, b)]))
