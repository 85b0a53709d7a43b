"""Latent codec: pixels ↔ SD latents with an `AutoencoderKL`, in bounded chunks."""
from __future__ import annotations

import torch


def vae_scale_factor(vae) -> int:
    """Pixels per latent pixel of an AutoencoderKL (SD: 8): one down-sampling per block after the first."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


class LatentCodec:
    def __init__(self, vae, scaling_factor: float | None = None, chunk: int = 4):
        self.vae = vae
        self.scaling = scaling_factor if scaling_factor is not None else float(vae.config.scaling_factor)
        self.chunk = chunk  # frames per VAE call: bounds decoder memory at 512²

    @property
    def device(self) -> torch.device:
        return next(self.vae.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    @torch.inference_mode()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in 0..1 → scaled latents [N, 4, H/8, W/8] (distribution mode: deterministic)."""
        out = []
        for part in images.split(self.chunk):
            pixels = (part.to(self.device, self.dtype) * 2 - 1)
            out.append(self.vae.encode(pixels).latent_dist.mode() * self.scaling)
        return torch.cat(out)

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents [N, 4, h, w] → uint8 frames [N, H, W, 3] on the CPU."""
        out = []
        for part in latents.split(self.chunk):
            pixels = self.vae.decode(part.to(self.device, self.dtype) / self.scaling).sample
            out.append(((pixels.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu())
        return torch.cat(out)
