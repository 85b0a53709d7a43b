"""SD1.5 LoRAs on the Backbone and ReferenceNet: parse the common file layouts, merge temporarily.

Both UNets use diffusers' `UNet2DConditionModel` module names, so a LoRA trained for SD1.5 finds its
layers by name. Key layouts read:
- kohya / LyCORIS LoCon: `lora_unet_<path with '_'>.lora_down.weight`, `.lora_up.weight`, `.alpha`,
  optional `.lora_mid.weight` (CP-decomposed conv);
- diffusers / peft: `[unet.|base_model.model.]<path>.lora_A[.<adapter>].weight` / `.lora_B...`
  (also `.lora.down/.lora.up` and `.lora_down/.lora_up` with dotted paths);
- old diffusers attention processors: `<...>.attn1.processor.to_q_lora.down.weight`
  (`to_out_lora` is `to_out.0`).
Text-encoder keys are reported as not applicable (EMO has no text encoder). EMO's own layers
(temporal/motion modules, audio, reference and speed attention) never take a LoRA.

Module paths are compared in kohya's flattened form (`.` -> `_`): flattening a dotted path is
lossless in that direction, and our UNet has no two modules that flatten to the same name.
"""
from __future__ import annotations

import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import torch
from torch import nn

from .errors import WeightsError
from .weights.files import read_state_dict

# Name segments of layers that only EMO has: SD1.5 LoRAs were never trained for them.
EMO_ONLY = ("motion_modules", "audio_attn", "ref_attn", "speed_attn")
_TEXT_ENCODER = re.compile(r"^(lora_te\d*_|(base_model\.model\.)?(text_encoder(_\d)?|text_model)\.)")
_KOHYA = re.compile(r"^lora_unet_(.+)\.(lora_down|lora_up|lora_mid)\.weight$|^lora_unet_(.+)\.(alpha)$")
_PROCESSOR = re.compile(r"^(.+)\.processor\.(to_[qkv]|to_out)_lora\.(down|up)\.weight$")
_DOTTED = re.compile(r"^(.+?)\.(?:(lora_A|lora_B)(?:\.[^.]+)?\.weight|(lora\.down|lora\.up|lora_down|lora_up|lora_mid)"
                     r"\.weight|(alpha))$")
_ROLE = {"lora_A": "down", "lora_B": "up", "lora.down": "down", "lora.up": "up", "lora_down": "down",
         "lora_up": "up", "lora_mid": "mid", "alpha": "alpha"}
_LISTED = 5  # examples per category in summary()


@dataclass
class LoraFactors:
    """One layer's low-rank update: delta = up @ down * alpha / rank (LoCon: a mid kernel between them)."""

    down: torch.Tensor  # [r, in] or [r, in, k, k] (conv), [r, in, 1, 1] with mid
    up: torch.Tensor  # [out, r] or [out, r, 1, 1]
    mid: torch.Tensor | None = None  # LoCon CP core [r, r, k, k]
    alpha: float | None = None
    keys: tuple[str, ...] = ()  # the file keys, for reports

    @property
    def scale(self) -> float:
        return 1.0 if self.alpha is None else self.alpha / self.down.shape[0]

    def problem(self, shape: torch.Size) -> str | None:
        """Why these factors cannot update a weight of `shape`, or None."""
        rank = self.down.shape[0]
        if self.up.flatten(1).shape[1] != rank:
            return f"lora_up {tuple(self.up.shape)} does not fit lora_down {tuple(self.down.shape)}"
        if self.mid is not None:
            if tuple(self.mid.shape[:2]) != (rank, rank):
                return f"lora_mid {tuple(self.mid.shape)} does not fit rank {rank}"
            made = (self.up.shape[0], self.down.shape[1], *self.mid.shape[2:])
        else:
            made = (self.up.shape[0], *self.down.shape[1:])
        # A 1x1 conv and a linear layer take each other's factors ([o, i, 1, 1] vs [o, i]).
        if _squeeze(made) != _squeeze(shape):
            return f"update {tuple(made)} does not fit the weight {tuple(shape)}"
        return None

    def delta(self, shape: torch.Size, device: torch.device) -> torch.Tensor:
        """float32 update of a weight of `shape` (check `problem` first)."""
        down, up = (t.to(device, torch.float32) for t in (self.down, self.up))
        if self.mid is None:
            made = up.flatten(1) @ down.flatten(1)
        else:
            mid = self.mid.to(device, torch.float32)
            made = torch.einsum("ij...,jr,pi->pr...", mid, down.flatten(1), up.flatten(1))
        return made.reshape(shape) * self.scale


def _squeeze(shape) -> tuple[int, ...]:
    shape = tuple(shape)
    while len(shape) > 2 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


@dataclass
class LoraWeights:
    """A parsed LoRA file: factors per layer (keyed by the flattened module path) and what was not used."""

    name: str
    factors: dict[str, LoraFactors]
    text_encoder_keys: list[str] = field(default_factory=list)
    unrecognised_keys: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)  # "keys: what is missing"


