"""The diffusion training objective on the model's own `NoiseSchedule`.

The betas come from diffusers' `DDPMScheduler` built with the schedule's fields (the same fields the
inference schedulers get from the checkpoint, so training and sampling agree). Noising and the
targets are written out here for [B, F, C, h, w] video latents:
  x_t = sqrt(ᾱ) x_0 + sqrt(1 − ᾱ) ε;  target ε (epsilon) or v = sqrt(ᾱ) ε − sqrt(1 − ᾱ) x_0.
Options: noise offset (a per-sample, per-channel constant added to ε, shared by all frames, so the
model can learn overall brightness shifts) and min-SNR-γ loss weighting (Hang et al. 2023).
"""
from __future__ import annotations

import dataclasses

import torch
from diffusers import DDPMScheduler

from ..config import NoiseSchedule


class Objective:
    def __init__(self, schedule: NoiseSchedule, noise_offset: float = 0.0, min_snr_gamma: float | None = None):
        fields = dataclasses.asdict(schedule)
        scheduler = DDPMScheduler(**{k: fields[k] for k in (
            "num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "prediction_type",
            "rescale_betas_zero_snr", "timestep_spacing", "steps_offset")})
        self.alphas_cumprod = scheduler.alphas_cumprod.to(torch.float64)
        self.num_timesteps = schedule.num_train_timesteps
        self.prediction_type = schedule.prediction_type
        self.noise_offset = noise_offset
        self.min_snr_gamma = min_snr_gamma

    def draw(self, latents: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(timesteps [B], noise like latents), drawn on the CPU from `generator`."""
        batch, _, channels = latents.shape[:3]
        timesteps = torch.randint(0, self.num_timesteps, (batch,), generator=generator)
        noise = torch.randn(latents.shape, generator=generator)
        if self.noise_offset:
            noise = noise + self.noise_offset * torch.randn(batch, 1, channels, 1, 1, generator=generator)
        return timesteps, noise

    def _coefficients(self, timesteps: torch.Tensor, like: torch.Tensor):
        ac = self.alphas_cumprod[timesteps.cpu()]
        shape = (-1,) + (1,) * (like.ndim - 1)
        return (ac.sqrt().float().view(shape).to(like.device), (1 - ac).sqrt().float().view(shape).to(like.device))

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        a, s = self._coefficients(timesteps, latents)
        return a * latents + s * noise

    def target(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        if self.prediction_type == "epsilon":
            return noise
        a, s = self._coefficients(timesteps, latents)
        return a * noise - s * latents

    def predicted_x0(self, noisy: torch.Tensor, prediction: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The clean latents a prediction implies: x_0 = sqrt(ᾱ) x_t − sqrt(1 − ᾱ) v, or (x_t − sqrt(1 − ᾱ) ε) / sqrt(ᾱ)
        (undefined for ε at a zero-SNR step)."""
        a, s = self._coefficients(timesteps, noisy)
        if self.prediction_type == "epsilon":
            return (noisy - s * prediction) / a
        return a * noisy - s * prediction

    def weights(self, timesteps: torch.Tensor) -> torch.Tensor:
        """Per-sample loss weights [B]: 1, or min(SNR, γ) / SNR (ε) and min(SNR, γ) / (SNR + 1) (v)."""
        if self.min_snr_gamma is None:
            return torch.ones(timesteps.shape[0])
        ac = self.alphas_cumprod[timesteps.cpu()]
        # Clamped so that a zero-terminal-SNR step (SNR 0) gets the limit of the formula (ε: 1), not 0/0.
        snr = (ac / (1 - ac).clamp(min=1e-12)).clamp(min=1e-12)
        clipped = snr.clamp(max=self.min_snr_gamma)
        return (clipped / (snr + 1) if self.prediction_type == "v_prediction" else clipped / snr).float()

    def loss(self, prediction: torch.Tensor, target: torch.Tensor, timesteps: torch.Tensor,
             element_weights: torch.Tensor | None = None) -> torch.Tensor:
        """Weighted MSE over every element of each sample, averaged over the batch. `element_weights`
        (broadcastable to `prediction`) scales each element's squared error, e.g. up-weighting the mouth."""
        error = (prediction.float() - target.float()).pow(2)
        if element_weights is not None:
            error = error * element_weights.to(error.device, error.dtype)
        per_sample = error.flatten(1).mean(1)
        return (per_sample * self.weights(timesteps).to(per_sample.device)).mean()
