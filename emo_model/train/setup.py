"""The model and VAE a training run starts from.

Model: from `init_checkpoint` (the previous stage's emo.safetensors, completed by base weights when it
is partial) or else fresh from `build_model` (SD1.5 `base_unet` weights when given, from scratch
otherwise). A given `motion_module` (AnimateDiff) is loaded into the temporal modules last, so stage 2
can start them from AnimateDiff on top of a stage-1 checkpoint. The checkpoint's geometry must be the
config's; clip lengths, fps and the noise schedule come from the config (they are what gets trained).

VAE: `vae` (SD1.5 VAE folder/file, or an EMO checkpoint that holds one), else the init checkpoint's.
It stays frozen; each clip's latents are encoded once, the first time it is drawn, and kept within
`frame_cache_mb` (`TrainData`); with `hue_augment` on, the turned pixels are encoded on every step.
"""
from __future__ import annotations

import dataclasses

import torch

from ..checkpoint import (build_model, holds_embedded_vae, is_emo_checkpoint, load_checkpoint_vae, load_emo_model,
                          load_motion_module)
from ..config import EMOConfig
from ..model import EMOModel
from ..weights.animatediff import load_motion_state_dict
from ..weights.sd15 import load_vae
from .config import ConfigError, TrainConfig

_PER_RUN_FIELDS = ("noise", "frames_per_clip", "motion_frames", "fps")


def build_training_model(config: TrainConfig, emo_config: EMOConfig) -> EMOModel:
    if config.init_checkpoint:
        model = load_emo_model(config.init_checkpoint, base_unet=config.base_unet, motion_module=config.motion_module)
        adopt_config(model, emo_config, config.init_checkpoint)
    else:
        model = build_model(emo_config, base_unet=config.base_unet)
    if config.motion_module:
        load_motion_module(model, load_motion_state_dict(
            config.motion_module, config=emo_config.unet.diffusers_motion_adapter_config()), config.motion_module)
    return model.float().train()


def adopt_config(model: EMOModel, emo_config: EMOConfig, source) -> None:
    """Give a loaded model this run's config (clip lengths, fps, noise schedule: what is saved with it),
    after checking that the weights' geometry is the config's."""
    found = dataclasses.replace(model.config, **{k: getattr(emo_config, k) for k in _PER_RUN_FIELDS})
    if found != emo_config:
        differ = [f.name for f in dataclasses.fields(EMOConfig) if getattr(found, f.name) != getattr(emo_config, f.name)]
        raise ConfigError(f"{source} has another geometry than the training config (fields {differ} differ): "
                          "set `geometry` to the checkpoint's.")
    model.config = emo_config


def load_training_vae(config: TrainConfig, device):
    path = config.vae or config.init_checkpoint
    if path is None:
        raise ConfigError("the config needs `vae`: an SD1.5 VAE (folder or file), or an EMO checkpoint holding one")
    vae = load_any_vae(path, device)
    vae.requires_grad_(False)
    return vae


def load_any_vae(path, device="cpu"):
    """A VAE from an EMO checkpoint that holds one, a VAE file of `python -m emo_model.train.vae`, or SD1.5 VAE
    weights (folder or file)."""
    if holds_embedded_vae(path):
        return load_checkpoint_vae(path, device=device)
    if is_emo_checkpoint(path):
        raise ConfigError(f"{path} is an EMO checkpoint without a VAE; set `vae` to an SD1.5 VAE or a VAE file "
                          "from `python -m emo_model.train.vae`")
    return load_vae(path, device=device)


def own_storage(model: torch.nn.Module) -> torch.nn.Module:
    """Copy every weight into memory from torch's allocator. Tensors read from safetensors are not
    64-byte aligned and MKL's float results depend on alignment: without this a resumed run drifts
    from an uninterrupted one in the last bits."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        tensor.data = tensor.data.clone()
    return model
