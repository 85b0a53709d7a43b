"""SD1.5 UNet / VAE loading from LDM single files and diffusers folders (emo_model.weights.sd15).

LDM-layout inputs are made here from diffusers models by an independent diffusers -> LDM key mapping,
written from the CompVis layout (not from diffusers' converter), then read back by the loaders.
"""
import json

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from emo_model.errors import WeightsError
from emo_model.weights import sd15
from emo_model.weights.files import write_safetensors
from emo_model.weights.sd15 import (
    SD15_UNET_CONFIG,
    SD15_VAE_CONFIG,
    convert_unet_state_dict,
    convert_vae_state_dict,
    load_unet_state_dict,
    load_vae,
)

# SD1.5's structure (4 levels, last without attention, 2 layers per block) at toy widths.
TINY_UNET = {
    **SD15_UNET_CONFIG,
    "block_out_channels": (8, 16, 16, 16),
    "norm_num_groups": 4,
    "cross_attention_dim": 12,
    "attention_head_dim": 2,
    "sample_size": 8,
}
TINY_VAE = {**SD15_VAE_CONFIG, "block_out_channels": (8, 8, 16, 16), "norm_num_groups": 4, "sample_size": 32}

# --- independent diffusers -> LDM (CompVis) mapping -------------------------------------------

_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
           "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
_UNET_TOP = {"conv_in": "input_blocks.0.0", "time_embedding.linear_1": "time_embed.0",
             "time_embedding.linear_2": "time_embed.2", "conv_norm_out": "out.0", "conv_out": "out.2"}


def _resnet(parts):
    return ".".join([_RESNET[parts[0]], *parts[1:]])


def ldm_unet_key(key, config):
    """input_blocks.N.0 resnet / .1 transformer / N.0.op downsampler, middle_block.0-2,
    output_blocks.N.0 resnet / .1 transformer / .1 or .2 .conv upsampler."""
    head, leaf = key.rsplit(".", 1)
    if head in _UNET_TOP:
        return f"{_UNET_TOP[head]}.{leaf}"
    per_level = config["layers_per_block"] + 1
    p = key.split(".")
    if p[0] == "down_blocks":
        level, kind = int(p[1]), p[2]
        if kind == "downsamplers":
            return f"input_blocks.{1 + level * per_level + per_level - 1}.0.op.{leaf}"
        n = 1 + level * per_level + int(p[3])
        return f"input_blocks.{n}.0.{_resnet(p[4:])}" if kind == "resnets" else f"input_blocks.{n}.1.{'.'.join(p[4:])}"
    if p[0] == "mid_block":
        if p[1] == "resnets":
            return f"middle_block.{2 * int(p[2])}.{_resnet(p[3:])}"
        return f"middle_block.1.{'.'.join(p[3:])}"
    assert p[0] == "up_blocks", key
    level, kind = int(p[1]), p[2]
    if kind == "upsamplers":
        has_attention = config["up_block_types"][level].startswith("CrossAttn")
        return f"output_blocks.{level * per_level + per_level - 1}.{2 if has_attention else 1}.conv.{leaf}"
    n = level * per_level + int(p[3])
    return f"output_blocks.{n}.0.{_resnet(p[4:])}" if kind == "resnets" else f"output_blocks.{n}.1.{'.'.join(p[4:])}"


def to_ldm_unet(state_dict, config, prefix="model.diffusion_model."):
    return {prefix + ldm_unet_key(k, config): v for k, v in state_dict.items()}


_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def ldm_vae_key(key, config):
    """encoder.down.i.block.j / .downsample, {en,de}coder.mid.block_1/attn_1/block_2, decoder.up.(n-1-i),
    norm_out, nin_shortcut; 1x1-conv attention q/k/v/proj_out."""
    n = len(config["block_out_channels"])
    key = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
    p = key.split(".")
    if len(p) < 3 or p[1] not in ("down_blocks", "up_blocks", "mid_block"):
        return key
    coder, part = p[0], p[1]
    if part == "mid_block":
        if p[2] == "resnets":
            return ".".join([coder, "mid", f"block_{int(p[3]) + 1}", *p[4:]])
        inner = ".".join(p[4:-1])
        return ".".join([coder, "mid", "attn_1", _VAE_ATTENTION[inner], p[-1]])
    level = int(p[2]) if part == "down_blocks" else n - 1 - int(p[2])
    name = "down" if part == "down_blocks" else "up"
    if p[3] == "resnets":
        return ".".join([coder, name, str(level), "block", *p[4:]])
    return ".".join([coder, name, str(level), "downsample" if name == "down" else "upsample", *p[5:]])


