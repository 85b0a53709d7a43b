"""The reliance probe (emo_model.train.reliance): each variant really changes its one condition, an
ignored condition costs exactly nothing, the x0 errors are the model's, and the command line."""
import json

import pytest
import torch

from emo_model.checkpoint import save_emo_checkpoint
from emo_model.config import NoiseSchedule
from emo_model.train.data import TrainData
from emo_model.train.objective import Objective
from emo_model.train.reliance import VARIANTS, draw_samples, main, measure_reliance, variant_inputs
from emo_model.vae import LatentCodec
from helpers import make_blob_dataset, tiny_model, tiny_vae

SIZE, FRAMES, FPS = 64, 24, 25.0
CLIP = {"frames_per_clip": 4, "motion_frames": 2, "fps": FPS}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_blob_dataset(tmp_path_factory.mktemp("data"), SIZE, FRAMES, FPS)


@pytest.fixture(scope="module")
def setting(dataset):
    model = tiny_model(**CLIP)  # every zero-initialised output layer woken: all conditions act
    c = model.config
    data = TrainData([str(dataset)], stage=3, resolution=SIZE, frames=c.frames_per_clip, motion_frames=c.motion_frames,
                     audio_window=c.audio_window, audio_shape=(c.audio_layers, c.audio_dim))
    samples = draw_samples(data, LatentCodec(tiny_vae()), count=3, seed=0)
    return model, samples, Objective(c.noise)


def test_every_variant_changes_what_a_model_that_uses_everything_predicts(setting):
    model, samples, objective = setting
    result = measure_reliance(model, samples, objective, timesteps=(999, 500))
    for t, row in result["x0_mse"].items():
        assert list(row) == list(VARIANTS)
        for name in VARIANTS[1:]:
            assert row[name] != pytest.approx(row["full"], rel=1e-6), (t, name)
    # "full" is the model's own x0 error under the probe's fixed noise (seed 0), computed here directly.
    noise = torch.randn(samples.target.shape, generator=torch.Generator().manual_seed(0))
    ts = torch.full((samples.target.shape[0],), 500)
    noisy = objective.add_noise(samples.target, noise, ts)
    with torch.no_grad():
        x0 = objective.predicted_x0(noisy, model(noisy, ts, **variant_inputs("full", samples)), ts)
    assert result["x0_mse"][500]["full"] == pytest.approx(float((x0 - samples.target).pow(2).mean()), rel=1e-5)
    copy_reference = float((samples.reference[:, None] - samples.target).pow(2).mean())
    assert result["baselines"]["copy reference"] == pytest.approx(copy_reference)
    assert result["baselines"]["copy last motion frame"] == pytest.approx(
        float((samples.motion[:, -1:] - samples.target).pow(2).mean()))


def test_a_condition_the_model_ignores_costs_nothing(setting):
    model, samples, objective = setting
    silent = tiny_model(**CLIP)
    for name, p in silent.named_parameters():
        if ".speed_attn.to_out" in name:
            p.data.zero_()  # speed layers as they leave initialisation: no effect on the output
    row = measure_reliance(silent, samples, objective, timesteps=(900,))["x0_mse"][900]
    assert row["no speed"] == row["full"] and row["another sample's speed"] == row["full"]
    assert row["no motion frames"] != row["full"]


def test_variants_differ_from_full_in_their_own_condition_only(setting):
    _, samples, _ = setting
    full = variant_inputs("full", samples)
    for name in VARIANTS[1:]:
        changed = {k for k, v in variant_inputs(name, samples).items()
                   if not (v is full[k] or (isinstance(v, torch.Tensor) and isinstance(full[k], torch.Tensor)
                                            and torch.equal(v, full[k])))}
        assert len(changed) == 1, (name, changed)


def test_predicted_x0_inverts_both_targets():
    latents = torch.randn(2, 3, 4, 4, 4)
    noise = torch.randn_like(latents)
    ts = torch.tensor([10, 700])
    for prediction_type in ("v_prediction", "epsilon"):
        objective = Objective(NoiseSchedule(prediction_type=prediction_type))
        noisy = objective.add_noise(latents, noise, ts)
        recovered = objective.predicted_x0(noisy, objective.target(latents, noise, ts), ts)
        assert torch.allclose(recovered, latents, atol=1e-4)


def test_command_prints_the_table_and_writes_json(dataset, tmp_path, capsys):
    checkpoint = tmp_path / "tiny.safetensors"
    save_emo_checkpoint(tiny_model(**CLIP), checkpoint, vae=tiny_vae(), metadata={"training_resolution": str(SIZE)})
    out = tmp_path / "reliance.json"
    assert main(["--checkpoint", str(checkpoint), "--data", str(dataset), "--samples", "2", "--timesteps", "999",
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| 999 |" in printed and "copy last motion frame" in printed
    assert set(json.loads(out.read_text())["x0_mse"]["999"]) == set(VARIANTS)
    assert torch.is_grad_enabled()  # the probe must not switch autograd off for the rest of the process

    bare = tmp_path / "bare.safetensors"
    save_emo_checkpoint(tiny_model(**CLIP), bare)  # no VAE, no training resolution
    assert main(["--checkpoint", str(bare), "--data", str(dataset), "--resolution", str(SIZE)]) == 2
    assert "without a VAE" in capsys.readouterr().err
    save_emo_checkpoint(tiny_model(**CLIP), bare, vae=tiny_vae())
    assert main(["--checkpoint", str(bare), "--data", str(dataset)]) == 2
    assert "training_resolution" in capsys.readouterr().err


def test_command_draws_masks_as_the_model_was_trained(dataset, tmp_path, monkeypatch, capsys):
    import emo_model.train.reliance as reliance
    made = []

    class Recorded(reliance.TrainData):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append((self.face_mask_span, self.face_mask_widen))

    monkeypatch.setattr(reliance, "TrainData", Recorded)
    checkpoint = tmp_path / "tiny.safetensors"
    save_emo_checkpoint(tiny_model(**CLIP), checkpoint, vae=tiny_vae(), metadata={"training_resolution": str(SIZE)})
    common = ["--checkpoint", str(checkpoint), "--data", str(dataset), "--samples", "1", "--timesteps", "999"]
    assert main(common) == 0 and main(common + ["--face-mask-span", "sample", "--face-mask-widen", "1.6"]) == 0
    assert made == [("clip", 1.0), ("sample", 1.6)]
    with pytest.raises(SystemExit):
        main(common + ["--face-mask-widen", "0.5"])
    assert "face-mask-widen" in capsys.readouterr().err
