"""Reference portrait preparation: any size, aspect, alpha or grayscale → [3, H, W] in 0..1.

- grayscale is replicated to RGB; an alpha channel is composited over white (cut-out portraits
  usually come on a transparent background, and white is what such photos are shown on);
- mode "crop" (default) scales the shorter side to fit and centre-crops the rest, "pad"
  letterboxes the whole image on white, "stretch" resizes ignoring aspect;
- the target size must be a multiple of 8 (the VAE's factor).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InputError

RESIZE_MODES = ("crop", "pad", "stretch")


def to_rgb_tensor(image) -> torch.Tensor:
    """PIL image, numpy array or tensor ([H,W], [H,W,C], [1,H,W,C] 0..1 or uint8) → float [3, H, W]."""
    if hasattr(image, "mode") and hasattr(image, "convert"):  # PIL
        image = np.asarray(image.convert("RGBA") if image.mode in ("P", "LA", "PA") else image)
    # np.array copies: arrays from PIL are read-only, which torch warns about
    x = torch.as_tensor(np.array(image)) if not isinstance(image, torch.Tensor) else image
    if x.ndim == 4:
        if x.shape[0] != 1:
            raise InputError(f"expected one reference image, got a batch of {x.shape[0]}")
        x = x[0]
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3 or x.shape[-1] not in (1, 2, 3, 4):
        raise InputError(f"reference image must be [H, W] or [H, W, C] with C in 1..4, got shape {tuple(x.shape)}")
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    if x.shape[-1] in (2, 4):  # composite alpha over white
        color, alpha = x[..., :-1], x[..., -1:].clamp(0, 1)
        x = color * alpha + (1 - alpha)
    if x.shape[-1] == 1:
        x = x.expand(*x.shape[:2], 3)
    if x.shape[0] < 8 or x.shape[1] < 8:
        raise InputError(f"reference image of {x.shape[1]}x{x.shape[0]} pixels is too small")
    return x.clamp(0, 1).permute(2, 0, 1).contiguous()


def prepare_image(image, height: int, width: int, mode: str = "crop") -> torch.Tensor:
    """Reference portrait → [3, height, width] float in 0..1, following `mode` (see module doc)."""
    check_size_and_mode(height, width, mode)
    return fit(to_rgb_tensor(image), height, width, mode, fill=1.0)


def check_size_and_mode(height: int, width: int, mode: str) -> None:
    if mode not in RESIZE_MODES:
        raise InputError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")
    if height % 8 or width % 8 or height < 8 or width < 8:
        raise InputError(f"output size {width}x{height} must be positive multiples of 8")


def fit(x: torch.Tensor, height: int, width: int, mode: str, fill: float) -> torch.Tensor:
    """[C, h, w] → [C, height, width] by `mode`; "pad" fills the margins with `fill`."""
    h, w = x.shape[1:]
    if mode == "stretch":
        return _resize(x, height, width)
    scale = max(height / h, width / w) if mode == "crop" else min(height / h, width / w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    x = _resize(x, nh, nw)
    if mode == "crop":
        top, left = (nh - height) // 2, (nw - width) // 2
        return x[:, top:top + height, left:left + width]
    canvas = torch.full((x.shape[0], height, width), fill)
    top, left = (height - nh) // 2, (width - nw) // 2
    canvas[:, top:top + nh, left:left + nw] = x
    return canvas


def _resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    if x.shape[1:] == (height, width):
        return x
    out = F.interpolate(x[None], size=(height, width), mode="bicubic", antialias=True, align_corners=False)
    return out[0].clamp(0, 1)


def prepare_mask(mask, height: int, width: int, mode: str = "stretch", image_size: tuple[int, int] | None = None
                 ) -> torch.Tensor:
    """Face-region mask ([H, W] or [1, H, W], 0..1 or 0..255) → [1, 1, height, width] in 0..1.

    `image_size` (h, w) is the size of the portrait the mask belongs to: a mask of another size is
    first stretched onto it, then both go through the same `mode` geometry as `prepare_image`, so
    the mask stays on the face whatever the crop or padding. Without it the mask is just resized.
    """
    m = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask).float()
    while m.ndim > 2 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 2:
        raise InputError(f"face mask must be [H, W], got shape {tuple(m.shape)}")
    if m.max() > 1:
        m = m / 255.0
    check_size_and_mode(height, width, mode)
    m = m[None]
    if image_size is not None and tuple(m.shape[1:]) != tuple(image_size):
        m = F.interpolate(m[None], size=tuple(image_size), mode="bilinear", align_corners=False)[0]
    if image_size is None:
        mode = "stretch"
    if mode == "stretch":
        m = F.interpolate(m[None], size=(height, width), mode="bilinear", align_corners=False)[0]
    else:
        m = fit(m, height, width, mode, fill=0.0)
    return m[None].clamp(0, 1)
