from contextlib import ExitStack

import pytest
import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from helpers import tiny_config, tiny_model
from safetensors.torch import save_file
from torch import nn

from emo_model.errors import WeightsError
from emo_model.lora import lora_targets, load_lora, merged_lora, parse_lora

Q = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"  # Linear 32 -> 32
OUT = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0"  # Linear 32 -> 32, bias
FF = "up_blocks.1.attentions.1.transformer_blocks.0.ff.net.0.proj"  # Linear 32 -> 256
PROJ_IN = "mid_block.attentions.0.proj_in"  # Conv 1x1 64 -> 64
CONV1 = "down_blocks.1.resnets.0.conv1"  # Conv 3x3 32 -> 64
MOTION = "down_blocks.0.motion_modules.0.transformer_blocks.0.attn1.to_q"  # EMO-only


def factors(module: nn.Module, name: str, rank=4, seed=0):
    """(down, up) of the right shapes for layer `name`: conv down keeps the kernel, conv up is 1x1."""
    weight = module.get_submodule(name).weight
    g = torch.Generator().manual_seed(seed)
    down = torch.randn(rank, *weight.shape[1:], generator=g) * 0.1
    up = torch.randn(weight.shape[0], rank, *[1] * (weight.ndim - 2), generator=g) * 0.1
    return down, up


def kohya(name, down, up, alpha=None):
    base = "lora_unet_" + name.replace(".", "_")
    sd = {f"{base}.lora_down.weight": down, f"{base}.lora_up.weight": up}
    if alpha is not None:
        sd[f"{base}.alpha"] = torch.tensor(float(alpha))
    return sd


def peft(name, down, up, prefix="unet."):
    return {f"{prefix}{name}.lora_A.weight": down, f"{prefix}{name}.lora_B.weight": up}


def processor(name, down, up):
    attn, proj = name.rsplit(".", 1) if not name.endswith("to_out.0") else (name[: -len(".to_out.0")], "to_out")
    return {f"unet.{attn}.processor.{proj}_lora.down.weight": down, f"unet.{attn}.processor.{proj}_lora.up.weight": up}


def expected(weight, down, up, strength, scale=1.0):
    return weight + strength * ((up.flatten(1) @ down.flatten(1)).reshape(weight.shape) * scale)


