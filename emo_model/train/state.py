"""Resumable training checkpoints, without pickle.

    OUT/checkpoints/step_000500/
        model.safetensors      the whole model (save_emo_checkpoint: load_emo_model reads it)
        optimizer.safetensors  every tensor of the optimizer state_dict, keyed "state.<param>.<name>"
        optimizer.json         the rest of it: param_groups and non-tensor state entries
        state.json             step, loss-log accumulator, elapsed seconds, grad-scaler state, config

A checkpoint is written into a hidden temp folder and renamed into place, so a `step_*` folder is
always complete; `latest_checkpoint` (used by --resume auto) takes the highest step. Only the last
`keep` are kept.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import torch

from ..checkpoint import save_emo_checkpoint
from ..errors import EMOError
from ..weights.files import read_state_dict, write_safetensors

CHECKPOINTS = "checkpoints"
MODEL, OPTIMIZER, OPTIMIZER_JSON, STATE = "model.safetensors", "optimizer.safetensors", "optimizer.json", "state.json"


class ResumeError(EMOError, ValueError):
    """There is no usable checkpoint to resume from."""


def step_dir(output_dir, step: int) -> Path:
    return Path(output_dir) / CHECKPOINTS / f"step_{step:06d}"


def flatten_optimizer_state(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state_dict → (tensors, JSON-able rest)."""
    tensors, rest = {}, {}
    for index, entries in state_dict["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{name}"] = value
            else:
                rest.setdefault(str(index), {})[name] = value
    return tensors, {"state": rest, "param_groups": state_dict["param_groups"]}


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], structure: dict) -> dict:
    state: dict[int, dict] = {int(i): dict(entries) for i, entries in structure["state"].items()}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": structure["param_groups"]}


def save_checkpoint(output_dir, step: int, *, model, optimizer_state: dict, state: dict, keep: int) -> Path:
    final = step_dir(output_dir, step)
    tmp = final.parent / f".{final.name}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir(parents=True)
    try:
        save_emo_checkpoint(model, tmp / MODEL, metadata={"training_step": str(step)})
        tensors, structure = flatten_optimizer_state(optimizer_state)
        # safetensors needs at least one tensor; a fresh optimizer state has none.
        write_safetensors(tensors or {"empty": torch.zeros(0)}, tmp / OPTIMIZER)
        (tmp / OPTIMIZER_JSON).write_text(json.dumps(structure))
        (tmp / STATE).write_text(json.dumps({"step": step, **state}, indent=1))
        if final.exists():  # the same step saved again by a rerun: replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in checkpoints(output_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def checkpoints(output_dir) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = Path(output_dir) / CHECKPOINTS
    found = [p for p in root.glob("step_*") if p.is_dir() and (p / STATE).is_file()] if root.is_dir() else []
    return sorted(found, key=lambda p: p.name)


def latest_checkpoint(output_dir) -> Path | None:
    found = checkpoints(output_dir)
    return found[-1] if found else None


def load_checkpoint_state(path) -> tuple[dict, dict]:
    """(state.json contents, optimizer state_dict) of a checkpoint folder."""
    path = Path(path)
    missing = [n for n in (MODEL, OPTIMIZER, OPTIMIZER_JSON, STATE) if not (path / n).is_file()]
    if missing:
        raise ResumeError(f"{path} is not a complete training checkpoint (missing {', '.join(missing)}); "
                          "resume from another step_* folder or with --resume auto.")
    try:
        state = json.loads((path / STATE).read_text())
        structure = json.loads((path / OPTIMIZER_JSON).read_text())
    except ValueError as e:
        raise ResumeError(f"{path} has a corrupt JSON file ({e}); resume from an earlier checkpoint.") from e
    # Cloned into torch-allocated (aligned) memory, like the weights (see setup.own_storage).
    tensors = {k: v.clone() for k, v in read_state_dict(path / OPTIMIZER, what="optimizer state").items()
               if k != "empty"}
    return state, unflatten_optimizer_state(tensors, structure)
