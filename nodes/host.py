"""Where the nodes run: inside ComfyUI, or standalone (tests and the headless runner).

Inside ComfyUI the nodes use its machinery: model folders from `folder_paths` (so
`extra_model_paths.yaml` works), devices and offloading from `comfy.model_management`, models
wrapped in `ModelPatcher` so ComfyUI loads/unloads them with everything else, `ProgressBar` with
latent previews, and Cancel checked every denoising step. Standalone, the same calls use folders
set by `configure()`, CUDA when present else the CPU, and an optional progress callback.
Every ComfyUI import is done lazily here, so the rest of the pack never imports ComfyUI.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import torch

log = logging.getLogger("emo")

PACK_DIR = Path(__file__).resolve().parents[1]
BUNDLED_MODELS_DIR = PACK_DIR / "models"  # models shipped with the pack (the demo model)

# model kinds → file extensions; `FOLDER_MODELS` kinds may also be folders (HF / CTranslate2)
MODEL_EXTENSIONS = {
    "emo": (".safetensors",),
    "checkpoints": (".safetensors", ".ckpt"),
    "vae": (".safetensors", ".ckpt", ".pt"),
    "audio_encoders": (".safetensors", ".bin"),
    "loras": (".safetensors",),
    "animatediff_models": (".safetensors", ".ckpt"),
}
FOLDER_MODELS = ("audio_encoders", "checkpoints", "vae")
_FOLDER_MARKERS = ("config.json", "model.bin", "model_index.json")


@dataclass
class Standalone:
    """Folders and hooks used when ComfyUI is not running the nodes."""
    models_dir: Path = field(default_factory=lambda: Path(os.environ.get("EMO_MODELS_DIR", "models")))
    input_dir: Path = field(default_factory=lambda: Path(os.environ.get("EMO_INPUT_DIR", "input")))
    output_dir: Path = field(default_factory=lambda: Path(os.environ.get("EMO_OUTPUT_DIR", "output")))
    device: str | None = None
    progress: Callable[[int, int], None] | None = None  # (done, total) per denoising step
    cancelled: Callable[[], bool] | None = None


_standalone = Standalone()
_comfy: dict | None = None


def configure(**changes) -> Standalone:
    """Set the standalone folders/hooks (runner, tests); returns the previous settings."""
    global _standalone
    previous = _standalone
    _standalone = Standalone(**{**previous.__dict__, **changes})
    for key in ("models_dir", "input_dir", "output_dir"):
        setattr(_standalone, key, Path(getattr(_standalone, key)))
    return previous


def comfy() -> dict | None:
    """ComfyUI's modules when the pack runs inside ComfyUI, else None."""
    global _comfy
    if _comfy is None:
        try:
            _comfy = {name: importlib.import_module(name) for name in
                      ("folder_paths", "comfy.model_management", "comfy.model_patcher", "comfy.utils")}
        except ImportError:
            _comfy = {}
    return _comfy or None


def in_comfyui() -> bool:
    return comfy() is not None


def register_model_folders() -> None:
    """Add `models/emo` (and the pack's bundled models) to ComfyUI's model folders."""
    c = comfy()
    if c is None:
        return
    folder_paths = c["folder_paths"]
    for kind in ("emo", "animatediff_models"):
        folder_paths.add_model_folder_path(kind, os.path.join(folder_paths.models_dir, kind))
    for kind in ("emo", "audio_encoders"):
        if (BUNDLED_MODELS_DIR / kind).is_dir():
            folder_paths.add_model_folder_path(kind, str(BUNDLED_MODELS_DIR / kind))


# --- folders ------------------------------------------------------------------------------------
def model_folders(kind: str) -> list[Path]:
    c = comfy()
    if c is not None:
        try:
            return [Path(p) for p in c["folder_paths"].get_folder_paths(kind)]
        except KeyError:
            return []
    folders = [_standalone.models_dir / kind]
    if (BUNDLED_MODELS_DIR / kind).is_dir():
        folders.append(BUNDLED_MODELS_DIR / kind)
    return folders


def list_models(kind: str) -> list[str]:
    """Model files (and model folders, for kinds that have them) of `kind`, relative names."""
    extensions = MODEL_EXTENSIONS[kind]
    names: set[str] = set()
    for folder in model_folders(kind):
        if not folder.is_dir():
            continue
        for path in folder.rglob("*"):
            rel = path.relative_to(folder).as_posix()
            if path.is_file() and path.suffix in extensions and not _inside_model_folder(path, folder):
                names.add(rel)
            elif kind in FOLDER_MODELS and path.is_dir() and any((path / m).is_file() for m in _FOLDER_MARKERS):
                names.add(rel + "/")
    return sorted(names)