def weights_of(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def assert_same(module, saved):
    assert all(torch.equal(v, saved[k]) for k, v in module.state_dict().items())


@pytest.fixture(scope="module")
def model():
    """Shared: every test leaves the weights as it found them (which is what merged_lora promises)."""
    return tiny_model()


def test_targets_are_exactly_the_sd15_layers(model):
    sd15 = UNet2DConditionModel.from_config(tiny_config().unet.diffusers_unet_config())
    layers = {n for n, m in sd15.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}
    assert {name for name, _ in lora_targets(model.backbone).values()} == layers
    assert {name for name, _ in lora_targets(model.reference_net).values()} == layers


def test_kohya_merge_is_exact_and_reported(model):
    unet = model.backbone
    saved = weights_of(unet)
    (dq, uq), (dp, up_), (dc, uc) = (factors(unet, n, seed=i) for i, n in enumerate((Q, PROJ_IN, CONV1)))
    sd = {**kohya(Q, dq, uq, alpha=2), **kohya(PROJ_IN, dp, up_), **kohya(CONV1, dc, uc, alpha=8),
          **kohya(MOTION, dq, uq), **kohya("down_blocks_9_nothing", dq, uq),
          "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": torch.zeros(4, 8),
          "lora_unet_x.hada_w1_a": torch.zeros(2)}
    lora = parse_lora(sd, "style")
    with merged_lora(unet, [(lora, 0.7)]) as (report,):
        w = dict(unet.named_parameters())
        assert torch.equal(w[Q + ".weight"], expected(saved[Q + ".weight"], dq, uq, 0.7, scale=0.5))
        assert torch.equal(w[PROJ_IN + ".weight"], expected(saved[PROJ_IN + ".weight"], dp, up_, 0.7))
        assert torch.equal(w[CONV1 + ".weight"], expected(saved[CONV1 + ".weight"], dc, uc, 0.7, scale=2.0))
        changed = {k for k, v in unet.state_dict().items() if not torch.equal(v, saved[k])}
        assert changed == {Q + ".weight", PROJ_IN + ".weight", CONV1 + ".weight"}
    assert_same(unet, saved)
    assert sorted(report.matched) == sorted([Q, PROJ_IN, CONV1])
    assert set(report.unmatched) == {*kohya(MOTION, dq, uq), *kohya("down_blocks_9_nothing", dq, uq),
                                     "lora_unet_x.hada_w1_a"}
    assert report.text_encoder == ["lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight"]
    summary = report.summary()
    assert "'style': 3 layers patched" in summary and "1 text-encoder keys ignored" in summary
    assert "5 keys matched no layer" in summary


def test_all_key_styles_give_the_same_update(model):
    unet = model.backbone
    (dq, uq), (do, uo), (df, uf), (dp, up_) = (factors(unet, n, seed=i) for i, n in enumerate((Q, OUT, FF, PROJ_IN)))
    layers = [(Q, dq, uq), (OUT, do, uo), (FF, df, uf), (PROJ_IN, dp, up_)]
    styles = {
        "kohya": {k: v for n, d, u in layers for k, v in kohya(n, d, u, alpha=d.shape[0]).items()},
        "peft": {k: v for n, d, u in layers for k, v in peft(n, d, u).items()},
        "bare": {k: v for n, d, u in layers for k, v in peft(n, d, u, prefix="").items()},
        "peft_model": {k.replace(".lora_A.", ".lora_A.default.").replace(".lora_B.", ".lora_B.default."): v
                       for n, d, u in layers for k, v in peft(n, d, u, prefix="base_model.model.").items()},
        "diffusers_lora_layers": {k.replace(".lora_A.", ".lora.down.").replace(".lora_B.", ".lora.up."): v
                                  for n, d, u in layers for k, v in peft(n, d, u).items()},
    }
    merged = {}
    for style, sd in styles.items():
        with merged_lora(unet, [(parse_lora(sd, style), 1.3)]) as (report,):
            merged[style] = weights_of(unet)
        assert len(report.matched) == 4 and not report.unmatched and not report.skipped, style
    # the old attention-processor layout only covers attention projections
    with merged_lora(unet, [(parse_lora({**processor(Q, dq, uq), **processor(OUT, do, uo)}, "proc"), 1.3)]) as (report,):
        proc = weights_of(unet)
    assert sorted(report.matched) == sorted([Q, OUT])
    for style in styles:
        assert all(torch.equal(merged[style][k], merged["kohya"][k]) for k in merged["kohya"])
    assert all(torch.equal(proc[k + ".weight"], merged["kohya"][k + ".weight"]) for k in (Q, OUT))


def test_text_encoder_keys_of_each_style_are_set_apart():
    sd = {"lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight": torch.zeros(2, 2),
          "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight": torch.zeros(2, 2),
          "text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight": torch.zeros(2, 2)}
    lora = parse_lora(sd, "te")
    assert sorted(lora.text_encoder_keys) == sorted(sd) and not lora.factors and not lora.unrecognised_keys


def test_output_follows_strength_on_both_unets_and_is_restored(model):
    g = torch.Generator().manual_seed(1)
    reference, noisy = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 1, 4, 8, 8, generator=g)

    def run():  # temporal layers off: they take no LoRA, and this keeps the test fast
        with torch.no_grad():
            cond = model.condition(1, reference=model.reference_features(reference), temporal=False)
            return model.denoise(noisy, 500, cond)

    sd = {}
    for i, name in enumerate((Q, OUT, FF, PROJ_IN, CONV1)):
        sd.update(kohya(name, *factors(model.backbone, name, seed=i)))
    lora = parse_lora(sd, "lora")
    base, saved = run(), weights_of(model)
    outputs = []
    for strength in (0.5, 1.0):
        with ExitStack() as stack:
            for unet in (model.backbone, model.reference_net):
                (report,) = stack.enter_context(merged_lora(unet, [(lora, strength)]))
                assert len(report.matched) == 5
            outputs.append(run())
    assert_same(model, saved)
    assert torch.equal(run(), base)
    assert not torch.allclose(outputs[0], base, atol=1e-4) and not torch.allclose(outputs[0], outputs[1], atol=1e-4)
    assert (outputs[1] - base).abs().mean() > (outputs[0] - base).abs().mean()


def test_restored_after_an_exception(model):
    unet = model.reference_net
    saved = weights_of(unet)
    lora = parse_lora(kohya(CONV1, *factors(unet, CONV1)), "x")
    with pytest.raises(RuntimeError, match="cancelled"):
        with merged_lora(unet, [(lora, 1.0)]):
            assert not torch.equal(unet.get_submodule(CONV1).weight, saved[CONV1 + ".weight"])
            raise RuntimeError("cancelled")
    assert_same(unet, saved)


