"""A best guess at what a state dict holds, for error messages when it is not what a loader wanted."""
from __future__ import annotations

from typing import Mapping

import torch

_FAMILY_BY_CONTEXT_WIDTH = {768: "SD1.x", 1024: "SD2.x", 2048: "SDXL"}
# Keys only SDXL-style UNets have: the pooled-text/size embedding and the second text encoder.
_SDXL_MARKERS = ("label_emb.", "add_embedding.", "conditioner.embedders.1.")


def cross_attention_width(state_dict: Mapping[str, torch.Tensor | torch.Size]) -> int | None:
    """Width of the text context the UNet attends to (768 for SD1.x), read off the first attn2.to_k.

    Takes tensors or bare shapes (what geometry.expected_shapes gives).
    """
    for key, value in state_dict.items():
        shape = tuple(getattr(value, "shape", value))
        if key.endswith("attn2.to_k.weight") and len(shape) == 2:
            return shape[1]
    return None


def unet_family(state_dict: Mapping[str, torch.Tensor]) -> str:
    """"SD1.x", "SD2.x", "SDXL" or "unknown", for a UNet state dict in LDM or diffusers layout."""
    if any(marker in k for k in state_dict for marker in _SDXL_MARKERS):
        return "SDXL"
    return _FAMILY_BY_CONTEXT_WIDTH.get(cross_attention_width(state_dict), "unknown")


def describe_state_dict(state_dict: Mapping[str, torch.Tensor]) -> str:
    keys = list(state_dict)
    if any("lora" in k.lower() for k in keys):
        return "LoRA weights"
    if any(".temporal_transformer." in k or ".motion_modules." in k for k in keys):
        return "an AnimateDiff motion module"
    if any(k.startswith(("control_model.", "controlnet_")) for k in keys):
        return "a ControlNet"
    width = cross_attention_width(state_dict)
    if width is not None or any(k.startswith(("model.diffusion_model.", "input_blocks.", "conv_in.")) for k in keys):
        width_note = f" (cross-attention width {width})" if width else ""
        return f"a UNet of the {unet_family(state_dict)} family{width_note}"
    if any(k.startswith(("encoder.", "decoder.", "first_stage_model.")) for k in keys):
        return "a VAE"
    if any("text_model." in k or k.startswith(("cond_stage_model.", "transformer.")) for k in keys):
        return "a text encoder"
    return f"unrecognised weights (first keys: {', '.join(keys[:3])})"
