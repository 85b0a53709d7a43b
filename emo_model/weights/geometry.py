"""What a model of a given config expects: its parameter shapes, and the config fields that fix them."""
from __future__ import annotations

import functools
import json
import os
from typing import Mapping

import torch

from ..errors import WeightsError


def expected_shapes(model_cls: type, config: Mapping) -> dict[str, torch.Size]:
    """Key -> shape of `model_cls.from_config(config)`, built on the meta device (no memory, no init)."""
    return dict(_expected_shapes(model_cls, json.dumps(_plain(config), sort_keys=True)))


@functools.lru_cache(maxsize=16)
def _expected_shapes(model_cls: type, config_json: str) -> tuple[tuple[str, torch.Size], ...]:
    with torch.device("meta"):
        model = model_cls.from_config(json.loads(config_json))
    return tuple((k, v.shape) for k, v in model.state_dict().items())


def check_config_fields(
    found: Mapping, expected: Mapping, fields: tuple[str, ...], *, source: str | os.PathLike, what: str
) -> None:
    """Raise unless `found` agrees with `expected` on each of `fields` that both set."""
    diffs = [
        f"{name} is {_plain(found[name])} but {what} needs {_plain(expected[name])}"
        for name in fields
        if name in found and name in expected and _plain(found[name]) != _plain(expected[name])
    ]
    if diffs:
        raise WeightsError(
            f"{source} describes a model that is not {what}: {'; '.join(diffs)}. "
            f"Use {what} weights (or pass a matching config if the other geometry is intended)."
        )


def _plain(value):
    """JSON-style value with tuples as lists, so configs from code and from config.json compare equal."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
