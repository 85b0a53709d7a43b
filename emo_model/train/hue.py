"""Hue augmentation: turn the hue of whole images at constant luma, so that a model trained on few
palettes cannot learn the palettes themselves (the EMO trainer's and the VAE trainer's `hue_augment`)."""
from __future__ import annotations

import math

import torch

# RGB <-> YIQ (NTSC): Y is luma, I and Q the chroma plane; turning (I, Q) rotates the hue at constant luma.
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


def hue_angles(size: int, share: float, g: torch.Generator) -> torch.Tensor:
    """[size] radians: uniform in -pi..pi for a `share` of the samples, 0 for the rest."""
    turned = torch.rand(size, generator=g) < share
    return torch.where(turned, (torch.rand(size, generator=g) * 2 - 1) * math.pi, torch.zeros(size))


def hue_matrices(angles: torch.Tensor) -> torch.Tensor:
    """[B] radians -> [B, 3, 3] RGB matrices that turn the hue by each angle."""
    c, s = torch.cos(angles), torch.sin(angles)
    turn = torch.zeros(len(angles), 3, 3)
    turn[:, 0, 0] = 1.0
    turn[:, 1, 1], turn[:, 1, 2], turn[:, 2, 1], turn[:, 2, 2] = c, -s, s, c
    return _YIQ_TO_RGB @ turn @ _RGB_TO_YIQ


def turn_hues(pixels: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """Sample b of `pixels` [B, ..., 3, H, W] (0..1) turned by matrices[b], clipped to 0..1."""
    m = matrices.reshape(len(matrices), *([1] * (pixels.ndim - 4)), 3, 3).to(pixels)
    return torch.einsum("...ij,...jhw->...ihw", m, pixels).clamp(0, 1)
