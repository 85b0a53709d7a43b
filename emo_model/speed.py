"""Speed layers' encoder: head rotation speed per frame → speed tokens.

Paper §3.2: d buckets with centre c_i and radius r_i, s_i = tanh(3 (w - c_i) / r_i), a window of
+-m frames, an MLP. Centres, radii and d are unpublished: we use d evenly spaced centres from 0
to `speed_max` degrees per frame with radius = the spacing, so the code reads like a soft
thermometer of the speed. The window is edge-padded; a sinusoidal position along the clip lets
the temporal cross-attention align tokens with frames.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import SinusoidalPositionalEmbedding
from torch import nn


class SpeedEncoder(nn.Module):
    def __init__(self, buckets: int, max_speed: float, window: int, dim: int, hidden: int, max_frames: int):
        super().__init__()
        self.buckets, self.max_speed = buckets, max_speed  # centres derive from these: nothing to store
        self.radius = max_speed / max(buckets - 1, 1)
        self.window = window
        self.mlp = nn.Sequential(nn.Linear(buckets * (2 * window + 1), hidden), nn.SiLU(), nn.Linear(hidden, dim))
        self.pos_embed = SinusoidalPositionalEmbedding(dim, max_seq_length=max_frames)

    def bucket_code(self, speed: torch.Tensor) -> torch.Tensor:
        """[B, T] degrees/frame → [B, T, d] in -1..1."""
        centres = torch.linspace(0.0, self.max_speed, self.buckets, device=speed.device, dtype=speed.dtype)
        return torch.tanh(3.0 * (speed.unsqueeze(-1) - centres) / self.radius)

    def forward(self, speed: torch.Tensor) -> torch.Tensor:
        """speed: [B, T] degrees per frame (T = motion + generated frames) → tokens [B, T, dim]."""
        code = self.bucket_code(speed.float())  # [B, T, d]
        padded = F.pad(code.transpose(1, 2), (self.window, self.window), mode="replicate").transpose(1, 2)
        windows = padded.unfold(1, 2 * self.window + 1, 1)  # [B, T, d, 2m+1]
        tokens = self.mlp(windows.flatten(2).to(self.mlp[0].weight.dtype))
        return self.pos_embed(tokens)
