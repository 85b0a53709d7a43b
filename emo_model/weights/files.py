"""Reading, writing and strictly loading plain state dicts, with errors a user can act on."""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Callable, Iterable, Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..atomic import atomic_path
from ..errors import WeightsError

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
WEIGHT_SUFFIXES = (".safetensors",) + PICKLE_SUFFIXES
# Training scripts wrap the weights in one of these; the other top-level entries are bookkeeping.
_WRAPPER_KEYS = ("state_dict", "module")
# How many offending keys an error message lists before it only gives counts.
_MAX_LISTED = 10

KeyFilter = str | Callable[[str], bool]


def read_state_dict(
    path: str | os.PathLike, *, what: str = "weight file", prefix: str | None = None
) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a plain dict of CPU tensors, never unpickling arbitrary objects.

    `what` names the file in error messages ("SD1.5 checkpoint", "motion module", ...). When the
    file holds keys starting with `prefix`, only those are returned (and, from .safetensors, only
    those are read): e.g. the VAE part of a 4 GB full SD checkpoint.
    """
    path = Path(path)
    if not path.exists():
        raise WeightsError(
            f"{what} not found: {path}. Put {path.name} in {path.parent}, or give the path of the file you have."
        )
    if path.is_dir():
        raise WeightsError(f"{what} {path} is a folder; give the path of the weight file inside it.")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        obj = _read_safetensors(path, what, prefix)
    elif suffix in PICKLE_SUFFIXES:
        obj = _torch_load(path, what)
    else:
        raise WeightsError(
            f"{what} {path} has the unsupported extension {path.suffix!r}; "
            f"use one of {', '.join(WEIGHT_SUFFIXES)}."
        )
    state_dict = _as_tensor_dict(obj, path, what)
    if prefix and any(k.startswith(prefix) for k in state_dict):
        state_dict = {k: v for k, v in state_dict.items() if k.startswith(prefix)}
    return state_dict


def _read_safetensors(path: Path, what: str, prefix: str | None) -> dict[str, torch.Tensor]:
    try:
        with safe_open(os.fspath(path), framework="pt", device="cpu") as f:
            keys = list(f.keys())
            if prefix and any(k.startswith(prefix) for k in keys):
                keys = [k for k in keys if k.startswith(prefix)]
            return {k: f.get_tensor(k) for k in keys}
    except SafetensorError as e:
        raise _corrupt(path, what, e) from e
    except OSError as e:
        raise _unreadable(path, what, e) from e


def _torch_load(path: Path, what: str):
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        if "weights only load failed" in str(e).lower():
            raise WeightsError(
                f"{what} {path} holds pickled Python objects besides tensors; refusing to unpickle it because "
                "that can run arbitrary code. Convert it to .safetensors in a trusted environment "
                "(or get a .safetensors copy) and use that file."
            ) from e
        raise _corrupt(path, what, e) from e
    except OSError as e:
        raise _unreadable(path, what, e) from e
    # torch reports a damaged file with whatever its parser hit first (RuntimeError, EOFError, KeyError, ...).
    except Exception as e:
        raise _corrupt(path, what, e) from e


def _unreadable(path: Path, what: str, cause: OSError) -> WeightsError:
    return WeightsError(f"{what} {path} cannot be read: {cause}. Check the file's permissions and the disk.")


def _corrupt(path: Path, what: str, cause: Exception) -> WeightsError:
    return WeightsError(
        f"{what} {path} is corrupt, truncated or not a weight file ({type(cause).__name__}: "
        f"{str(cause).splitlines()[0] if str(cause) else 'no details'}). Download or copy it again."
    )


def _as_tensor_dict(obj, path: Path, what: str) -> dict[str, torch.Tensor]:
    while (
        isinstance(obj, dict)
        and not any(isinstance(v, torch.Tensor) for v in obj.values())
        and any(isinstance(obj.get(k), dict) for k in _WRAPPER_KEYS)
    ):
        obj = next(obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), dict))
    if not isinstance(obj, dict):
        raise WeightsError(
            f"{what} {path} holds a {type(obj).__name__}, not a dict of named tensors; it is not a weight file."
        )
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad or not obj:
        found = f"non-tensor entries such as {bad[:3]}" if bad else "no tensors"
        raise WeightsError(f"{what} {path} is not a plain state dict: it has {found}.")
    return dict(obj)


def write_safetensors(
    state_dict: Mapping[str, torch.Tensor],
    path: str | os.PathLike,
    metadata: dict[str, str] | None = None,
) -> None:
    """Write atomically: a reader never sees a half-written file, and a failed write leaves none."""
    path = Path(path)
    tensors, seen = {}, set()
    for key, value in state_dict.items():
        tensor = value.detach().contiguous()
        # safetensors refuses tensors that share storage (tied weights, views made by converters).
        if tensor.untyped_storage().data_ptr() in seen:
            tensor = tensor.clone()
        seen.add(tensor.untyped_storage().data_ptr())
        tensors[key] = tensor
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "xb"):
            mode = os.stat(tmp).st_mode & 0o777  # what the user's umask gives a new file
        save_file(tensors, tmp, metadata=metadata)
        # Recent safetensors write through their own 0600 temp file; give the file the usual mode.
        os.chmod(tmp, mode)


def load_state_dict_strict(
    module: torch.nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    source: str | os.PathLike,
    what: str,
    ignore_missing: Iterable[KeyFilter] = (),
    ignore_unexpected: Iterable[KeyFilter] = (),
) -> tuple[list[str], list[str]]:
    """Load `state_dict` into `module` after checking that keys and shapes fit exactly.

    `ignore_missing` / `ignore_unexpected` hold key prefixes or predicates for keys that may be absent
    from the file / present in it but unused. Tensors are cast to the module's dtype and device; a
    module built on the meta device receives the tensors themselves (on CPU).
    Returns (missing keys that were ignored, unexpected keys that were ignored).
    """
    target = module.state_dict()
    missing_ignored, unexpected_ignored = check_keys_and_shapes(
        {k: v.shape for k, v in target.items()},
        state_dict,
        source=source,
        what=what,
        ignore_missing=ignore_missing,
        ignore_unexpected=ignore_unexpected,
    )

    loadable = {k: v for k, v in state_dict.items() if k in target}
    # copy_ into a meta tensor is a no-op, so a (partly) meta module takes the tensors by assignment,
    # cast here to what load_state_dict's copy_ would have produced.
    on_meta = any(t.is_meta for t in target.values())
    if on_meta:
        loadable = {k: _cast_like(v, target[k]) for k, v in loadable.items()}
    module.load_state_dict(loadable, strict=False, assign=on_meta)
    return missing_ignored, unexpected_ignored


def check_keys_and_shapes(
    expected: Mapping[str, torch.Size],
    state_dict: Mapping[str, torch.Tensor],
    *,
    source: str | os.PathLike,
    what: str,
    ignore_missing: Iterable[KeyFilter] = (),
    ignore_unexpected: Iterable[KeyFilter] = (),
    hint: str = "",
) -> tuple[list[str], list[str]]:
    """Raise WeightsError unless `state_dict` has exactly the `expected` keys with the expected shapes.

    Returns (missing keys that were ignored, unexpected keys that were ignored).
    """
    ignore_missing, ignore_unexpected = tuple(ignore_missing), tuple(ignore_unexpected)
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(expected[k])}"
        for k in expected
        if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k])
    ]
    missing_ignored = [k for k in missing if _matches(k, ignore_missing)]
    unexpected_ignored = [k for k in unexpected if _matches(k, ignore_unexpected)]
    missing = [k for k in missing if not _matches(k, ignore_missing)]
    unexpected = [k for k in unexpected if not _matches(k, ignore_unexpected)]
    if missing or unexpected or mismatched:
        raise WeightsError(
            _describe_mismatch(what, source, missing=missing, unexpected=unexpected, mismatched=mismatched, hint=hint)
        )
    return missing_ignored, unexpected_ignored


def _cast_like(value: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    dtype = ref.dtype if ref.is_floating_point() and value.is_floating_point() else value.dtype
    if value.is_meta:  # a key/shape check on the meta device: nothing to copy
        return value.to(dtype=dtype)
    return value.to(device="cpu" if ref.is_meta else ref.device, dtype=dtype)


def _matches(key: str, filters: tuple[KeyFilter, ...]) -> bool:
    return any(f(key) if callable(f) else key.startswith(f) for f in filters)


def _describe_mismatch(
    what: str,
    source: str | os.PathLike,
    *,
    missing: list[str] = (),
    unexpected: list[str] = (),
    mismatched: list[str] = (),
    hint: str = "",
) -> str:
    """One message listing the first offending keys of each kind, with counts."""
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("with the wrong shape", mismatched)):
        if keys:
            more = f" (and {len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else ""
            noun = "key" if len(keys) == 1 else "keys"
            parts.append(f"{len(keys)} {noun} {label}: {', '.join(keys[:_MAX_LISTED])}{more}")
    advice = hint or f"Check that {source} really holds {what} weights and not another model or model family."
    return f"{what} weights from {source} do not fit the model. " + "; ".join(parts) + f". {advice}"
