"""Training configuration: a JSON file (configs/train/stage{1,2,3}_{tiny,sd15}.json) → `TrainConfig`.

Relative paths are relative to the working directory (the shipped configs expect the repository
root). `--set key=value` overrides (VALUE is JSON, else a plain string) are applied before checking.
The model geometry is "tiny", "sd15" or a dict of `EMOConfig` fields (nested "unet"/"noise" dicts
allowed); the noise schedule the trainer uses is the one saved in every checkpoint it writes.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..config import EMOConfig, UNetGeometry
from ..errors import EMOError
from .data import FACE_MASK_SPANS
from .freeze import GROUPS

GEOMETRIES = ("tiny", "sd15")
PRECISIONS = ("no", "fp16", "bf16")
LR_SCHEDULES = ("constant", "cosine")


class ConfigError(EMOError, ValueError):
    """A training config file is missing, unreadable or has invalid values."""


def lr_schedule_problem(schedule: str, warmup_steps, max_steps: int) -> str | None:
    """What is wrong with a learning-rate schedule (EMO and VAE trainers), or None."""
    if schedule not in LR_SCHEDULES:
        return f"lr_schedule must be one of {LR_SCHEDULES}, got {schedule!r}"
    if not (isinstance(warmup_steps, int) and warmup_steps >= 0):
        return f"lr_warmup_steps must be an integer >= 0, got {warmup_steps!r}"
    if schedule == "cosine" and warmup_steps >= max_steps:
        return (f"lr_warmup_steps ({warmup_steps}) must be below max_steps ({max_steps}) for the cosine decay "
                "to have steps to run over")
    return None


def apply_overrides(raw: dict, overrides) -> dict:
    """`--set key=value` items applied to a config dict (VALUE is JSON, else a plain string)."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        try:
            raw[key.strip()] = json.loads(value)
        except ValueError:
            raw[key.strip()] = value
    return raw