def to_ldm_vae(state_dict, config, prefix=""):
    out = {}
    for k, v in state_dict.items():
        # LDM keeps the mid-block attention projections as 1x1 convolutions.
        if ".mid_block.attentions." in k and v.ndim == 2:
            v = v[:, :, None, None]
        out[prefix + ldm_vae_key(k, config)] = v
    return out


# --- models --------------------------------------------------------------------------------------


def _tiny_unet():
    torch.manual_seed(0)
    model = UNet2DConditionModel.from_config(TINY_UNET)
    # Random values everywhere (norm weights/biases too), so a swapped key cannot go unnoticed.
    return {k: torch.randn_like(v) for k, v in model.state_dict().items()}


def _tiny_vae():
    torch.manual_seed(1)
    return {k: torch.randn_like(v) for k, v in AutoencoderKL.from_config(TINY_VAE).state_dict().items()}


def _meta_state(cls, config):
    with torch.device("meta"):
        return cls.from_config(config).state_dict()


def _assert_same(got, want):
    assert sorted(got) == sorted(want)
    bad = [k for k in want if got[k].shape != want[k].shape or not torch.equal(got[k], want[k])]
    assert not bad, bad[:5]


# --- full SD1.5 geometry on the meta device ------------------------------------------------------


def test_sd15_configs_have_the_sd15_parameter_counts():
    unet = _meta_state(UNet2DConditionModel, SD15_UNET_CONFIG)
    vae = _meta_state(AutoencoderKL, SD15_VAE_CONFIG)
    # Published sizes of runwayml/stable-diffusion-v1-5's unet and vae.
    assert sum(v.numel() for v in unet.values()) == 859_520_964
    assert sum(v.numel() for v in vae.values()) == 83_653_863
    assert unet["down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"].shape == (320, 768)
    assert unet["down_blocks.0.attentions.0.proj_in.weight"].shape == (320, 320, 1, 1)
    assert vae["encoder.conv_out.weight"].shape == (8, 512, 3, 3)


def test_sd15_unet_ldm_layout_converts_to_every_diffusers_key_on_meta():
    unet = _meta_state(UNet2DConditionModel, SD15_UNET_CONFIG)
    ldm = to_ldm_unet(unet, SD15_UNET_CONFIG)
    # Landmarks of the real v1-5-pruned-emaonly key layout.
    for key in ("input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight", "input_blocks.3.0.op.weight",
                "input_blocks.4.0.skip_connection.weight", "middle_block.2.emb_layers.1.weight",
                "output_blocks.2.1.conv.weight", "output_blocks.5.2.conv.weight", "output_blocks.8.2.conv.weight",
                "output_blocks.11.1.proj_out.weight", "time_embed.2.bias", "out.2.weight"):
        assert "model.diffusion_model." + key in ldm, key
    assert len(ldm) == 686
    # Plus the rest of a full checkpoint, which the UNet loader must skip.
    ldm["first_stage_model.encoder.conv_in.weight"] = torch.empty(128, 3, 3, 3, device="meta")
    ldm["cond_stage_model.transformer.text_model.final_layer_norm.weight"] = torch.empty(768, device="meta")
    converted = convert_unet_state_dict(ldm, source="v1-5-pruned-emaonly.safetensors")
    assert {k: v.shape for k, v in converted.items()} == {k: v.shape for k, v in unet.items()}


@pytest.mark.parametrize("prefix", ["first_stage_model.", ""])
def test_sd15_vae_ldm_layouts_convert_on_meta(prefix):
    vae = _meta_state(AutoencoderKL, SD15_VAE_CONFIG)
    ldm = to_ldm_vae(vae, SD15_VAE_CONFIG, prefix)
    for key in ("encoder.down.0.block.0.norm1.weight", "encoder.down.1.block.0.nin_shortcut.weight",
                "encoder.down.2.downsample.conv.weight", "encoder.mid.attn_1.q.weight", "encoder.norm_out.bias",
                "decoder.up.3.block.2.conv2.weight", "decoder.up.1.upsample.conv.weight",
                "decoder.mid.block_2.conv1.weight", "quant_conv.weight", "post_quant_conv.bias"):
        assert prefix + key in ldm, key
    assert ldm[prefix + "decoder.mid.attn_1.proj_out.weight"].shape == (512, 512, 1, 1)
    converted = convert_vae_state_dict(ldm, source="vae-ft-mse-840000-ema-pruned.safetensors")
    assert {k: v.shape for k, v in converted.items()} == {k: v.shape for k, v in vae.items()}


