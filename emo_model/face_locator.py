"""Face Locator: a light conv encoder of the face-region mask, added to the Backbone's input.

The mask (union of the clip's face boxes, 1 inside) is encoded at pixel resolution by stride-2
convs down to latent resolution (three for SD's 8x VAE, one per width after the first) and a zero-initialised projection to the Backbone's
first width; the result is added after conv_in (as the open reproductions do), so a new Face
Locator does not change the Backbone. An all-ones mask means "no guidance".
"""
from __future__ import annotations

import torch
from torch import nn


class FaceLocator(nn.Module):
    def __init__(self, channels: tuple[int, ...], out_channels: int):
        super().__init__()
        if len(channels) < 2:
            raise ValueError("face_locator_channels needs at least 2 widths (one stride-2 stage per width after the first)")
        layers: list[nn.Module] = [nn.Conv2d(1, channels[0], 3, padding=1), nn.SiLU()]
        for cin, cout in zip(channels[:-1], channels[1:]):
            layers += [nn.Conv2d(cin, cin, 3, padding=1), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1, stride=2), nn.SiLU()]
        self.encoder = nn.Sequential(*layers)
        self.proj_out = nn.Conv2d(channels[-1], out_channels, 3, padding=1)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        """mask: [B, 1, H, W] in 0..1 at pixel resolution → [B, C0, H/f, W/f], f = 2^(len(channels) - 1)."""
        return self.proj_out(self.encoder(mask.to(self.proj_out.weight.dtype)))
