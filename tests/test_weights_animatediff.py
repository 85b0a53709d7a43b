"""AnimateDiff motion modules in diffusers MotionAdapter layout (emo_model.weights.animatediff).

Original-layout inputs are made here from MotionAdapter state dicts by an independent inverse mapping,
written from the AnimateDiff layout (not from diffusers' converter).
"""
import pytest
import torch
from diffusers import MotionAdapter

from emo_model.errors import WeightsError
from emo_model.weights.animatediff import (
    SD15_MOTION_ADAPTER_CONFIG,
    convert_motion_state_dict,
    load_motion_state_dict,
)
from emo_model.weights.files import write_safetensors

TINY_MOTION = {
    **SD15_MOTION_ADAPTER_CONFIG,
    "block_out_channels": (8, 16, 16, 16),
    "motion_num_attention_heads": 2,
    "motion_norm_num_groups": 4,
    "motion_max_seq_length": 6,
}

# diffusers transformer-block names -> AnimateDiff's (inside temporal_transformer.transformer_blocks.0).
_BLOCK = {"attn1": "attention_blocks.0", "attn2": "attention_blocks.1", "norm1": "norms.0", "norm2": "norms.1",
          "norm3": "ff_norm", "ff": "ff"}


def to_original(state_dict):
    """down_blocks.i.motion_modules.j.temporal_transformer.{norm, proj_in, transformer_blocks.0.{
    attention_blocks.{0,1}.{to_q,to_k,to_v,to_out.0,pos_encoder.pe}, norms.{0,1}, ff.net.*, ff_norm}, proj_out}."""
    out = {}
    for key, value in state_dict.items():
        head, sep, rest = key.partition(".motion_modules.")
        index, _, inner = rest.partition(".")
        module = f"{head}{sep}{index}.temporal_transformer."
        if not inner.startswith("transformer_blocks.0."):
            out[module + inner] = value
            continue
        name, _, leaf = inner.removeprefix("transformer_blocks.0.").partition(".")
        block = module + "transformer_blocks.0."
        if name == "pos_embed":
            # AnimateDiff keeps the (identical) sinusoid table in each of the two attention blocks.
            out[block + "attention_blocks.0.pos_encoder.pe"] = value
            out[block + "attention_blocks.1.pos_encoder.pe"] = value.clone()
        else:
            out[f"{block}{_BLOCK[name]}.{leaf}"] = value
    return out


def _adapter_state(config):
    torch.manual_seed(0)
    state = MotionAdapter.from_config(config).state_dict()
    return {k: (v if k.endswith(".pe") else torch.randn_like(v)) for k, v in state.items()}


def _assert_same(got, want):
    assert sorted(got) == sorted(want)
    bad = [k for k in want if got[k].shape != want[k].shape or not torch.equal(got[k], want[k])]
    assert not bad, bad[:5]


def test_sd15_v2_layout_converts_on_meta():
    with torch.device("meta"):
        adapter = MotionAdapter.from_config(SD15_MOTION_ADAPTER_CONFIG).state_dict()
    original = to_original(adapter)
    for key in ("down_blocks.0.motion_modules.0.temporal_transformer.proj_in.weight",
                "down_blocks.3.motion_modules.1.temporal_transformer.transformer_blocks.0.attention_blocks.1."
                "pos_encoder.pe",
                "mid_block.motion_modules.0.temporal_transformer.transformer_blocks.0.ff_norm.weight",
                "up_blocks.3.motion_modules.2.temporal_transformer.transformer_blocks.0.attention_blocks.0."
                "to_out.0.bias",
                "up_blocks.0.motion_modules.2.temporal_transformer.transformer_blocks.0.norms.1.weight"):
        assert key in original, key
    assert len(original) == len(adapter) + 21  # 8 + 1 + 12 modules, pe stored twice in each
    assert original["mid_block.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0."
                    "pos_encoder.pe"].shape == (1, 32, 1280)
    converted = convert_motion_state_dict(original, source="mm_sd_v15_v2.ckpt")
    assert {k: v.shape for k, v in converted.items()} == {k: v.shape for k, v in adapter.items()}


@pytest.mark.parametrize("suffix", [".ckpt", ".safetensors"])
def test_original_layout_files_load_exactly(tmp_path, suffix):
    adapter = _adapter_state(TINY_MOTION)
    path = tmp_path / f"mm_tiny_v2{suffix}"
    if suffix == ".ckpt":
        torch.save(to_original(adapter), path)
    else:
        write_safetensors(to_original(adapter), path)
    _assert_same(load_motion_state_dict(path, config=TINY_MOTION), adapter)