# --- tiny geometry, real values ------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_full_ldm_checkpoint_gives_unet_and_vae(tmp_path, suffix):
    unet, vae = _tiny_unet(), _tiny_vae()
    full = {**to_ldm_unet(unet, TINY_UNET), **to_ldm_vae(vae, TINY_VAE, "first_stage_model."),
            "cond_stage_model.transformer.text_model.embeddings.position_ids": torch.arange(77)[None]}
    path = tmp_path / f"tiny-sd15{suffix}"
    if suffix == ".ckpt":
        torch.save({"state_dict": full, "global_step": 1}, path)
    else:
        write_safetensors(full, path)
    _assert_same(load_unet_state_dict(path, config=TINY_UNET), unet)
    model = load_vae(path, config=TINY_VAE)
    assert isinstance(model, AutoencoderKL) and not model.training
    _assert_same(model.state_dict(), vae)


def test_bare_ldm_unet_and_diffusers_single_files(tmp_path):
    unet = _tiny_unet()
    write_safetensors(to_ldm_unet(unet, TINY_UNET, prefix=""), tmp_path / "bare.safetensors")
    write_safetensors(unet, tmp_path / "diffusers.safetensors")
    _assert_same(load_unet_state_dict(tmp_path / "bare.safetensors", config=TINY_UNET), unet)
    _assert_same(load_unet_state_dict(tmp_path / "diffusers.safetensors", config=TINY_UNET), unet)


def test_standalone_ldm_vae_file_and_dtype_device(tmp_path):
    vae = _tiny_vae()
    path = tmp_path / "vae-ft-mse-840000-ema-pruned.safetensors"
    write_safetensors(to_ldm_vae(vae, TINY_VAE), path)
    model = load_vae(path, config=TINY_VAE, dtype=torch.float16)
    assert model.dtype == torch.float16 and model.device.type == "cpu"
    _assert_same(model.state_dict(), {k: v.half() for k, v in vae.items()})
    assert model.config.scaling_factor == 0.18215


