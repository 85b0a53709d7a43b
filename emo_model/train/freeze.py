"""Which parameters train in each stage (paper §3.3), as named groups of `EMOModel` parameters.

Groups: reference_net; backbone_spatial (the Backbone's SD1.5 layers, attn2 context and, in "cross"
mode, the reference cross-attention); face_locator; temporal (AnimateDiff modules without the speed
layers inside them); audio (audio-attention in every Backbone block + audio projection); speed
(speed-attention inside the temporal blocks + speed encoder).

- Stage 1 (images): reference_net, backbone_spatial, face_locator. Temporal modules are bypassed.
- Stage 2 (video): temporal, audio. The paper says stage 2 "adds" these; we freeze what stage 1
  trained, as Hallo does: the image stage already fits appearance and identity, video batches are
  small (4), and a frozen spatial UNet keeps the stage-1 identity from drifting while the new
  zero-initialised layers learn motion and lip sync (and halves optimizer memory at SD1.5 size).
  A config's `trainable` list can add backbone_spatial etc. for the other reading; on the demo model a
  second stage-2 run with backbone_spatial training continued clips far better (README).
- Stage 3 (speed): temporal, speed only: "only temporal modules and speed layers train", since
  training audio with speed weakened audio control.
"""
from __future__ import annotations

from torch import nn

GROUPS = ("reference_net", "backbone_spatial", "face_locator", "temporal", "audio", "speed")
STAGE_GROUPS = {1: ("reference_net", "backbone_spatial", "face_locator"), 2: ("temporal", "audio"),
                3: ("temporal", "speed")}


def parameter_group(name: str) -> str:
    """The group of an `EMOModel.named_parameters()` name."""
    part = name.split(".", 1)[0]
    if part in ("reference_net", "face_locator"):
        return part
    if part == "audio_projection" or ".audio_attn." in name or ".audio_norm." in name:
        return "audio"
    if part == "speed_encoder" or ".speed_attn." in name or ".speed_norm." in name:
        return "speed"
    if part == "backbone":
        return "temporal" if "motion_modules." in name else "backbone_spatial"
    raise ValueError(f"parameter {name} belongs to no training group")


def stage_groups(stage: int, trainable: list[str] | None = None) -> tuple[str, ...]:
    """The groups that train: the config's `trainable` list (checked there), else the stage's."""
    return tuple(trainable) if trainable is not None else STAGE_GROUPS[stage]


def apply_freezing(model: nn.Module, groups: tuple[str, ...]) -> list[nn.Parameter]:
    """requires_grad only for `groups`; returns the trainable parameters in a stable order."""
    trainable = []
    for name, p in model.named_parameters():
        p.requires_grad_(parameter_group(name) in groups)
        if p.requires_grad:
            trainable.append(p)
    return trainable
