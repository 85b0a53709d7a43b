"""Colour matching of generated frames to the reference portrait.

Diffusion models drift in colour: a small model trained on few identities paints a yellow shirt
orange or a beige wall pink, and each clip-by-clip generation may drift its own way. Shifting the
frames' mean colour onto the portrait's (the mean part of Reinhard et al. 2001's colour transfer,
in RGB) removes the cast the whole frame shares, without touching shapes, motion or the mouth; drift
that differs across the frame (shirt one way, background another) stays.

- "video": one shift for the whole batch (the frames' mean over all of them). Frame-to-frame changes
  stay exactly as generated, so no flicker is added; a talking head's mean colour barely changes.
- "frame": every frame shifted onto the portrait on its own; also removes drift that changes along
  the video, at the cost of also flattening real changes of the frame mean (a hand entering).
"""
from __future__ import annotations

import torch

from .errors import InputError

COLOR_MATCH_MODES = ("video", "frame")


def match_color(frames: torch.Tensor, reference: torch.Tensor, mode: str = "video", strength: float = 1.0
                ) -> torch.Tensor:
    """Shift frames [N, H, W, 3] so that their mean colour meets the reference's ([H', W', 3] or
    [1, H', W', 3], any size) by `strength` (0 = unchanged, 1 = fully). Float tensors are in 0..1,
    uint8 in 0..255; the result has the frames' dtype and is clamped to its range (strength 0
    returns the frames as they are)."""
    if mode not in COLOR_MATCH_MODES:
        raise InputError(f"colour match mode must be one of {COLOR_MATCH_MODES}, got {mode!r}")
    if not 0.0 <= strength <= 1.0:
        raise InputError(f"colour match strength must lie in 0..1, got {strength}")
    for name, x in (("frames", frames), ("reference", reference)):
        if not (x.dtype == torch.uint8 or x.is_floating_point()):
            raise InputError(f"{name} must be uint8 (0..255) or float (0..1), got {x.dtype}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise InputError(f"frames must be a non-empty batch [N, H, W, 3], got shape {tuple(frames.shape)}")
    if reference.ndim == 4 and len(reference) == 1:
        reference = reference[0]
    if reference.ndim != 3 or reference.shape[-1] != 3:
        raise InputError(f"reference must be one RGB image [H, W, 3], got shape {tuple(reference.shape)}")
    if strength == 0:
        return frames
    target = _unit(reference.to(frames.device)).mean(dim=(0, 1))
    x = _unit(frames)
    current = x.mean(dim=(0, 1, 2), keepdim=True) if mode == "video" else x.mean(dim=(1, 2), keepdim=True)
    out = (x + strength * (target - current)).clamp(0, 1)
    return (out * 255).round().to(torch.uint8) if frames.dtype == torch.uint8 else out.to(frames.dtype)


def _unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 or float 0..1 → float32 0..1."""
    return x.float() / 255 if x.dtype == torch.uint8 else x.float()
