"""Geometry and hyper-parameters of an EMO model, serialisable into its checkpoint.

`EMOConfig.sd15()` is the paper's geometry (SD1.5 UNet for Backbone and ReferenceNet, AnimateDiff
v2 temporal modules); `EMOConfig.tiny()` is the same architecture at toy width for tests and CPU
demos. Everything the weights depend on lives here, so a checkpoint rebuilds its own model.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class UNetGeometry:
    """Shape of the SD-style UNet shared by Backbone and ReferenceNet (diffusers key layout)."""

    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    # Which down levels have transformer (attention) layers; up levels mirror it. SD1.5: all but last.
    attention_levels: tuple[bool, ...] = (True, True, True, False)
    layers_per_block: int = 2
    heads: int = 8  # SD1.5 uses 8 heads at every level (diffusers calls this `attention_head_dim`)
    cross_attention_dim: int = 768
    norm_num_groups: int = 32
    in_channels: int = 4
    out_channels: int = 4
    motion_heads: int = 8
    motion_max_frames: int = 32  # AnimateDiff v2 positional table length: n + f must fit

    def __post_init__(self):
        if len(self.block_out_channels) != len(self.attention_levels):
            raise ValueError("block_out_channels and attention_levels must have the same length")
        if self.layers_per_block < 1:
            raise ValueError("layers_per_block must be >= 1")

    def diffusers_unet_config(self) -> dict:
        """The `UNet2DConditionModel` config with the same spatial weights (for loading and tests)."""
        down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in self.attention_levels)
        up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(self.attention_levels))
        return {
            "sample_size": 64,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "down_block_types": down,
            "up_block_types": up,
            "block_out_channels": self.block_out_channels,
            "layers_per_block": self.layers_per_block,
            "attention_head_dim": self.heads,
            "cross_attention_dim": self.cross_attention_dim,
            "norm_num_groups": self.norm_num_groups,
        }

    def diffusers_motion_adapter_config(self) -> dict:
        """The `MotionAdapter` config with the same temporal weights."""
        return {
            "block_out_channels": self.block_out_channels,
            "motion_layers_per_block": self.layers_per_block,
            "motion_mid_block_layers_per_block": 1,
            "motion_num_attention_heads": self.motion_heads,
            "motion_norm_num_groups": self.norm_num_groups,
            "motion_max_seq_length": self.motion_max_frames,
            "use_motion_mid_block": True,
        }


@dataclass(frozen=True)
class NoiseSchedule:
    """Training noise schedule; stored with the checkpoint so inference matches training."""

    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "scaled_linear"
    prediction_type: str = "epsilon"  # "epsilon" or "v_prediction"
    rescale_betas_zero_snr: bool = False
    timestep_spacing: str = "trailing"
    steps_offset: int = 1


@dataclass(frozen=True)
class EMOConfig:
    unet: UNetGeometry = field(default_factory=UNetGeometry)
    # Audio features: `audio_layers` hidden states of `audio_dim` per encoder step (Whisper tiny: 5 x
    # 384; wav2vec2-base: 13 x 768), a window of +-`audio_window` video frames per generated frame,
    # projected to `audio_tokens` tokens of `audio_token_dim` each.
    audio_layers: int = 5
    audio_dim: int = 384
    audio_window: int = 2
    audio_tokens: int = 32
    audio_token_dim: int = 768
    audio_hidden: int = 1024
    # Speed layers: bucketed tanh encoding of head rotation speed (degrees per frame).
    speed_buckets: int = 9
    speed_max: float = 2.4  # centre of the last bucket; centres are linspace(0, speed_max, buckets)
    speed_window: int = 2
    speed_dim: int = 768
    speed_hidden: int = 512
    # Face Locator conv widths: one stride-2 conv per width after the first brings the mask to latent
    # resolution, so there are log2(vae_scale_factor) + 1 of them.
    face_locator_channels: tuple[int, ...] = (16, 32, 96, 256)
    # "concat": ReferenceNet tokens join the keys/values of the backbone self-attention (attn1).
    # "cross": a separate zero-initialised reference cross-attention after attn1.
    reference_attention: str = "concat"
    frames_per_clip: int = 12
    motion_frames: int = 4
    fps: float = 30.0
    vae_scale_factor: int = 8  # pixels per latent pixel (SD's VAE: 8)
    latent_scaling: float = 0.18215
    noise: NoiseSchedule = field(default_factory=NoiseSchedule)

    def __post_init__(self):
        if 2 ** (len(self.face_locator_channels) - 1) != self.vae_scale_factor:
            raise ValueError(f"face_locator_channels {self.face_locator_channels} down-sample by "
                             f"{2 ** (len(self.face_locator_channels) - 1)}, the VAE by {self.vae_scale_factor}: "
                             "give log2(vae_scale_factor) + 1 widths")
        if self.reference_attention not in ("concat", "cross"):
            raise ValueError(f"reference_attention must be 'concat' or 'cross', got {self.reference_attention!r}")
        if self.motion_frames + self.frames_per_clip > self.unet.motion_max_frames:
            raise ValueError(
                f"motion_frames + frames_per_clip = {self.motion_frames + self.frames_per_clip} exceeds the "
                f"temporal modules' {self.unet.motion_max_frames} positions"
            )

    @classmethod
    def sd15(cls, audio_encoder: str = "whisper-tiny", **overrides) -> "EMOConfig":
        """Paper geometry. `audio_encoder`: 'whisper-tiny' (5 x 384) or 'wav2vec2-base' (13 x 768)."""
        audio = {"whisper-tiny": (5, 384), "wav2vec2-base": (13, 768)}
        if audio_encoder not in audio:
            raise ValueError(f"audio_encoder must be one of {sorted(audio)}, got {audio_encoder!r}")
        layers, dim = audio[audio_encoder]
        return cls(audio_layers=layers, audio_dim=dim, **overrides)

    @classmethod
    def tiny(cls, **overrides) -> "EMOConfig":
        """Same architecture at toy width: for tests and CPU demos."""
        unet = UNetGeometry(
            block_out_channels=(32, 64), attention_levels=(True, False), layers_per_block=1, heads=2,
            cross_attention_dim=32, norm_num_groups=8, motion_heads=2, motion_max_frames=24,
        )
        values = dict(
            unet=unet, audio_layers=5, audio_dim=384, audio_tokens=4, audio_token_dim=32,
            audio_hidden=64, speed_dim=32, speed_hidden=32, face_locator_channels=(8, 8, 16, 16),
            frames_per_clip=8, motion_frames=2,
        )
        values.update(overrides)
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "EMOConfig":
        data = json.loads(text)
        unet = data.pop("unet")
        noise = data.pop("noise")
        unet = UNetGeometry(**{k: tuple(v) if isinstance(v, list) else v for k, v in unet.items()})
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(unet=unet, noise=NoiseSchedule(**noise), **data)