def _save_pipeline(tmp_path, **kwargs):
    torch.manual_seed(0)
    unet, vae = UNet2DConditionModel.from_config(TINY_UNET), AutoencoderKL.from_config(TINY_VAE)
    pipe = tmp_path / "pipe"
    unet.save_pretrained(pipe / "unet", **kwargs)
    vae.save_pretrained(pipe / "vae", **kwargs)
    (pipe / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    return pipe, unet.state_dict(), vae.state_dict()


@pytest.mark.parametrize("safe", [True, False])
def test_diffusers_pipeline_and_component_folders(tmp_path, safe):
    pipe, unet, vae = _save_pipeline(tmp_path, safe_serialization=safe)
    assert (pipe / "unet" / ("diffusion_pytorch_model.safetensors" if safe else "diffusion_pytorch_model.bin")).exists()
    for folder in (pipe, pipe / "unet"):
        _assert_same(load_unet_state_dict(folder, config=TINY_UNET), unet)
    for folder in (pipe, pipe / "vae"):
        _assert_same(load_vae(folder, config=TINY_VAE).state_dict(), vae)


def test_vae_folder_config_is_used_and_old_attention_names_are_renamed(tmp_path, monkeypatch):
    vae = _tiny_vae()
    folder = tmp_path / "sd-vae-ft-mse"
    folder.mkdir()
    old = {k.replace(".to_q.", ".query.").replace(".to_k.", ".key.").replace(".to_v.", ".value.")
           .replace(".to_out.0.", ".proj_attn."): v for k, v in vae.items()}
    assert old.keys() != vae.keys()
    write_safetensors(old, folder / "diffusion_pytorch_model.safetensors")
    (folder / "config.json").write_text(json.dumps({**TINY_VAE, "scaling_factor": 0.2}))
    # The folder's geometry is checked against SD1.5's: stand in the tiny geometry for it.
    monkeypatch.setattr(sd15, "SD15_VAE_CONFIG", TINY_VAE)
    model = load_vae(folder)
    assert model.config.scaling_factor == 0.2
    _assert_same(model.state_dict(), vae)


def test_folder_with_other_geometry_names_its_config(tmp_path):
    pipe, _, _ = _save_pipeline(tmp_path)
    with pytest.raises(WeightsError) as e:
        load_unet_state_dict(pipe)
    assert str(pipe / "unet" / "config.json") in str(e.value) and "block_out_channels" in str(e.value)
    with pytest.raises(WeightsError) as e:
        load_vae(pipe)
    assert str(pipe / "vae" / "config.json") in str(e.value) and "block_out_channels" in str(e.value)


def test_folder_without_weights(tmp_path):
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text(json.dumps(TINY_UNET))
    with pytest.raises(WeightsError, match="has no diffusion_pytorch_model.safetensors") as e:
        load_unet_state_dict(tmp_path, config=TINY_UNET)
    assert str(tmp_path / "unet") in str(e.value) and "config.json" in str(e.value)


# --- wrong files ---------------------------------------------------------------------------------


def _raises(fn, path, *fragments, **kwargs):
    with pytest.raises(WeightsError) as e:
        fn(path, **kwargs)
    for fragment in (str(path), *fragments):
        assert fragment in str(e.value), (fragment, str(e.value))


def test_vae_given_as_unet_and_unet_given_as_vae(tmp_path):
    write_safetensors(to_ldm_vae(_tiny_vae(), TINY_VAE), tmp_path / "vae.safetensors")
    write_safetensors(to_ldm_unet(_tiny_unet(), TINY_UNET), tmp_path / "unet.safetensors")
    _raises(load_unet_state_dict, tmp_path / "vae.safetensors", "holds a VAE, not an SD1.5 UNet", config=TINY_UNET)
    _raises(load_vae, tmp_path / "unet.safetensors", "not an SD1.5 VAE", config=TINY_VAE)


def test_sdxl_and_sd2_unets_are_named(tmp_path):
    sdxl = {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3),
            "model.diffusion_model.label_emb.0.0.weight": torch.zeros(1280, 2816),
            "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight": torch.zeros(640, 2048),
            "conditioner.embedders.1.model.ln_final.weight": torch.zeros(1280)}
    write_safetensors(sdxl, tmp_path / "sd_xl_base_1.0.safetensors")
    _raises(load_unet_state_dict, tmp_path / "sd_xl_base_1.0.safetensors", "SDXL", "SD1.5-family")
    sd2 = to_ldm_unet(_meta_state(UNet2DConditionModel, {**SD15_UNET_CONFIG, "cross_attention_dim": 1024}),
                      SD15_UNET_CONFIG)
    with pytest.raises(WeightsError, match=r"SD2\.x family \(cross-attention width 1024\).*width 768"):
        convert_unet_state_dict(sd2, source="v2-1_512-ema-pruned.safetensors")


def test_wrong_shapes_and_junk(tmp_path):
    unet = _tiny_unet()
    unet["conv_in.weight"] = torch.zeros(8, 9, 3, 3)  # an inpainting UNet's 9 input channels
    write_safetensors(unet, tmp_path / "inpainting.safetensors")
    _raises(load_unet_state_dict, tmp_path / "inpainting.safetensors",
            "conv_in.weight: file (8, 9, 3, 3) vs model (8, 4, 3, 3)", config=TINY_UNET)
    partial = dict(list(to_ldm_unet(_tiny_unet(), TINY_UNET).items())[:40])
    write_safetensors(partial, tmp_path / "partial.safetensors")
    _raises(load_unet_state_dict, tmp_path / "partial.safetensors", "keys missing", config=TINY_UNET)
    write_safetensors({"foo.bar": torch.zeros(2), "baz": torch.zeros(1)}, tmp_path / "junk.safetensors")
    _raises(load_unet_state_dict, tmp_path / "junk.safetensors", "unrecognised weights")
    _raises(load_vae, tmp_path / "junk.safetensors", "unrecognised weights")


def test_default_geometry_rejects_a_small_unet(tmp_path):
    write_safetensors(to_ldm_unet(_tiny_unet(), TINY_UNET), tmp_path / "tiny.safetensors")
    _raises(load_unet_state_dict, tmp_path / "tiny.safetensors", "cross-attention width 768")