@dataclass
class LoraReport:
    """What one LoRA did to one UNet."""

    name: str
    matched: list[str] = field(default_factory=list)  # module names updated
    unmatched: list[str] = field(default_factory=list)  # file keys that fit no layer of this UNet
    text_encoder: list[str] = field(default_factory=list)  # file keys ignored: EMO has no text encoder
    skipped: list[str] = field(default_factory=list)  # "layer: reason" (shape mismatch, incomplete factors)

    def summary(self) -> str:
        parts = [f"LoRA {self.name!r}: {len(self.matched)} layers patched"]
        for label, items in (("keys matched no layer", self.unmatched), ("layers skipped", self.skipped)):
            if items:
                more = f", ... {len(items) - _LISTED} more" if len(items) > _LISTED else ""
                parts.append(f"{len(items)} {label} ({', '.join(items[:_LISTED])}{more})")
        if self.text_encoder:
            parts.append(f"{len(self.text_encoder)} text-encoder keys ignored (EMO has no text encoder)")
        return "; ".join(parts)


def load_lora(path: str | os.PathLike, name: str | None = None) -> LoraWeights:
    """Read a LoRA file (.safetensors; .ckpt/.pt only if it holds plain tensors) and parse it."""
    path = Path(path)
    lora = parse_lora(read_state_dict(path, what="LoRA"), name or path.stem)
    if not lora.factors and not lora.text_encoder_keys:
        raise WeightsError(f"LoRA {path} holds no LoRA layers in a layout we know (keys such as "
                           f"{', '.join(lora.unrecognised_keys[:3])}). Check that it is an SD1.5 LoRA "
                           "(kohya, diffusers or peft format); LoHa/LoKr files are not supported.")
    return lora


def parse_lora(state_dict: dict[str, torch.Tensor], name: str) -> LoraWeights:
    """Group a LoRA state dict into per-layer factors; never raises on odd keys, it reports them."""
    parts: dict[str, dict[str, str]] = {}  # flattened module path -> role -> key
    lora = LoraWeights(name, {})
    for key in state_dict:
        if _TEXT_ENCODER.match(key):
            lora.text_encoder_keys.append(key)
            continue
        found = _parse_key(key)
        if found is None or found[1] in parts.setdefault(found[0], {}):  # unknown, or a second copy
            lora.unrecognised_keys.append(key)
            continue
        parts[found[0]][found[1]] = key
    for module, roles in parts.items():
        missing = [r for r in ("down", "up") if r not in roles]
        if missing:
            lora.incomplete.append(f"{', '.join(roles.values())}: no matching lora_{missing[0]} weight")
            continue
        alpha = state_dict[roles["alpha"]].item() if "alpha" in roles else None
        lora.factors[module] = LoraFactors(
            down=state_dict[roles["down"]], up=state_dict[roles["up"]],
            mid=state_dict[roles["mid"]] if "mid" in roles else None, alpha=alpha, keys=tuple(roles.values()))
    return lora


def _parse_key(key: str) -> tuple[str, str] | None:
    """(flattened module path, role in down/up/mid/alpha) of a UNet LoRA key, or None."""
    if m := _KOHYA.match(key):
        return (m[1], m[2][5:]) if m[1] else (m[3], "alpha")
    key = key.removeprefix("base_model.model.").removeprefix("unet.")
    if m := _PROCESSOR.match(key):
        target = "to_out.0" if m[2] == "to_out" else m[2]
        return f"{m[1]}.{target}".replace(".", "_"), m[3]
    if m := _DOTTED.match(key):
        return m[1].replace(".", "_"), _ROLE[m[2] or m[3] or m[4]]
    return None


def lora_targets(module: nn.Module) -> dict[str, tuple[str, nn.Module]]:
    """Flattened name -> (module name, layer) of every Linear/Conv2d an SD1.5 LoRA may change."""
    return {
        name.replace(".", "_"): (name, layer)
        for name, layer in module.named_modules()
        if isinstance(layer, (nn.Linear, nn.Conv2d)) and not set(name.split(".")) & set(EMO_ONLY)
    }


@contextmanager
def merged_lora(module: nn.Module, loras: Sequence[tuple[LoraWeights, float]]) -> Iterator[list[LoraReport]]:
    """Add strength * delta of each LoRA into `module`'s weights for the duration of the block.

    Updates are summed in float32 and cast once to the weight's dtype, on the weight's device. On
    exit, even by an exception, every touched weight gets back its exact original value (a copy of
    only those weights is kept, on the CPU so that it costs no accelerator memory). Yields one
    report per LoRA, in order.
    """
    targets = lora_targets(module)
    reports = [LoraReport(lora.name, text_encoder=list(lora.text_encoder_keys),
                          unmatched=list(lora.unrecognised_keys), skipped=list(lora.incomplete)) for lora, _ in loras]
    plan: dict[str, list[tuple[LoraFactors, float]]] = {}  # flattened name -> factors and strengths
    for (lora, strength), report in zip(loras, reports):
        for flat, factors in lora.factors.items():
            if flat not in targets:
                report.unmatched.extend(factors.keys)
                continue
            name, layer = targets[flat]
            problem = factors.problem(layer.weight.shape)
            if problem:
                report.skipped.append(f"{name}: {problem}")
                continue
            report.matched.append(name)
            if strength != 0:
                plan.setdefault(flat, []).append((factors, strength))

    originals: list[tuple[torch.Tensor, torch.Tensor]] = []
    try:
        with torch.no_grad():
            for flat, updates in plan.items():
                weight = targets[flat][1].weight
                total = sum(strength * factors.delta(weight.shape, weight.device) for factors, strength in updates)
                originals.append((weight, weight.detach().to("cpu", copy=True)))
                weight.copy_((weight.float() + total).to(weight.dtype))
        yield reports
    finally:
        with torch.no_grad():
            for weight, original in originals:
                weight.copy_(original)
