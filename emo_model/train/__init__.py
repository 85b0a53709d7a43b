"""Trainer for EMO's three stages (paper §3.3): `python -m emo_model.train --config FILE`.

    python -m emo_model.train --config configs/train/stage1_tiny.json [--set key=value ...] [--resume auto|PATH]
    accelerate launch -m emo_model.train --config configs/train/stage2_sd15.json   # GPUs / nodes

Modules: config (TrainConfig from JSON), freeze (what each stage trains), data (samples from
prepared datasets), objective (noise, targets, loss), setup (initial model and VAE), state
(resumable safetensors checkpoints), loss_log (loss.jsonl and loss.png), trainer (the loop).

Output folder: checkpoints/step_XXXXXX/ (resumable; see state.py), emo.safetensors (the trained model,
loadable by `load_emo_model`, the pipeline and the nodes; with its VAE when `save_vae`), loss.jsonl,
loss.png, train_config.json.
"""
from .config import ConfigError, TrainConfig
from .freeze import GROUPS, STAGE_GROUPS, parameter_group
from .trainer import train

__all__ = ["ConfigError", "GROUPS", "STAGE_GROUPS", "TrainConfig", "parameter_group", "train"]
