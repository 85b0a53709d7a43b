"""Base weights for EMO (SD1.5 UNet/VAE, AnimateDiff motion modules) as diffusers-keyed state dicts, offline."""
from .animatediff import SD15_MOTION_ADAPTER_CONFIG, convert_motion_state_dict, load_motion_state_dict
from .files import check_keys_and_shapes, load_state_dict_strict, read_state_dict, write_safetensors
from .sd15 import (
    SD15_UNET_CONFIG,
    SD15_VAE_CONFIG,
    convert_unet_state_dict,
    convert_vae_state_dict,
    load_unet_state_dict,
    load_vae,
)

__all__ = [
    "SD15_MOTION_ADAPTER_CONFIG",
    "SD15_UNET_CONFIG",
    "SD15_VAE_CONFIG",
    "check_keys_and_shapes",
    "convert_motion_state_dict",
    "convert_unet_state_dict",
    "convert_vae_state_dict",
    "load_motion_state_dict",
    "load_state_dict_strict",
    "load_unet_state_dict",
    "load_vae",
    "read_state_dict",
    "write_safetensors",
]
