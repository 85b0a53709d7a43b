"""Stable Diffusion 1.5 UNet and VAE weights from diffusers folders or LDM single files, fully offline."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint

from ..errors import WeightsError
from .files import check_keys_and_shapes, load_state_dict_strict, read_state_dict
from .folders import component_folder, folder_config, folder_weights
from .geometry import check_config_fields, expected_shapes
from .identify import cross_attention_width, describe_state_dict, unet_family

# runwayml/stable-diffusion-v1-5 unet/config.json, written out so nothing is fetched at run time.
# Shared constants: copy before changing.
SD15_UNET_CONFIG = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": (320, 640, 1280, 1280),
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
}

# runwayml/stable-diffusion-v1-5 vae/config.json (also the geometry of sd-vae-ft-mse).
SD15_VAE_CONFIG = {
    "act_fn": "silu",
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "scaling_factor": 0.18215,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
}

# Config fields that decide parameter shapes or how they are used; a folder's config.json must agree.
_UNET_GEOMETRY = (
    "in_channels", "out_channels", "block_out_channels", "layers_per_block", "cross_attention_dim",
    "attention_head_dim", "down_block_types", "up_block_types", "norm_num_groups",
    "use_linear_projection", "transformer_layers_per_block",
)
_VAE_GEOMETRY = (
    "in_channels", "out_channels", "latent_channels", "block_out_channels", "layers_per_block",
    "down_block_types", "up_block_types", "norm_num_groups",
)

_LDM_UNET_PREFIX = "model.diffusion_model."
_LDM_VAE_PREFIX = "first_stage_model."
UNET = "SD1.5 UNet"
VAE = "SD1.5 VAE"
_USE_INSTEAD = (
    "Use an SD1.5 checkpoint (e.g. v1-5-pruned-emaonly.safetensors from ComfyUI/models/checkpoints) "
    "or a diffusers SD1.5 folder."
)


def load_unet_state_dict(path: str | os.PathLike, *, config: Mapping | None = None) -> dict[str, torch.Tensor]:
    """SD1.5 UNet weights with diffusers UNet2DConditionModel keys.

    `path`: a diffusers pipeline folder (with unet/), a unet folder, or a single LDM checkpoint
    (`model.diffusion_model.*`, e.g. v1-5-pruned-emaonly.safetensors; from a file that also holds
    EMA weights, the non-EMA ones, as ComfyUI does). `config` replaces SD15_UNET_CONFIG as the
    expected geometry (small test models).
    """
    path, config = Path(path), dict(config or SD15_UNET_CONFIG)
    if path.is_dir():
        folder = component_folder(path, "unet")
        found = folder_config(folder, UNET)
        if found is not None:
            check_config_fields(found, config, _UNET_GEOMETRY, source=folder / "config.json", what=UNET)
        path = folder_weights(folder, UNET)
    state_dict = read_state_dict(path, what=UNET, prefix=_LDM_UNET_PREFIX)
    return convert_unet_state_dict(state_dict, source=path, config=config)


def convert_unet_state_dict(
    state_dict: Mapping[str, torch.Tensor], *, source: str | os.PathLike, config: Mapping | None = None
) -> dict[str, torch.Tensor]:
    """Diffusers-keyed UNet weights from an LDM (prefixed or bare) or diffusers state dict, checked.

    Works on meta tensors too (key and shape checks of full-size layouts without the memory).
    """
    config = dict(config or SD15_UNET_CONFIG)
    expected = expected_shapes(UNet2DConditionModel, config)
    width, needed = cross_attention_width(state_dict), cross_attention_width(expected)
    if unet_family(state_dict) == "SDXL" or (width is not None and width != needed):
        raise WeightsError(
            f"{source} holds {describe_state_dict(state_dict)}, but EMO needs an SD1.5-family UNet "
            f"(cross-attention width {needed}). {_USE_INSTEAD}"
        )
    keys = list(state_dict)
    if any(k.startswith(_LDM_UNET_PREFIX) for k in keys):
        converted = convert_ldm_unet_checkpoint(state_dict, config)
    elif "input_blocks.0.0.weight" in state_dict:
        # A bare LDM UNet file (ComfyUI models/unet) lacks the prefix the converter looks for.
        converted = convert_ldm_unet_checkpoint({_LDM_UNET_PREFIX + k: v for k, v in state_dict.items()}, config)
    elif "conv_in.weight" in state_dict and any(k.startswith("down_blocks.") for k in keys):
        converted = dict(state_dict)
    else:
        raise WeightsError(f"{source} holds {describe_state_dict(state_dict)}, not an SD1.5 UNet. {_USE_INSTEAD}")
    # The LDM converter fills keys it expected but did not find with None.
    converted = {k: v for k, v in converted.items() if v is not None}
    check_keys_and_shapes(expected, converted, source=source, what=UNET)
    return converted


def load_vae(
    path: str | os.PathLike,
    *,
    config: Mapping | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> AutoencoderKL:
    """An SD1.5 AutoencoderKL in eval mode.

    `path`: a diffusers vae folder, a pipeline folder (with vae/), a full LDM checkpoint
    (`first_stage_model.*`) or a standalone LDM VAE file (vae-ft-mse-840000-ema-pruned.safetensors).
    The model is built from `config`, else the folder's config.json (which must have SD1.5 geometry;
    its scaling_factor is kept), else SD15_VAE_CONFIG.
    """
    path = Path(path)
    resolved = dict(config) if config is not None else None
    if path.is_dir():
        folder = component_folder(path, "vae")
        found = folder_config(folder, VAE)
        if resolved is None and found is not None:
            check_config_fields(found, SD15_VAE_CONFIG, _VAE_GEOMETRY, source=folder / "config.json", what=VAE)
            resolved = found
        path = folder_weights(folder, VAE)
    resolved = resolved or dict(SD15_VAE_CONFIG)
    state_dict = read_state_dict(path, what=VAE, prefix=_LDM_VAE_PREFIX)
    state_dict = convert_vae_state_dict(state_dict, source=path, config=resolved)
    with torch.device("meta"):
        vae = AutoencoderKL.from_config(resolved).to(dtype)
    load_state_dict_strict(vae, state_dict, source=path, what=VAE)
    return vae.to(device).eval()


def convert_vae_state_dict(
    state_dict: Mapping[str, torch.Tensor], *, source: str | os.PathLike, config: Mapping | None = None
) -> dict[str, torch.Tensor]:
    """Diffusers-keyed AutoencoderKL weights from an LDM (prefixed or bare) or diffusers state dict, checked."""
    config = dict(config or SD15_VAE_CONFIG)
    keys = list(state_dict)
    if any(k.startswith((_LDM_VAE_PREFIX + "encoder.", "encoder.down.")) for k in keys):
        converted = convert_ldm_vae_checkpoint(state_dict, config)
    elif any(k.startswith("encoder.down_blocks.") for k in keys):
        converted = {_renamed_attention_key(k): v for k, v in state_dict.items()}
    else:
        raise WeightsError(
            f"{source} holds {describe_state_dict(state_dict)}, not an SD1.5 VAE. Use an SD1.5 checkpoint, "
            "a VAE file such as vae-ft-mse-840000-ema-pruned.safetensors, or a diffusers vae folder."
        )
    converted = {k: v for k, v in converted.items() if v is not None}
    check_keys_and_shapes(expected_shapes(AutoencoderKL, config), converted, source=source, what=VAE)
    return converted


# Diffusers folders saved before diffusers 0.14 (e.g. stabilityai/sd-vae-ft-mse) name the VAE's
# mid-block attention query/key/value/proj_attn; from_pretrained renames them, so do we.
_OLD_ATTENTION_NAMES = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def _renamed_attention_key(key: str) -> str:
    head, _, leaf = key.rpartition(".")
    block, _, name = head.rpartition(".")
    if ".mid_block.attentions." in block and name in _OLD_ATTENTION_NAMES:
        return f"{block}.{_OLD_ATTENTION_NAMES[name]}.{leaf}"
    return key