def test_bad_shapes_and_incomplete_layers_are_skipped(model):
    unet = model.backbone
    saved = weights_of(unet)
    down, up = factors(unet, FF)  # ff proj factors (32 -> 256) on to_q (32 -> 32)
    sd = {**kohya(Q, down, up), **kohya(CONV1, torch.zeros(4, 32), torch.zeros(64, 4)),
          "unet." + OUT + ".lora_A.weight": torch.zeros(4, 32), **kohya(PROJ_IN, torch.zeros(4, 64), torch.zeros(64, 3))}
    with merged_lora(unet, [(parse_lora(sd, "bad"), 1.0)]) as (report,):
        assert_same(unet, saved)
    assert not report.matched
    assert sorted(report.skipped) == sorted([
        f"{Q}: update (256, 32) does not fit the weight (32, 32)",
        f"{CONV1}: update (64, 32) does not fit the weight (64, 32, 3, 3)",
        f"unet.{OUT}.lora_A.weight: no matching lora_up weight",
        f"{PROJ_IN}: lora_up (64, 3) does not fit lora_down (4, 64)",
    ])


def test_locon_mid_factor_equals_the_three_convs(model):
    unet = model.backbone
    layer = unet.get_submodule(CONV1)
    g = torch.Generator().manual_seed(3)
    down, mid, up = torch.randn(4, 32, 1, 1, generator=g), torch.randn(4, 4, 3, 3, generator=g), torch.randn(64, 4, 1, 1, generator=g)
    base = "lora_unet_" + CONV1.replace(".", "_")
    sd = {f"{base}.lora_down.weight": down, f"{base}.lora_mid.weight": mid, f"{base}.lora_up.weight": up,
          f"{base}.alpha": torch.tensor(2.0)}
    x = torch.randn(1, 32, 8, 8, generator=g)
    with torch.no_grad():
        lora_path = F.conv2d(F.conv2d(F.conv2d(x, down), mid, padding=1), up) * 0.5  # alpha / rank
        before = layer(x)
        with merged_lora(unet, [(parse_lora(sd, "locon"), 1.0)]) as (report,):
            after = layer(x)
    assert report.matched == [CONV1]
    torch.testing.assert_close(after - before, lora_path, rtol=1e-4, atol=1e-4)


def test_two_loras_add_up(model):
    unet = model.backbone
    w = unet.get_submodule(Q).weight.detach().clone()
    (d1, u1), (d2, u2) = factors(unet, Q, seed=1), factors(unet, Q, seed=2)
    loras = [(parse_lora(kohya(Q, d1, u1), "a"), 0.5), (parse_lora(peft(Q, d2, u2), "b"), -1.0)]
    with merged_lora(unet, loras) as reports:
        torch.testing.assert_close(unet.get_submodule(Q).weight, w + 0.5 * u1 @ d1 - u2 @ d2, rtol=0, atol=1e-6)
    assert [r.name for r in reports] == ["a", "b"] and all(r.matched == [Q] for r in reports)
    assert torch.equal(unet.get_submodule(Q).weight, w)


def test_bf16_weights():
    unet = tiny_model().backbone.to(torch.bfloat16)
    saved = weights_of(unet)
    down, up = factors(unet, CONV1)
    with merged_lora(unet, [(parse_lora(kohya(CONV1, down.half(), up.half()), "half"), 0.8)]):
        weight = unet.get_submodule(CONV1).weight
        want = (saved[CONV1 + ".weight"].float() + 0.8 * (up.half().float().flatten(1) @ down.half().float().flatten(1))
                .reshape(weight.shape)).to(torch.bfloat16)
        assert weight.dtype == torch.bfloat16 and torch.equal(weight, want)
    assert_same(unet, saved)


def test_load_lora_file_round_trip(model, tmp_path):
    down, up = factors(model.backbone, Q)
    sd = {**kohya(Q, down, up, alpha=1), "lora_te_x.lora_down.weight": torch.zeros(2, 2)}
    save_file(sd, tmp_path / "my_style.safetensors")
    lora = load_lora(tmp_path / "my_style.safetensors")
    assert lora.name == "my_style" and list(lora.factors) == [Q.replace(".", "_")]
    assert torch.equal(lora.factors[Q.replace(".", "_")].down, down) and lora.factors[Q.replace(".", "_")].alpha == 1
    assert lora.text_encoder_keys == ["lora_te_x.lora_down.weight"]

    save_file({"model.diffusion_model.out.weight": torch.zeros(2)}, tmp_path / "not_lora.safetensors")
    with pytest.raises(WeightsError, match="no LoRA layers"):
        load_lora(tmp_path / "not_lora.safetensors")


def test_pickle_files(model, tmp_path):
    down, up = factors(model.backbone, Q)
    torch.save(kohya(Q, down, up), tmp_path / "plain.ckpt")  # tensors only: read with weights_only=True
    assert list(load_lora(tmp_path / "plain.ckpt").factors) == [Q.replace(".", "_")]
    torch.save({"state_dict": kohya(Q, down, up), "trainer": nn.Linear(1, 1)}, tmp_path / "objects.ckpt")
    with pytest.raises(WeightsError, match="refusing to unpickle"):
        load_lora(tmp_path / "objects.ckpt")
