"""EMO checkpoints, and building a model from SD1.5 / AnimateDiff base weights.

Checkpoint layout (one `.safetensors` file):
- tensors, by part: `reference_net.*`, `backbone.*` (diffusers `UNet2DConditionModel` keys, the
  Backbone's temporal modules in `MotionAdapter` keys, plus EMO's `audio_attn`/`audio_norm`,
  `speed_attn`/`speed_norm`, `ref_attn`/`ref_norm` and the attn2 `context`), `face_locator.*`,
  `audio_projection.*`, `speed_encoder.*`;
- optionally `vae.*`: the AutoencoderKL the model was trained with (diffusers keys), with its
  config as the `vae_config` metadata entry — small demo models ship their own small VAE;
- metadata: `format` = "emo-comfyui/1", `emo_config` = the EMOConfig JSON (geometry, audio
  feature shape, clip geometry, training noise schedule), plus free-form string entries.
A checkpoint may hold every part (a trained model) or only some (e.g. the EMO-specific layers);
the missing ones must then come from base weights (SD1.5 UNet, AnimateDiff), else loading fails
and names what is missing.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from safetensors import safe_open

from .config import EMOConfig
from .errors import InputError, WeightsError
from .model import PARTS, EMOModel
from .weights import files
from .weights.animatediff import load_motion_state_dict
from .weights.sd15 import load_unet_state_dict

FORMAT = "emo-comfyui/1"
VAE_FORMAT = "emo-vae/1"  # a standalone VAE file in the embedded layout
VAE_PREFIX = "vae."
_EMO_ADDITIONS = (".audio_attn.", ".audio_norm.", ".speed_attn.", ".speed_norm.", ".ref_attn.", ".ref_norm.")


def is_motion_key(key: str) -> bool:
    """A temporal-module weight that AnimateDiff provides (speed layers inside them are EMO's own)."""
    return "motion_modules." in key and not any(a in key for a in _EMO_ADDITIONS)


def is_spatial_base_key(key: str) -> bool:
    """A UNet weight that an SD1.5 checkpoint provides."""
    return "motion_modules." not in key and key != "context" and not any(a in key for a in _EMO_ADDITIONS)


def save_emo_checkpoint(model: EMOModel, path, *, parts=PARTS, metadata: dict[str, str] | None = None,
                        vae: AutoencoderKL | None = None) -> None:
    """Write `parts` of `model` (atomically) with its config in the metadata, and `vae` if given."""
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown parts {sorted(unknown)}; parts are {PARTS}")
    state = {f"{part}.{k}": v for part in parts for k, v in getattr(model, part).state_dict().items()}
    meta = {"format": FORMAT, "emo_config": model.config.to_json(), **(metadata or {})}
    if vae is not None:
        state.update({f"{VAE_PREFIX}{k}": v for k, v in vae.state_dict().items()})
        meta["vae_config"] = vae_config_json(vae)
    files.write_safetensors(state, path, metadata=meta)


def vae_config_json(vae: AutoencoderKL) -> str:
    """The VAE's config without diffusers' private keys: `_use_default_values` would make `from_config`
    reset every field it lists (scaling_factor among them) to the class default on loading."""
    return json.dumps({k: v for k, v in dict(vae.config).items() if not k.startswith("_")})


def save_vae_file(vae: AutoencoderKL, path, metadata: dict[str, str] | None = None) -> None:
    """A standalone VAE in the embedded layout (`vae.*` + `vae_config`): what `load_checkpoint_vae`
    and the trainer's `vae` setting read (small demo VAEs are trained by `emo_model.train.vae`)."""
    state = {f"{VAE_PREFIX}{k}": v for k, v in vae.state_dict().items()}
    files.write_safetensors(state, path, metadata={"format": VAE_FORMAT, "vae_config": vae_config_json(vae),
                                                   **(metadata or {})})


def _metadata(path) -> dict[str, str] | None:
    """A .safetensors file's metadata; None for anything else or an unreadable file (its loader reports it)."""
    path = Path(path)
    if not (path.is_file() and path.suffix == ".safetensors"):
        return None
    try:
        with safe_open(os.fspath(path), framework="pt") as f:
            return f.metadata() or {}
    except Exception:
        return None


def holds_embedded_vae(path) -> bool:
    """An EMO checkpoint with its VAE, or a file written by `save_vae_file`."""
    return "vae_config" in (_metadata(path) or {})


def is_emo_checkpoint(path) -> bool:
    return (_metadata(path) or {}).get("format") == FORMAT


def load_checkpoint_vae(path, *, dtype: torch.dtype = torch.float32, device="cpu") -> AutoencoderKL | None:
    """The VAE stored in an EMO checkpoint (None when it holds none) or in a `save_vae_file` file."""
    path = Path(path)
    with safe_open(os.fspath(path), framework="pt") as f:
        metadata = f.metadata() or {}
    if metadata.get("format") == VAE_FORMAT:
        state = files.read_state_dict(path, what="VAE")
    else:
        _, state, metadata = read_emo_checkpoint(path)
    vae_state = {k[len(VAE_PREFIX):]: v for k, v in state.items() if k.startswith(VAE_PREFIX)}
    if not vae_state:
        return None
    if "vae_config" not in metadata:
        raise WeightsError(f"{path} holds VAE weights but no 'vae_config' metadata entry")
    config = {k: v for k, v in json.loads(metadata["vae_config"]).items() if k != "_use_default_values"}
    with torch.device("meta"):
        vae = AutoencoderKL.from_config(config)
    files.load_state_dict_strict(vae, vae_state, source=path, what="VAE in the EMO checkpoint")
    vae = vae.to(device)
    return (vae if dtype == torch.float32 else vae.to(dtype)).eval()  # diffusers warns on any dtype cast


def read_emo_checkpoint(path) -> tuple[EMOConfig, dict[str, torch.Tensor], dict[str, str]]:
    """(config, tensors, metadata) of an EMO checkpoint, with errors that name the file."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise WeightsError(f"EMO checkpoints are .safetensors files; got {path}")
    state = files.read_state_dict(path, what="EMO checkpoint")
    with safe_open(os.fspath(path), framework="pt") as f:
        metadata = f.metadata() or {}
    if metadata.get("format") != FORMAT or "emo_config" not in metadata:
        raise WeightsError(f"{path} is not an EMO checkpoint (no '{FORMAT}' metadata). Is it an SD1.5 or "
                           "AnimateDiff file? Those are base weights: pass them as base_unet / motion_module.")
    try:
        config = EMOConfig.from_json(metadata["emo_config"])
    except (ValueError, TypeError, KeyError) as e:
        raise WeightsError(f"{path} has an unreadable emo_config: {e}") from e
    return config, state, metadata


def build_model(config: EMOConfig, *, base_unet=None, motion_module=None) -> EMOModel:
    """A fresh model: EMO's new layers zero-initialised, SD1.5 weights in ReferenceNet and Backbone
    (when `base_unet` is given: diffusers folder or LDM single file), AnimateDiff weights in the
    temporal modules (when `motion_module` is given: original or diffusers layout)."""
    model = EMOModel(config)
    if base_unet is not None:
        load_base_unet(model, load_unet_state_dict(base_unet, config=config.unet.diffusers_unet_config()), base_unet)
    if motion_module is not None:
        load_motion_module(model, load_motion_state_dict(
            motion_module, config=config.unet.diffusers_motion_adapter_config()), motion_module)
    return model


def load_base_unet(model: EMOModel, state_dict: dict, source) -> None:
    files.load_state_dict_strict(model.reference_net, state_dict, source=source, what="SD1.5 UNet (ReferenceNet)",
                                 ignore_missing=("context",))
    files.load_state_dict_strict(model.backbone, state_dict, source=source, what="SD1.5 UNet (Backbone)",
                                 ignore_missing=(lambda k: not is_spatial_base_key(k),))


def load_motion_module(model: EMOModel, state_dict: dict, source) -> None:
    files.load_state_dict_strict(model.backbone, state_dict, source=source, what="AnimateDiff motion module",
                                 ignore_missing=(lambda k: not is_motion_key(k),))


def load_emo_model(path, *, base_unet=None, motion_module=None, dtype: torch.dtype = torch.float32,
                   device="cpu") -> EMOModel:
    """An EMO checkpoint, completed by base weights where it holds only some parts."""
    config, state, metadata = read_emo_checkpoint(path)
    state = {k: v for k, v in state.items() if not k.startswith(VAE_PREFIX)}
    with torch.device("meta"):
        expected = {k: v.shape for k, v in EMOModel(config).state_dict().items()}
    missing = set(expected) - set(state)
    from_base = {k for k in missing if base_unet is not None and k.split(".", 1)[0] in ("reference_net", "backbone")
                 and is_spatial_base_key(k.split(".", 1)[1])}
    from_base |= {k for k in missing if motion_module is not None and k.startswith("backbone.")
                  and is_motion_key(k.split(".", 1)[1])}
    files.check_keys_and_shapes(expected, state, source=path, what="EMO checkpoint",
                                ignore_missing=(lambda k: k in from_base,),
                                hint="A checkpoint without the SD1.5 or AnimateDiff weights needs them given as "
                                     "base_unet / motion_module.")
    if not missing:
        with torch.device("meta"):
            model = EMOModel(config)
        model.load_state_dict(state, assign=True)
    else:
        model = build_model(config, base_unet=base_unet if from_base else None,
                            motion_module=motion_module if from_base else None)
        model.load_state_dict(state, strict=False)
    model.checkpoint_metadata = {k: v for k, v in metadata.items() if k not in ("emo_config", "vae_config")}
    return model.to(device=device, dtype=dtype).eval()


def training_resolution(model: EMOModel, user: str) -> int:
    """The square side a loaded checkpoint was trained at (the trainer's `training_resolution` entry)."""
    value = getattr(model, "checkpoint_metadata", {}).get("training_resolution")
    if value is None:
        raise InputError(f"the checkpoint does not record its training_resolution (trainer metadata); {user} "
                         "runs checkpoints written by python -m emo_model.train")
    return int(value)
