"""Finding the weights and config.json of one model in a diffusers folder."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import WeightsError

# Preference order: safetensors before pickles, full precision before the fp16 variant.
_WEIGHT_NAMES = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.fp16.safetensors",
    "diffusion_pytorch_model.fp16.bin",
)


def component_folder(path: Path, component: str) -> Path:
    """The `component` subfolder of a pipeline folder (model_index.json, unet/, vae/...), else `path`."""
    sub = path / component
    return sub if sub.is_dir() else path


def folder_weights(folder: Path, what: str) -> Path:
    for name in _WEIGHT_NAMES:
        if (folder / name).is_file():
            return folder / name
    found = sorted(p.name for p in folder.iterdir())[:12]
    raise WeightsError(
        f"{what} folder {folder} has no {' / '.join(_WEIGHT_NAMES)} (found: {', '.join(found) or 'nothing'}). "
        "Give a diffusers folder holding the weights, or the path of a single checkpoint file."
    )


def folder_config(folder: Path, what: str) -> dict | None:
    """The folder's config.json as a dict, None when the folder has none."""
    path = folder / "config.json"
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WeightsError(f"{what} config {path} cannot be read as JSON ({e}). Restore the file.") from e
    if not isinstance(config, dict):
        raise WeightsError(f"{what} config {path} is not a JSON object. Restore the file.")
    return config