def test_diffusers_folder_and_single_file(tmp_path):
    torch.manual_seed(0)
    model = MotionAdapter.from_config(TINY_MOTION)
    model.save_pretrained(tmp_path / "pipe" / "motion_adapter")
    want = model.state_dict()
    _assert_same(load_motion_state_dict(tmp_path / "pipe" / "motion_adapter", config=TINY_MOTION), want)
    _assert_same(load_motion_state_dict(tmp_path / "pipe", config=TINY_MOTION), want)
    write_safetensors(want, tmp_path / "adapter.safetensors")
    _assert_same(load_motion_state_dict(tmp_path / "adapter.safetensors", config=TINY_MOTION), want)


def test_missing_positional_tables_are_rebuilt(tmp_path):
    """diffusers' own converter drops pos_encoder.pe; files without it get MotionAdapter's table."""
    adapter = _adapter_state(TINY_MOTION)
    original = {k: v for k, v in to_original(adapter).items() if "pos_encoder" not in k}
    write_safetensors(original, tmp_path / "no_pe.safetensors")
    _assert_same(load_motion_state_dict(tmp_path / "no_pe.safetensors", config=TINY_MOTION), adapter)


def test_folder_with_other_geometry_names_its_config(tmp_path):
    MotionAdapter.from_config(TINY_MOTION).save_pretrained(tmp_path)
    with pytest.raises(WeightsError) as e:
        load_motion_state_dict(tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "config.json") in msg and "block_out_channels" in msg and "motion_max_seq_length" in msg


def _raises(path, *fragments, config=TINY_MOTION):
    with pytest.raises(WeightsError) as e:
        load_motion_state_dict(path, config=config)
    for fragment in (str(path), *fragments):
        assert fragment in str(e.value), (fragment, str(e.value))


def test_v1_module_is_named(tmp_path):
    v1 = {k: v for k, v in to_original(_adapter_state(TINY_MOTION)).items() if not k.startswith("mid_block.")}
    torch.save(v1, tmp_path / "mm_sd_v15.ckpt")
    _raises(tmp_path / "mm_sd_v15.ckpt", "AnimateDiff v1 motion module", "mm_sd_v15_v2.ckpt")


def test_other_clip_length_is_named(tmp_path):
    original = to_original(_adapter_state({**TINY_MOTION, "motion_max_seq_length": 4}))
    write_safetensors(original, tmp_path / "mm_len4.safetensors")
    _raises(tmp_path / "mm_len4.safetensors", "pos_embed.pe: file (1, 4, 8) vs model (1, 6, 8)",
            "positional encodings cover [4] frames, the expected geometry [6]")


def test_different_twin_tables_are_refused(tmp_path):
    original = to_original(_adapter_state(TINY_MOTION))
    key = "up_blocks.1.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.1.pos_encoder.pe"
    original[key] = original[key] + 1
    write_safetensors(original, tmp_path / "odd.safetensors")
    _raises(tmp_path / "odd.safetensors", "different positional encodings", "up_blocks.1.motion_modules.0")


def test_non_motion_files_are_named(tmp_path):
    write_safetensors({"model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight":
                       torch.zeros(320, 768)}, tmp_path / "v1-5.safetensors")
    _raises(tmp_path / "v1-5.safetensors", "holds a UNet of the SD1.x family", "not an AnimateDiff motion module")
    lora = {"down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0."
            "processor.to_q_lora.down.weight": torch.zeros(4, 8)}
    torch.save(lora, tmp_path / "v2_lora_ZoomIn.ckpt")
    _raises(tmp_path / "v2_lora_ZoomIn.ckpt", "motion LoRA")
    write_safetensors({"junk": torch.zeros(1)}, tmp_path / "junk.safetensors")
    _raises(tmp_path / "junk.safetensors", "unrecognised weights")


def test_wrong_geometry_lists_keys(tmp_path):
    """A module for another UNet (AnimateDiff's SDXL one has 3 levels, SD1.5's 4): keys are listed."""
    write_safetensors(to_original(_adapter_state(TINY_MOTION)), tmp_path / "mm_tiny.safetensors")
    _raises(tmp_path / "mm_tiny.safetensors", "keys missing", "down_blocks.4.motion_modules.0",
            config={**TINY_MOTION, "block_out_channels": (8, 16, 16, 16, 16)})
    _raises(tmp_path / "mm_tiny.safetensors", "keys unexpected", "down_blocks.3.motion_modules.0",
            "with the wrong shape", config={**TINY_MOTION, "block_out_channels": (8, 16, 16)})