def _inside_model_folder(path: Path, root: Path) -> bool:
    """A weight file inside an HF/CTranslate2 folder is listed as the folder, not on its own."""
    return any(any((p / m).is_file() for m in _FOLDER_MARKERS) for p in path.parents
               if p != root and root in p.parents)


def model_path(kind: str, name: str) -> Path:
    """The full path of model `name` of `kind`; a clear error naming the folders when it is missing."""
    for folder in model_folders(kind):
        path = folder / name
        if path.exists():
            return path
    where = ", ".join(str(f) for f in model_folders(kind)) or f"models/{kind}"
    raise FileNotFoundError(f"{kind} model '{name}' not found. Put the file in {where} "
                            "(nothing is downloaded automatically), then refresh the node list.")


def input_dir() -> Path:
    c = comfy()
    return Path(c["folder_paths"].get_input_directory()) if c else _standalone.input_dir


def output_dir() -> Path:
    c = comfy()
    return Path(c["folder_paths"].get_output_directory()) if c else _standalone.output_dir


def input_files(extensions: Iterable[str]) -> list[str]:
    folder = input_dir()
    if not folder.is_dir():
        return []
    ext = tuple(extensions)
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()
                  and p.suffix.lower() in ext)


def input_path(name: str) -> Path:
    c = comfy()
    if c is not None:
        return Path(c["folder_paths"].get_annotated_filepath(name))
    path = Path(name)
    return path if path.is_absolute() else input_dir() / path


# --- devices and model management --------------------------------------------------------------
def load_device() -> torch.device:
    c = comfy()
    if c is not None:
        return c["comfy.model_management"].get_torch_device()
    if _standalone.device:
        return torch.device(_standalone.device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def offload_device() -> torch.device:
    c = comfy()
    return c["comfy.model_management"].unet_offload_device() if c else load_device()


def auto_dtype(device: torch.device) -> torch.dtype:
    """What 'auto' precision means on `device`."""
    c = comfy()
    if c is not None:
        mm = c["comfy.model_management"]
        if mm.should_use_fp16(device):
            return torch.float16
        if mm.should_use_bf16(device):
            return torch.bfloat16
        return torch.float32
    return torch.float16 if device.type == "cuda" else torch.float32


class _Managed(torch.nn.Module):
    """ModelPatcher sets `.device` on the module it manages; EMOModel and diffusers models expose a
    read-only `device`, so ComfyUI manages this holder instead."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module


def wrap_model(module: torch.nn.Module):
    """A ComfyUI ModelPatcher around `module` (None standalone, where models stay on their device)."""
    c = comfy()
    if c is None:
        return None
    return c["comfy.model_patcher"].ModelPatcher(_Managed(module), load_device=load_device(),
                                                 offload_device=offload_device())


def load_models(patchers: Iterable) -> None:
    """Ask ComfyUI to put these models on the accelerator (offloading others as needed). Full load:
    ComfyUI's partial low-VRAM loading only knows its own layer classes, not plain torch layers."""
    patchers = [p for p in patchers if p is not None]
    c = comfy()
    if c is not None and patchers:
        c["comfy.model_management"].load_models_gpu(patchers, force_full_load=True)


def check_interrupted() -> None:
    """Raise when the user pressed Cancel (ComfyUI) or the runner was asked to stop."""
    c = comfy()
    if c is not None:
        c["comfy.model_management"].throw_exception_if_processing_interrupted()
    elif _standalone.cancelled is not None and _standalone.cancelled():
        raise InterruptedError("generation cancelled")


class Progress:
    """Per-step progress: ComfyUI's ProgressBar with a latent preview, or the standalone callback."""

    def __init__(self, total: int):
        self.total = total
        c = comfy()
        self._bar = c["comfy.utils"].ProgressBar(total) if c else None
        self._previewer = None
        if c is not None:
            with contextlib.suppress(Exception):  # previews are optional (disabled, or no format)
                latent_preview = importlib.import_module("latent_preview")
                formats = importlib.import_module("comfy.latent_formats")
                self._previewer = latent_preview.get_previewer(load_device(), formats.SD15())

    def update(self, done: int, latents: torch.Tensor | None = None) -> None:
        if self._bar is not None:
            preview = None
            if self._previewer is not None and latents is not None:
                preview = self._previewer.decode_latent_to_preview_image("JPEG", latents)
            self._bar.update_absolute(done, self.total, preview)
        elif _standalone.progress is not None:
            _standalone.progress(done, self.total)
