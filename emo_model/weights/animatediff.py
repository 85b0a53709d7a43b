"""AnimateDiff motion-module weights in diffusers MotionAdapter layout, from the original or diffusers files."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import torch
from diffusers import MotionAdapter
from diffusers.loaders.single_file_utils import convert_animatediff_checkpoint_to_diffusers
from diffusers.models.embeddings import SinusoidalPositionalEmbedding

from ..errors import WeightsError
from .files import check_keys_and_shapes, read_state_dict
from .folders import component_folder, folder_config, folder_weights
from .geometry import check_config_fields, expected_shapes
from .identify import describe_state_dict

# guoyww/animatediff-motion-adapter-v1-5-2 config.json: the geometry of mm_sd_v15_v2.ckpt.
# Shared constant: copy before changing.
SD15_MOTION_ADAPTER_CONFIG = {
    "block_out_channels": (320, 640, 1280, 1280),
    "motion_layers_per_block": 2,
    "motion_transformer_layers_per_block": 1,
    "motion_mid_block_layers_per_block": 1,
    "motion_transformer_layers_per_mid_block": 1,
    "motion_num_attention_heads": 8,
    "motion_norm_num_groups": 32,
    "motion_max_seq_length": 32,
    "use_motion_mid_block": True,
    "conv_in_channels": None,
}

MOTION = "AnimateDiff v2 motion module"
_USE_INSTEAD = "Use mm_sd_v15_v2.ckpt (or .safetensors) or a diffusers MotionAdapter folder of it."
_PE_SUFFIX = ".pos_embed.pe"


def load_motion_state_dict(path: str | os.PathLike, *, config: Mapping | None = None) -> dict[str, torch.Tensor]:
    """Motion-module weights with diffusers MotionAdapter keys (`down_blocks.i.motion_modules.j.*`, ...).

    `path`: the original AnimateDiff file (mm_sd_v15_v2.ckpt / .safetensors), a single diffusers-layout
    file, a diffusers MotionAdapter folder, or a pipeline folder with motion_adapter/. `config`
    replaces SD15_MOTION_ADAPTER_CONFIG as the expected geometry (small test models).
    """
    path, config = Path(path), dict(config or SD15_MOTION_ADAPTER_CONFIG)
    if path.is_dir():
        folder = component_folder(path, "motion_adapter")
        found = folder_config(folder, MOTION)
        if found is not None:
            check_config_fields(found, config, tuple(config), source=folder / "config.json", what=MOTION)
        path = folder_weights(folder, MOTION)
    return convert_motion_state_dict(read_state_dict(path, what=MOTION), source=path, config=config)


def convert_motion_state_dict(
    state_dict: Mapping[str, torch.Tensor], *, source: str | os.PathLike, config: Mapping | None = None
) -> dict[str, torch.Tensor]:
    """MotionAdapter-keyed weights from an original-layout or diffusers-layout state dict, checked.

    Works on meta tensors too (key and shape checks of full-size layouts without the memory).
    """
    config = dict(config or SD15_MOTION_ADAPTER_CONFIG)
    keys = list(state_dict)
    if any("lora" in k.lower() for k in keys):
        raise WeightsError(
            f"{source} is a motion LoRA (e.g. v2_lora_ZoomIn.ckpt), not a motion module. {_USE_INSTEAD}"
        )
    if any(".temporal_transformer." in k for k in keys):
        converted = _from_original(state_dict, source)
    elif any(".motion_modules." in k for k in keys):
        converted = dict(state_dict)
    else:
        raise WeightsError(
            f"{source} holds {describe_state_dict(state_dict)}, not an AnimateDiff motion module. {_USE_INSTEAD}"
        )
    has_mid_block = any(k.startswith("mid_block.motion_modules.") for k in converted)
    if config.get("use_motion_mid_block", True) and not has_mid_block:
        raise WeightsError(
            f"{source} is an AnimateDiff v1 motion module (no mid-block motion module, like mm_sd_v14.ckpt or "
            f"mm_sd_v15.ckpt); EMO's temporal layers follow v2. {_USE_INSTEAD}"
        )

    expected = expected_shapes(MotionAdapter, config)
    # The positional encodings are fixed sinusoids, not trained: files that leave them out
    # (diffusers' own converter drops them) get the table MotionAdapter itself would build.
    for key, shape in expected.items():
        if key.endswith(_PE_SUFFIX) and key not in converted:
            converted[key] = SinusoidalPositionalEmbedding(shape[-1], shape[1]).pe
    found = {v.shape[1] for k, v in converted.items() if k.endswith(_PE_SUFFIX) and v.ndim == 3}
    needed = {s[1] for k, s in expected.items() if k.endswith(_PE_SUFFIX)}
    hint = ""
    if found - needed:
        hint = (
            f"Its positional encodings cover {sorted(found)} frames, the expected geometry {sorted(needed)} "
            f"(a module trained for another clip length). {_USE_INSTEAD}"
        )
    check_keys_and_shapes(expected, converted, source=source, what=MOTION, hint=hint)
    return converted


def _from_original(state_dict: Mapping[str, torch.Tensor], source) -> dict[str, torch.Tensor]:
    """Original AnimateDiff keys -> MotionAdapter keys, keeping the positional encodings diffusers drops."""
    converted = convert_animatediff_checkpoint_to_diffusers(state_dict)
    for key, pe in state_dict.items():
        if not key.endswith(".attention_blocks.0.pos_encoder.pe"):
            continue
        # diffusers keeps one encoding per transformer block for both attentions; AnimateDiff stores
        # the same table in each of its two attention blocks.
        twin = state_dict.get(key.replace(".attention_blocks.0.", ".attention_blocks.1."))
        if twin is not None and not pe.is_meta and not torch.equal(twin, pe):
            raise WeightsError(
                f"{source}: the two attention blocks of {key.split('.transformer_blocks.')[0]} carry different "
                "positional encodings, which the diffusers MotionAdapter layout cannot hold. This is not a "
                f"standard AnimateDiff module. {_USE_INSTEAD}"
            )
        block = key.replace(".temporal_transformer", "").split(".attention_blocks.0.")[0]
        converted[block + _PE_SUFFIX] = pe
    return converted