@dataclass
class TrainConfig:
    stage: int
    data: list[str]                        # prepared dataset folders (python -m emo_model.data.prepare)
    output_dir: str
    geometry: str | dict = "tiny"          # "tiny", "sd15", or EMOConfig fields
    audio_encoder: str = "whisper-tiny"    # sd15 only: "whisper-tiny" (5 x 384) or "wav2vec2-base" (13 x 768)
    noise: dict = field(default_factory=dict)  # NoiseSchedule overrides (prediction_type, ...)
    # Initialisation. base_unet: SD1.5 (diffusers folder or LDM file), used when there is no
    # init_checkpoint or to complete a partial one. motion_module: AnimateDiff, loaded into the temporal
    # modules after everything else (the paper initialises them in stage 2). init_checkpoint: the
    # previous stage's emo.safetensors. None of them: from scratch (the tiny geometry).
    base_unet: str | None = None
    motion_module: str | None = None
    init_checkpoint: str | None = None
    vae: str | None = None                 # SD1.5 VAE, or an EMO checkpoint holding one; None: the init_checkpoint's
    save_vae: bool = False                 # put the VAE into emo.safetensors (small models ship their own)
    trainable: list[str] | None = None     # parameter groups to train; None = the stage's (see freeze.py)
    resolution: int = 512
    frames_per_clip: int | None = None     # f; None = the geometry's (sd15 12, tiny 8)
    motion_frames: int | None = None       # n; None = the geometry's (sd15 4, tiny 2)
    batch_size: int = 1                    # per process and micro-batch
    gradient_accumulation_steps: int = 1
    max_steps: int = 1000                  # optimizer steps
    lr: float = 1e-5
    lr_warmup_steps: int = 0               # linear warm-up, then lr_schedule
    lr_schedule: str = "constant"          # constant | cosine (to 0 at max_steps: a short run ends annealed)
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    weight_decay: float = 1e-2
    max_grad_norm: float | None = 1.0
    mixed_precision: str = "no"            # no | fp16 (CUDA) | bf16
    gradient_checkpointing: bool = False
    reference_dropout: float = 0.05        # classifier-free guidance: no reference
    audio_dropout: float = 0.05            # classifier-free guidance: no audio (stages 2 and 3)
    motion_dropout: float = 0.1            # zero motion maps, as for the first clip at inference
    # Share of kept-motion micro-batches whose n motion frames are all the last one, with speed labels 0
    # there: the head was at rest and the label asks it to start moving, as when a generated clip held still.
    still_motion: float = 0.0
    # Share of samples whose frames (reference, motion and target alike) get one random hue rotation, so a
    # palette can only come from the reference: with few identities the model otherwise learns their colours.
    hue_augment: float = 0.0
    noise_offset: float = 0.0              # 0 = off; peers use 0.05
    min_snr_gamma: float | None = None     # None = plain MSE; peers use 5
    # Extra loss weight w on each frame's mouth region (data.MOUTH_REGION): elements weigh 1 + w x coverage,
    # not renormalised, so the loss reads higher than an unweighted run's (about 1.8x at w = 20 on the demo data).
    mouth_loss_weight: float = 0.0
    # The Face Locator mask each sample gets: "clip", the union of the face boxes over its whole clip (the
    # paper's M), or "sample", over the sample's own frames only (motion frames and targets; stage 1: its
    # one target), which pins where the head is in these frames (see data.py).
    face_mask_span: str = "clip"
    # Widen each sample's mask box about its centre by factors drawn from 1..face_mask_widen (width and
    # height apart): the mask then says where the head is, not how big (1 = off).
    face_mask_widen: float = 1.0
    # Training clips kept in memory (MiB): their VAE latents (the demo data: about 50), or with hue_augment
    # their decoded uint8 frames (about 600); 0 = decode and encode every draw. Changes the speed, and the
    # latents in their last bits.
    frame_cache_mb: float = 4096
    save_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 10
    seed: int = 0

    # --- loading ----------------------------------------------------------------------------------
    @classmethod
    def from_file(cls, path, overrides: list[str] = ()) -> "TrainConfig":
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except OSError as e:
            raise ConfigError(f"cannot read training config {path}: {e}") from e
        except ValueError as e:
            raise ConfigError(f"training config {path} is not valid JSON: {e}") from e
        if not isinstance(raw, dict):
            raise ConfigError(f"training config {path} must hold a JSON object")
        return cls.from_dict(apply_overrides(raw, overrides))

    @classmethod
    def from_dict(cls, raw: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise ConfigError(f"unknown training config keys {unknown}; known keys: {sorted(names)}")
        missing = [k for k in ("stage", "data", "output_dir") if k not in raw]
        if missing:
            raise ConfigError(f"training config lacks {missing}")
        raw = dict(raw)
        if isinstance(raw["data"], str):
            raw["data"] = [raw["data"]]
        config = cls(**raw)
        config.check()
        return config

    def check(self) -> None:
        def need(ok: bool, message: str):
            if not ok:
                raise ConfigError(message)

        need(self.stage in (1, 2, 3), f"stage must be 1, 2 or 3, got {self.stage!r}")
        need(bool(self.data), "data must name at least one prepared dataset folder")
        need(self.mixed_precision in PRECISIONS, f"mixed_precision must be one of {PRECISIONS}")
        need(self.resolution > 0 and self.resolution % 8 == 0, f"resolution must be a multiple of 8, got {self.resolution}")
        for key in ("batch_size", "gradient_accumulation_steps", "max_steps", "save_every", "keep_checkpoints",
                    "log_every"):
            need(isinstance(getattr(self, key), int) and getattr(self, key) >= 1, f"{key} must be an integer >= 1")
        for key in ("reference_dropout", "audio_dropout", "motion_dropout", "still_motion", "hue_augment"):
            need(0.0 <= getattr(self, key) <= 1.0, f"{key} must be in 0..1")
        need(self.trainable is None or (bool(self.trainable) and set(self.trainable) <= set(GROUPS)),
             f"trainable must be null or a non-empty list of {list(GROUPS)}, got {self.trainable!r}")
        need(self.lr > 0, "lr must be > 0")
        schedule_problem = lr_schedule_problem(self.lr_schedule, self.lr_warmup_steps, self.max_steps)
        need(schedule_problem is None, schedule_problem)
        need(self.noise_offset >= 0, "noise_offset must be >= 0")
        need(self.min_snr_gamma is None or self.min_snr_gamma > 0, "min_snr_gamma must be > 0 or null")
        need(self.mouth_loss_weight >= 0, "mouth_loss_weight must be >= 0")
        need(self.face_mask_span in FACE_MASK_SPANS,
             f"face_mask_span must be one of {FACE_MASK_SPANS}, got {self.face_mask_span!r}")
        need(self.face_mask_widen >= 1, f"face_mask_widen must be >= 1 (1 = off), got {self.face_mask_widen!r}")
        need(self.frame_cache_mb >= 0, "frame_cache_mb must be >= 0 (0 turns the cache off)")
        self.emo_config()  # geometry, noise and clip lengths

    # --- derived ----------------------------------------------------------------------------------
    def emo_config(self) -> EMOConfig:
        """The model config this run trains (and saves): geometry + clip lengths + noise schedule."""
        clip = {k: v for k, v in (("frames_per_clip", self.frames_per_clip), ("motion_frames", self.motion_frames))
                if v is not None}
        try:
            if isinstance(self.geometry, dict):
                fields = dict(self.geometry)
                if isinstance(fields.get("unet"), dict):
                    fields["unet"] = UNetGeometry(**{k: tuple(v) if isinstance(v, list) else v
                                                     for k, v in fields["unet"].items()})
                fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
                config = EMOConfig(**{**fields, **clip})
            elif self.geometry == "sd15":
                config = EMOConfig.sd15(self.audio_encoder, **clip)
            elif self.geometry == "tiny":
                config = EMOConfig.tiny(**clip)
            else:
                raise ConfigError(f"geometry must be one of {sorted(GEOMETRIES)} or a dict of EMOConfig fields, "
                                  f"got {self.geometry!r}")
            noise = dataclasses.replace(config.noise, **self.noise)
        except TypeError as e:
            raise ConfigError(f"invalid geometry or noise settings: {e}") from e
        except ValueError as e:
            raise ConfigError(str(e)) from e
        if noise.prediction_type not in ("epsilon", "v_prediction"):
            raise ConfigError(f"noise.prediction_type must be 'epsilon' or 'v_prediction', got {noise.prediction_type!r}")
        return dataclasses.replace(config, noise=noise)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True)
