"""EMOModel: ReferenceNet + Backbone + Face Locator + audio projection + speed encoder.

The per-clip work (ReferenceNet on the reference image or the motion frames, audio projection,
speed encoding, Face Locator) is separate from the per-step work (`denoise`), so a sampler does
the former once per clip and only the Backbone once per denoising step.
"""
from __future__ import annotations

import torch
from torch import nn

from .audio_projection import AudioProjection
from .conditioning import Conditioning, FeatureCapture
from .config import EMOConfig
from .face_locator import FaceLocator
from .speed import SpeedEncoder
from .unet import EMOUNet

# Sub-modules as they appear (as key prefixes) in checkpoints.
PARTS = ("reference_net", "backbone", "face_locator", "audio_projection", "speed_encoder")


class EMOModel(nn.Module):
    def __init__(self, config: EMOConfig):
        super().__init__()
        self.config = config
        g = config.unet
        self.reference_net = EMOUNet(g, temporal=False)
        self.backbone = EMOUNet(g, temporal=True, reference_mode=config.reference_attention,
                                audio_token_dim=config.audio_token_dim, speed_dim=config.speed_dim)
        self.face_locator = FaceLocator(config.face_locator_channels, g.block_out_channels[0])
        self.audio_projection = AudioProjection(config.audio_window, config.audio_layers, config.audio_dim,
                                                config.audio_hidden, config.audio_tokens, config.audio_token_dim)
        self.speed_encoder = SpeedEncoder(config.speed_buckets, config.speed_max, config.speed_window,
                                          config.speed_dim, config.speed_hidden, g.motion_max_frames)

    @property
    def dtype(self) -> torch.dtype:
        return self.backbone.conv_in.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.backbone.conv_in.weight.device

    # --- per clip ---------------------------------------------------------------------------
    def reference_features(self, latents: torch.Tensor) -> list[torch.Tensor]:
        """Reference image latents [B, 4, h, w] → per-block reference tokens (ReferenceNet at t = 0)."""
        capture = FeatureCapture(spatial=[])
        self.reference_net(latents.to(self.dtype), 0, capture=capture)
        return capture.spatial

    def motion_features(self, latents: torch.Tensor) -> list[torch.Tensor]:
        """Motion-frame latents [B, n, 4, h, w] → per-temporal-slot features [B, n, C, H, W]."""
        batch, n = latents.shape[:2]
        capture = FeatureCapture(temporal=[])
        self.reference_net(latents.flatten(0, 1).to(self.dtype), 0, capture=capture)
        return [f.unflatten(0, (batch, n)) for f in capture.temporal]

    def condition(self, num_frames: int, *, reference=None, reference_keep=None, audio_windows=None,
                  audio_keep=None, motion=None, motion_keep=None, num_motion: int = 0, speed=None,
                  temporal: bool = True) -> Conditioning:
        """Assemble a Backbone `Conditioning`. audio_windows: [B, F, 2m+1, L, D]; speed: [B, n+F] deg/frame."""
        audio = None if audio_windows is None else self.audio_projection(audio_windows.to(self.device))
        tokens = None if speed is None else self.speed_encoder(speed.to(self.device))
        return Conditioning(num_frames=num_frames, reference=reference, reference_keep=reference_keep, audio=audio,
                            audio_keep=audio_keep, motion=motion, motion_keep=motion_keep, num_motion=num_motion,
                            speed=tokens, temporal=temporal)

    def face_features(self, face_mask: torch.Tensor | None) -> torch.Tensor | None:
        """Face-region mask [B, 1, H, W] (pixel resolution) → Face Locator features added after conv_in."""
        return None if face_mask is None else self.face_locator(face_mask.to(self.device))

    # --- per denoising step -------------------------------------------------------------------
    def denoise(self, noisy: torch.Tensor, timestep, cond: Conditioning,
                face_features: torch.Tensor | None = None) -> torch.Tensor:
        """noisy: [B, F, 4, h, w] → model prediction of the same shape."""
        batch, frames = noisy.shape[:2]
        if frames != cond.num_frames:
            raise ValueError(f"latents have {frames} frames but the conditioning was built for {cond.num_frames}")
        out = self.backbone(noisy.flatten(0, 1).to(self.dtype), timestep, cond, added_features=face_features)
        return out.unflatten(0, (batch, frames))

    def forward(self, noisy: torch.Tensor, timestep, *, reference_latents: torch.Tensor,
                motion_latents: torch.Tensor | None = None, num_motion: int = 0,
                audio_windows: torch.Tensor | None = None, speed: torch.Tensor | None = None,
                face_mask: torch.Tensor | None = None, reference_keep=None, audio_keep=None,
                temporal: bool = True) -> torch.Tensor:
        """One training-style pass: every per-clip step, then the Backbone."""
        motion = None if motion_latents is None else self.motion_features(motion_latents)
        num_motion = motion_latents.shape[1] if motion_latents is not None else num_motion
        cond = self.condition(noisy.shape[1], reference=self.reference_features(reference_latents),
                              reference_keep=reference_keep, audio_windows=audio_windows, audio_keep=audio_keep,
                              motion=motion, num_motion=num_motion, speed=speed, temporal=temporal)
        return self.denoise(noisy, timestep, cond, self.face_features(face_mask))
