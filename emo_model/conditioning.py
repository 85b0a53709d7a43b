"""What one UNet pass attends to besides its input, passed explicitly down the blocks.

ReferenceNet fills a `FeatureCapture`; the Backbone reads the same features back from its
`Conditioning`. Blocks find their entry by the index they were given at construction, so no
module holds hidden state between calls (no patched forwards, no global feature bank).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class FeatureCapture:
    """ReferenceNet outputs, in the Backbone's block order."""

    spatial: list[torch.Tensor] | None = None   # input of each attn1: [B, H*W, C] (reference image)
    temporal: list[torch.Tensor] | None = None  # hidden state at each temporal slot: [B, C, H, W] (motion frames)


@dataclass
class Conditioning:
    """Per-call inputs of the Backbone. `num_frames` generated frames per sample (batch-major)."""

    num_frames: int = 1
    reference: list[torch.Tensor] | None = None  # per transformer block, [B or 1, L_ref, C]
    reference_keep: torch.Tensor | None = None   # [B] bool; False = no reference (CFG / dropout)
    audio: torch.Tensor | None = None            # [B*F or F, K, D] audio tokens per frame (F: shared)
    audio_keep: torch.Tensor | None = None       # [B] bool; False = no audio
    motion: list[torch.Tensor] | None = None     # per temporal slot, [B or 1, n, C, H, W]
    num_motion: int = 0                          # n; with motion=None the n frames are zero maps
    motion_keep: torch.Tensor | None = None      # [B] bool; False = zero motion maps (motion guidance)
    speed: torch.Tensor | None = None            # [B, n+F, D] speed tokens, None = no speed layers
    temporal: bool = True                        # False skips temporal modules (stage-1 image training)
    context: torch.Tensor | None = field(default=None, repr=False)  # set by the UNet: attn2 context


def batch_gate(keep: torch.Tensor | None, rows: int, like: torch.Tensor) -> torch.Tensor | None:
    """[B] keep-flags → a [rows, 1, 1] multiplier in `like`'s dtype (None when everything is kept)."""
    if keep is None or bool(keep.all()):
        return None
    gate = keep.to(device=like.device, dtype=like.dtype)
    return gate.repeat_interleave(rows // gate.shape[0]).view(rows, 1, 1)


def expand_batch(x: torch.Tensor, rows: int) -> torch.Tensor:
    """Repeat a per-sample tensor batch-major to `rows` rows (B → B*F), or broadcast a batch of one."""
    if x.shape[0] == rows:
        return x
    if rows % x.shape[0]:
        raise ValueError(f"cannot spread a batch of {x.shape[0]} over {rows} rows")
    if x.shape[0] == 1:
        return x.expand(rows, *x.shape[1:])
    return x.repeat_interleave(rows // x.shape[0], dim=0)
