"""The trainer on CPU with the tiny geometry: the three stages on a small synthetic prepared dataset,
freezing per stage (bitwise), falling loss, kill-and-resume equality, the result in the pipeline and
the nodes, bad datasets, gradient checkpointing and bf16."""
import dataclasses
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate.state import AcceleratorState

from emo_model.audio import WhisperAudioEncoder, packaged_whisper_tiny_dir
from emo_model.checkpoint import load_checkpoint_vae, load_emo_model, save_emo_checkpoint
from emo_model.data import DatasetError
from emo_model.data.dataset import FORMAT, write_index
from emo_model.model import EMOModel
from emo_model.pipeline import EMOPipeline
from emo_model.sampler import SamplerSettings
from emo_model.train import ConfigError, TrainConfig, parameter_group, train
from emo_model.train.__main__ import main as train_cli
from emo_model.train.data import TrainData
from emo_model.train.freeze import STAGE_GROUPS
from emo_model.train.loss_log import LossLog
from emo_model.train.objective import Objective
from emo_model.train.state import checkpoints
from emo_model.train.hue import hue_angles, hue_matrices
from emo_model.train.trainer import frame_encoder, model_inputs, rotate_hues, step_generator
from emo_model.vae import LatentCodec
from helpers import awake, blob_clip, make_blob_dataset, tiny_config, tiny_vae

ROOT = Path(__file__).resolve().parents[1]

SIZE, FRAMES, FPS = 64, 24, 25.0
# Short clips keep CPU steps fast: 2 motion + 4 generated frames.
CLIP = {"frames_per_clip": 4, "motion_frames": 2}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_blob_dataset(tmp_path_factory.mktemp("data"), SIZE, FRAMES, FPS)


@pytest.fixture(scope="module")
def vae_checkpoint(tmp_path_factory):
    """A tiny VAE, delivered the way small models ship one: inside an EMO checkpoint."""
    path = tmp_path_factory.mktemp("vae") / "tiny_vae.safetensors"
    save_emo_checkpoint(EMOModel(tiny_config(**CLIP)), path, vae=tiny_vae())
    return path


def config(dataset, out, stage, **changes):
    values = dict(stage=stage, data=[str(dataset)], output_dir=str(out), geometry="tiny", resolution=SIZE,
                  batch_size=2 if stage == 1 else 1, lr=2e-3, max_steps=12, save_every=6, log_every=1,
                  noise_offset=0.05, min_snr_gamma=5.0, reference_dropout=0.1, audio_dropout=0.1, seed=0, **CLIP)
    values.update(changes)
    return TrainConfig.from_dict(values)


def params(path):
    return dict(load_emo_model(path).named_parameters())


def fixed_draw_loss(checkpoint, cfg, vae, draws=6):
    """Loss of a model on the same draws (clips, frames, timesteps, noise) whatever the model."""
    model = load_emo_model(checkpoint).train()
    e = cfg.emo_config()
    data = TrainData(cfg.data, stage=cfg.stage, resolution=cfg.resolution, frames=e.frames_per_clip,
                     motion_frames=e.motion_frames, audio_window=e.audio_window, audio_shape=(e.audio_layers, e.audio_dim))
    objective, codec, total = Objective(e.noise), LatentCodec(vae), 0.0
    with torch.no_grad():
        for i in range(draws):
            g = step_generator(1234, i, 0, 0)
            inputs = model_inputs(data.sample(2, g), codec, objective, cfg, g, "cpu")
            prediction = model(inputs.noisy, inputs.timesteps, **inputs.conditions)
            total += objective.loss(prediction, inputs.target, inputs.timesteps).item()
    return total / draws


@pytest.fixture(scope="module")
def stages(dataset, vae_checkpoint, tmp_path_factory):
    """Stage 1 (from a saved fresh model whose VAE it uses) → stage 2 → stage 3, each from the last."""
    root = tmp_path_factory.mktemp("runs")
    out = {0: vae_checkpoint}
    for stage, steps in ((1, 24), (2, 12), (3, 12)):
        cfg = config(dataset, root / f"stage{stage}", stage, init_checkpoint=str(out[stage - 1]), max_steps=steps,
                     vae=None if stage == 1 else str(vae_checkpoint), save_vae=stage == 3)
        out[stage] = train(cfg)
    return out


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_each_stage_trains_exactly_its_groups(stages, stage):
    before, after = params(stages[stage - 1]), params(stages[stage])
    changed = {}
    for name, value in after.items():
        group = parameter_group(name)
        same = torch.equal(before[name], value)
        if group not in STAGE_GROUPS[stage]:
            assert same, f"stage {stage} changed frozen parameter {name} ({group})"
        changed.setdefault(group, []).append(not same)
    for group in STAGE_GROUPS[stage]:
        # Stage 1: the ReferenceNet layers after its last captured feature (conv_out, ...) get no gradient.
        assert sum(changed[group]) / len(changed[group]) > (0.8 if group == "reference_net" else 0.99), group


def test_loss_falls(stages, dataset, vae_checkpoint):
    logged = [r["loss"] for r in LossLog(stages[1].parent / "loss.jsonl").read()]
    assert len(logged) == 24
    assert np.mean(logged[-4:]) < 0.6 * np.mean(logged[:4])
    vae = load_checkpoint_vae(vae_checkpoint)
    for stage in (2, 3):  # the new layers start as identities: compare on fixed draws
        cfg = config(dataset, "unused", stage, reference_dropout=0.0, audio_dropout=0.0, motion_dropout=0.0)
        assert fixed_draw_loss(stages[stage], cfg, vae) < fixed_draw_loss(stages[stage - 1], cfg, vae)


def test_outputs_and_stored_schedule(stages):
    out = stages[3].parent
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in checkpoints(out)] == ["step_000006", "step_000012"]
    assert json.loads((out / "train_config.json").read_text())["stage"] == 3
    config_used = TrainConfig.from_dict(json.loads((out / "train_config.json").read_text())).emo_config()
    model = load_emo_model(stages[3])
    assert model.config.noise == config_used.noise  # the schedule the loss used is the one inference reads
    assert (model.config.frames_per_clip, model.config.motion_frames, model.config.fps) == (4, 2, FPS)
    assert model.checkpoint_metadata["training_stage"] == "3"
    resumable = load_emo_model(out / "checkpoints/step_000012/model.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(resumable.state_dict().values(), model.state_dict().values()))


def test_trained_model_runs_in_the_pipeline_and_the_nodes(stages, tmp_path):
    model, vae = load_emo_model(stages[3]), load_checkpoint_vae(stages[3])
    encoder = WhisperAudioEncoder.from_ctranslate2(packaged_whisper_tiny_dir())
    video = EMOPipeline(model, vae, encoder)(np.full((64, 64, 3), 128, np.uint8), torch.zeros(16000) + 0.01,
                                             fps=6, height=64, width=64, settings=SamplerSettings(steps=2), speed=0.5)
    assert video.frames.shape == (6, 64, 64, 3)

    pack = sys.modules["emo_comfyui"]
    (tmp_path / "models/emo").mkdir(parents=True)
    shutil.copy(stages[3], tmp_path / "models/emo/trained.safetensors")
    previous = pack.nodes.host.configure(models_dir=tmp_path / "models", device="cpu")
    try:
        loader = pack.NODE_CLASS_MAPPINGS["EMO_ModelLoader"]()
        bundle = loader.load("trained.safetensors", "(none)", "(none)", "(from EMO checkpoint)", "fp32")[0]
    finally:
        pack.nodes.host.configure(**previous.__dict__)
    assert bundle.model.config == model.config


def test_killed_run_resumes_to_the_same_result(dataset, vae_checkpoint, tmp_path):
    """From scratch, with gradient accumulation: killed after step 5 (last save at 3), resumed to 8."""
    settings = dict(init_checkpoint=None, vae=str(vae_checkpoint), max_steps=8, save_every=3,
                    gradient_accumulation_steps=2)
    whole = train(config(dataset, tmp_path / "whole", 2, **settings))

    def kill(step, loss):
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config(dataset, tmp_path / "killed", 2, **settings), on_step=kill)
    assert checkpoints(tmp_path / "killed")[-1].name == "step_000003"
    with pytest.raises(ConfigError, match="--resume auto"):  # a fresh start must not mix with the old run
        train(config(dataset, tmp_path / "killed", 2, **settings))
    resumed = train(config(dataset, tmp_path / "killed", 2, **settings), resume="auto")

    a, b = params(whole), params(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    logs = [[(r["step"], r["loss"], r["lr"]) for r in LossLog(p.parent / "loss.jsonl").read()] for p in (whole, resumed)]
    assert logs[0] == logs[1] and len(logs[0]) == 8


def test_bad_datasets_stop_with_a_clear_message(dataset, vae_checkpoint, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="no index.json"):
        train(config(empty, tmp_path / "out1", 1, vae=str(vae_checkpoint)))

    write_index(empty, {"format": FORMAT, "options": {"fps": FPS}, "clips": [], "skipped": [], "videos": {}})
    with pytest.raises(DatasetError, match="has no clips"):
        train(config(empty, tmp_path / "out2", 1, vae=str(vae_checkpoint)))

    (empty / "index.json").write_text("{not json")
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"stage": 1, "data": [str(empty)], "output_dir": str(tmp_path / "out3"),
                                "vae": str(vae_checkpoint)}))
    assert train_cli(["--config", str(path)]) == 2
    assert "corrupt" in capsys.readouterr().err

    broken = tmp_path / "broken"
    shutil.copytree(dataset, broken)
    (broken / "clips/clip0.safetensors").write_bytes(b"garbage")
    (broken / "clips/clip1.safetensors").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="corrupt"):
        train(config(broken, tmp_path / "out4", 1, vae=str(vae_checkpoint)))


def test_init_checkpoint_of_another_geometry_is_refused(dataset, vae_checkpoint, tmp_path):
    with pytest.raises(ConfigError, match="another geometry"):
        train(config(dataset, tmp_path / "out", 2, geometry="sd15", init_checkpoint=str(vae_checkpoint)))


def test_config_files_and_errors(tmp_path):
    for path in sorted(ROOT.glob("configs/train/stage*_*.json")):
        cfg = TrainConfig.from_file(path, ["max_steps=5", "output_dir=elsewhere"])
        assert f"stage{cfg.stage}_" in path.name and cfg.max_steps == 5 and cfg.output_dir == "elsewhere"
        assert cfg.geometry in path.stem
    assert len(list(ROOT.glob("configs/train/stage*_*.json"))) == 6
    base = {"stage": 2, "data": ["d"], "output_dir": "o"}
    for bad, message in (({"stage": 4}, "stage"), ({"lr_rate": 1}, "unknown"), ({"mixed_precision": "fp8"}, "mixed"),
                         ({"trainable": ["audio", "eyes"]}, "trainable"), ({"noise": {"prediction_type": "x0"}}, "prediction"),
                         ({"geometry": "sdxl"}, "geometry"), ({"face_mask_span": "video"}, "face_mask_span")):
        with pytest.raises(ConfigError, match=message):
            TrainConfig.from_dict({**base, **bad})


def test_gradient_checkpointing_gives_the_same_loss_and_gradients():
    torch.manual_seed(0)
    model = awake(EMOModel(tiny_config(**CLIP))).train()
    g = torch.Generator().manual_seed(0)
    inputs = dict(reference_latents=torch.randn(1, 4, 8, 8, generator=g),
                  motion_latents=torch.randn(1, 2, 4, 8, 8, generator=g),
                  audio_windows=torch.randn(1, 4, 5, 5, 384, generator=g), speed=torch.rand(1, 6, generator=g),
                  face_mask=torch.ones(1, 1, 64, 64))
    noisy = torch.randn(1, 4, 4, 8, 8, generator=g)

    def run():
        model.zero_grad()
        loss = model(noisy, torch.tensor([500]), **inputs).pow(2).mean()
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain_loss, plain = run()
    for unet in (model.backbone, model.reference_net):
        unet.enable_gradient_checkpointing()
    loss, grads = run()
    assert torch.allclose(loss, plain_loss, atol=1e-6)
    assert grads.keys() == plain.keys() and len(grads) > 500
    assert all(torch.allclose(grads[k], plain[k], atol=1e-5, rtol=1e-4) for k in grads)


def test_bf16_and_gradient_checkpointing_run_on_cpu(dataset, vae_checkpoint, tmp_path):
    # accelerate fixes the precision once per process (a real run is one process); reset it around this test.
    AcceleratorState._reset_state()
    try:
        final = train(config(dataset, tmp_path / "bf16", 2, vae=str(vae_checkpoint), max_steps=1,
                             mixed_precision="bf16", gradient_checkpointing=True))
    finally:
        AcceleratorState._reset_state()
    assert np.isfinite(LossLog(final.parent / "loss.jsonl").read()[0]["loss"])
    assert load_emo_model(final).dtype == torch.float32  # master weights stay fp32


@pytest.fixture(scope="module")
def moving_face_dataset(tmp_path_factory):
    """Blob clips whose face box moves one pixel right per frame (x0 = frame index): a mask taken
    from the wrong frame, or from the clip's face region, lands in the wrong columns."""
    from emo_model.data.dataset import write_clip
    root = make_blob_dataset(tmp_path_factory.mktemp("moving"), SIZE, FRAMES, FPS)
    for i in range(2):
        images, tensors = blob_clip(i, SIZE, FRAMES, FPS)
        tensors["face_boxes"] = torch.tensor([[float(t), 12.0, t + 32.0, 52.0] for t in range(FRAMES)])
        tensors["face_region"] = torch.tensor([0.0, 12.0, FRAMES + 31.0, 52.0])
        write_clip(root, f"clip{i}", images, FPS, tensors,
                   {"source": f"v{i}.mp4", "start_seconds": "0", "fps": str(FPS), "num_frames": str(FRAMES),
                    "resolution": f"{SIZE}x{SIZE}", "audio_encoder": "whisper-tiny", "audio_layers": "5",
                    "audio_dim": "384"})
    return root


def train_data(cfg):
    e = cfg.emo_config()
    return TrainData(cfg.data, stage=cfg.stage, resolution=cfg.resolution, frames=e.frames_per_clip,
                     motion_frames=e.motion_frames, audio_window=e.audio_window, audio_shape=(e.audio_layers, e.audio_dim),
                     face_mask_span=cfg.face_mask_span, face_mask_widen=cfg.face_mask_widen)


@pytest.mark.parametrize("stage", [1, 2])
@pytest.mark.parametrize("span", ["clip", "sample"])
def test_face_mask_spans_the_clip_or_the_samples_own_frames(moving_face_dataset, stage, span):
    data = train_data(config(moving_face_dataset, "unused", stage, face_mask_span=span))
    window = data.motion_frames + data.frames
    starts = set()
    for seed in range(6):
        batch = data.sample(1, torch.Generator().manual_seed(seed))
        g = torch.Generator().manual_seed(seed)  # replay TrainData._one's draws: clip, then window start
        _, start = torch.randint(2, (1,), generator=g), int(torch.randint(FRAMES - window + 1, (1,), generator=g))
        starts.add(start)
        rows, cols = torch.nonzero(batch.face_mask[0, 0], as_tuple=True)
        # boxes (t, 12, t + 32, 52): the clip's union spans x 0 .. FRAMES + 31, the sample's start .. start + window + 31
        first, last = (0, FRAMES + 30) if span == "clip" else (start, start + window + 30)
        assert (rows.min(), rows.max(), cols.min(), cols.max()) == (12, 51, first, last)
        assert batch.face_mask[0, 0].sum() == 40 * (last - first + 1)
    assert len(starts) > 1  # the sample's mask was checked at several places


@pytest.mark.parametrize("stage", [1, 2])
def test_widened_masks_keep_their_centre_and_vary_in_size(moving_face_dataset, stage):
    def mask_boxes(widen):
        data = train_data(config(moving_face_dataset, "unused", stage, face_mask_span="sample", face_mask_widen=widen))
        out = []
        for seed in range(12):
            batch = data.sample(1, torch.Generator().manual_seed(seed))
            rows, cols = torch.nonzero(batch.face_mask[0, 0], as_tuple=True)
            out.append((batch.target, (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1)))
        return out
    widths, heights, centred, apart = set(), set(), 0, 0
    for (target, box), (plain_target, plain) in zip(mask_boxes(1.6), mask_boxes(1.0)):
        unclipped = box[0] > 0 and box[2] < SIZE and box[1] > 0 and box[3] < SIZE
        ratios = [(box[a + 2] - box[a]) / (plain[a + 2] - plain[a]) for a in (0, 1)]
        apart += unclipped and abs(ratios[0] - ratios[1]) > 0.1
        assert torch.equal(target, plain_target)  # the widening draw comes after the sample's other draws
        for axis, seen in ((0, widths), (1, heights)):
            lo, hi, plo, phi = box[axis], box[axis + 2], plain[axis], plain[axis + 2]
            assert lo <= plo and hi >= phi and hi - lo <= 1.6 * (phi - plo) + 2  # holds the head, at most 1.6x
            if lo > 0 and hi < SIZE:  # not cut by the frame's edge: the same centre, to a pixel cell
                assert abs((lo + hi) - (plo + phi)) <= 2
                centred += 1
            seen.add(hi - lo)
    assert centred > 6 and len(widths) > 3 and len(heights) > 3 and apart > 0  # width and height drawn apart
    with pytest.raises(ConfigError, match="face_mask_widen"):
        config(moving_face_dataset, "unused", stage, face_mask_widen=0.5)


def test_training_draws_masks_over_the_configured_span(moving_face_dataset, vae_checkpoint, tmp_path, monkeypatch):
    import emo_model.train.trainer as trainer
    made = []

    class Recorded(TrainData):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append((self.face_mask_span, self.face_mask_widen))

    monkeypatch.setattr(trainer, "TrainData", Recorded)
    train(config(moving_face_dataset, tmp_path / "out", 1, vae=str(vae_checkpoint), max_steps=1,
                 face_mask_span="sample", face_mask_widen=1.3))
    assert made == [("sample", 1.3)]


@pytest.mark.parametrize("stage", [1, 2])
def test_mouth_mask_is_each_target_frames_mouth_region(moving_face_dataset, stage):
    cfg = config(moving_face_dataset, "unused", stage)
    data = train_data(cfg)
    for seed in range(4):
        batch = data.sample(1, torch.Generator().manual_seed(seed))
        # TrainData._one draws the clip, then the window start: replay those two draws.
        g = torch.Generator().manual_seed(seed)
        _, start = torch.randint(2, (1,), generator=g), int(torch.randint(FRAMES - data.motion_frames - data.frames + 1,
                                                                        (1,), generator=g))
        assert batch.mouth_mask.shape == (1, data.frames, 1, SIZE, SIZE)
        for f in range(data.frames):
            t = start + data.motion_frames + f  # the target frame's index in the clip
            rows, cols = torch.nonzero(batch.mouth_mask[0, f, 0], as_tuple=True)
            # MOUTH_REGION of the box (t, 12, t + 32, 52): x t+8 .. t+24, y 36 .. 50 (pixel cells)
            assert (rows.min(), rows.max(), cols.min(), cols.max()) == (36, 49, t + 8, t + 23)


def test_mouth_loss_weight_weights_the_loss_by_mouth_coverage(dataset):
    cfg = config(dataset, "unused", 2, mouth_loss_weight=9.0)
    batch = train_data(cfg).sample(2, step_generator(0, 0, 0, 0))
    e = cfg.emo_config()
    objective, codec = Objective(e.noise), LatentCodec(tiny_vae())
    weighted = model_inputs(batch, codec, objective, cfg, step_generator(0, 0, 0, 0), "cpu")
    plain = model_inputs(batch, codec, objective, config(dataset, "unused", 2), step_generator(0, 0, 0, 0), "cpu")
    assert plain.weights is None
    w = weighted.weights
    assert w.shape == (2, e.frames_per_clip, 1, SIZE // 8, SIZE // 8)
    # The blob clips' mouth region is pixels x 24..39, y 36..49: latent cells (8 px) x 3..4 wholly, and
    # y 4 by half, y 5 wholly, y 6 by a quarter.
    assert torch.equal(w[0, 0, 0, :, 3], torch.tensor([1, 1, 1, 1, 1 + 9 * 0.5, 1 + 9, 1 + 9 * 0.25, 1]))
    assert (w[:, :, :, :, :3] == 1).all() and (w[:, :, :, :, 5:] == 1).all()
    prediction = weighted.target.clone()
    prediction[:, :, :, 4, 3] += 1.0  # an error only inside the mouth: weighted 1 + 4.5
    unweighted = objective.loss(prediction, plain.target, plain.timesteps)
    assert torch.allclose(objective.loss(prediction, weighted.target, weighted.timesteps, w), 5.5 * unweighted)
    with pytest.raises(ConfigError, match="mouth_loss_weight"):
        config(dataset, "unused", 2, mouth_loss_weight=-1.0)


def step_inputs(dataset, stage, *settings):
    """model_inputs of step 0's first micro-batch (motion frames kept) under each config override, same batch."""
    configs = [config(dataset, "unused", stage, motion_dropout=0.0, **extra) for extra in settings]
    batch = train_data(configs[0]).sample(2, step_generator(0, 0, 0, 0))
    objective, codec = Objective(configs[0].emo_config().noise), LatentCodec(tiny_vae())
    return [model_inputs(batch, codec, objective, c, step_generator(0, 0, 0, 0), "cpu") for c in configs]


def test_still_motion_holds_the_motion_frames_at_the_last_one_and_zeroes_their_speed(dataset):
    """Stage 3 with still_motion 1: the head rests in the motion frames and the label asks it to move."""
    plain, still = step_inputs(dataset, 3, {}, {"still_motion": 1.0})
    assert torch.equal(plain.noisy, still.noisy) and torch.equal(plain.target, still.target)  # other draws unchanged
    n = plain.conditions["num_motion"]
    moving, resting = plain.conditions["motion_latents"], still.conditions["motion_latents"]
    assert not torch.allclose(moving[:, 0], moving[:, -1])
    assert all(torch.allclose(resting[:, i], moving[:, -1], atol=1e-4) for i in range(n))
    assert (still.conditions["speed"][:, :n] == 0).all() and (plain.conditions["speed"][:, :n] > 0).any()
    assert torch.equal(still.conditions["speed"][:, n:], plain.conditions["speed"][:, n:])
    with pytest.raises(ConfigError, match="still_motion"):
        config(dataset, "unused", 3, still_motion=1.5)


def test_hue_rotation_keeps_luma_and_greys_and_turns_a_samples_frames_alike(dataset):
    angles = torch.tensor([0.0, 1.0, -2.5, 2 * math.pi])
    m = hue_matrices(angles)
    torch.testing.assert_close(m[0], torch.eye(3), atol=1e-6, rtol=0)
    torch.testing.assert_close(m[3], torch.eye(3), atol=1e-5, rtol=0)  # a full turn
    luma = torch.tensor([0.299, 0.587, 0.114])
    torch.testing.assert_close(luma @ m, luma.expand(4, 3), atol=1e-5, rtol=0)  # brightness kept
    torch.testing.assert_close(m @ torch.ones(3), torch.ones(4, 3), atol=1e-5, rtol=0)  # greys stay grey
    yellow = torch.tensor([0.9, 0.8, 0.1])
    assert (m[1] @ yellow - yellow).abs().max() > 0.2  # a colour does turn

    cfg = config(dataset, "unused", 2, motion_dropout=0.0)
    batch = train_data(cfg).sample(2, step_generator(0, 0, 0, 0))
    turned = rotate_hues(batch, torch.tensor([0.0, 2.0]))
    for name in ("reference", "motion", "target"):
        before, after = getattr(batch, name), getattr(turned, name)
        torch.testing.assert_close(after[0], before[0], atol=1e-5, rtol=0)  # angle 0: unchanged
        assert not torch.allclose(after[1], before[1], atol=0.05) and after.min() >= 0 and after.max() <= 1
    # one turn per sample for its reference and its frames: a frame equal to the reference stays equal to it
    same = dataclasses.replace(batch, target=batch.reference[:, None].expand_as(batch.target).clone())
    same_turned = rotate_hues(same, torch.tensor([0.5, 2.0]))
    assert torch.equal(same_turned.target, same_turned.reference[:, None].expand_as(same_turned.target))
    # turning back restores the reference
    back = rotate_hues(turned, torch.tensor([0.0, -2.0]))
    unclipped = (turned.reference[1] > 0).all(0) & (turned.reference[1] < 1).all(0)
    assert torch.allclose(back.reference[1][:, unclipped], batch.reference[1][:, unclipped], atol=1e-4)
    assert torch.equal(turned.mouth_mask, batch.mouth_mask) and torch.equal(turned.face_mask, batch.face_mask)

    g = torch.Generator().manual_seed(0)
    assert (hue_angles(1000, 0.0, g) == 0).all()
    drawn = hue_angles(1000, 0.5, g)
    assert 400 < int((drawn != 0).sum()) < 600 and drawn.abs().max() <= math.pi


def test_hue_augment_turns_the_model_inputs_and_is_seeded_by_the_step(dataset):
    plain, again, turned = step_inputs(dataset, 2, {}, {"hue_augment": 1.0}, {"hue_augment": 1.0})
    assert torch.equal(again.target, turned.target)  # seeded by the step like every other draw
    assert not torch.allclose(plain.conditions["reference_latents"], turned.conditions["reference_latents"])
    assert not torch.allclose(plain.conditions["motion_latents"], turned.conditions["motion_latents"])
    with pytest.raises(ConfigError, match="hue_augment"):
        config(dataset, "unused", 2, hue_augment=1.5)


def test_training_uses_the_mouth_loss_weight(dataset, vae_checkpoint, tmp_path):
    losses = {}
    for weight in (0.0, 20.0):
        final = train(config(dataset, tmp_path / f"w{weight}", 2, vae=str(vae_checkpoint), max_steps=1,
                             mouth_loss_weight=weight, init_checkpoint=str(vae_checkpoint)))
        losses[weight] = LossLog(final.parent / "loss.jsonl").read()[0]["loss"]
    assert losses[20.0] > 1.5 * losses[0.0]  # same draws; the mouth's error now counts 21 times


def test_resuming_a_run_saved_before_a_new_setting_does_not_warn(dataset, caplog):
    from emo_model.train.trainer import _warn_changes
    cfg = config(dataset, "out", 2)
    saved = json.loads(cfg.to_json())
    del saved["mouth_loss_weight"]  # a checkpoint written before the field existed
    with caplog.at_level("WARNING", logger="emo_model.train"):
        _warn_changes(saved, cfg)
        assert not caplog.records
        _warn_changes({**saved, "lr": 1.0}, cfg)
    assert "['lr']" in caplog.text


def test_learning_rate_schedules():
    from emo_model.train.trainer import learning_rate
    constant = TrainConfig.from_dict({"stage": 1, "data": ["d"], "output_dir": "o", "lr": 1e-3, "lr_warmup_steps": 10,
                                      "max_steps": 110})
    cosine = TrainConfig.from_dict({**json.loads(constant.to_json()), "lr_schedule": "cosine"})
    warm = [learning_rate(constant, s) for s in range(10)]
    assert warm == [learning_rate(cosine, s) for s in range(10)] and warm[0] == pytest.approx(1e-4) and warm[-1] == 1e-3
    assert {learning_rate(constant, s) for s in range(10, 110)} == {1e-3}
    decay = [learning_rate(cosine, s) for s in range(10, 110)]
    assert decay[0] == 1e-3 and decay[50] == pytest.approx(5e-4) and 0 < decay[-1] < 1e-6
    assert all(b < a for a, b in zip(decay, decay[1:]))
    with pytest.raises(ConfigError, match="lr_schedule"):
        TrainConfig.from_dict({"stage": 1, "data": ["d"], "output_dir": "o", "lr_schedule": "step"})
    with pytest.raises(ConfigError, match="lr_warmup_steps"):
        TrainConfig.from_dict({"stage": 1, "data": ["d"], "output_dir": "o", "lr_warmup_steps": -1})
    with pytest.raises(ConfigError, match="below max_steps"):  # cosine would never decay
        TrainConfig.from_dict({"stage": 1, "data": ["d"], "output_dir": "o", "lr_schedule": "cosine",
                               "lr_warmup_steps": 110, "max_steps": 110})
    TrainConfig.from_dict({"stage": 1, "data": ["d"], "output_dir": "o", "lr_warmup_steps": 110, "max_steps": 110})


def test_cosine_schedule_trains_and_resuming_warns_when_max_steps_reshapes_it(dataset, vae_checkpoint, tmp_path, caplog):
    from emo_model.train.trainer import _warn_changes
    final = train(config(dataset, tmp_path / "cos", 1, init_checkpoint=str(vae_checkpoint), max_steps=4,
                         lr_schedule="cosine"))
    logged = [row["lr"] for row in LossLog(final.parent / "loss.jsonl").read()]
    assert logged == pytest.approx([2e-3, 2e-3 * 0.5 * (1 + np.cos(np.pi / 4)), 1e-3, 2e-3 * 0.5 * (1 + np.cos(3 * np.pi / 4))])
    with caplog.at_level("WARNING", logger="emo_model.train"):
        constant = config(dataset, "out", 1)
        _warn_changes({**json.loads(constant.to_json()), "max_steps": 99}, constant)
        assert not caplog.records  # a constant rate does not depend on where the run ends
        cosine = config(dataset, "out", 1, lr_schedule="cosine")
        _warn_changes({**json.loads(cosine.to_json()), "max_steps": 99}, cosine)
    assert "['max_steps']" in caplog.text


@pytest.mark.parametrize("stage", [1, 3])
def test_frame_cache_keeps_whole_clips_within_its_budget_and_changes_no_draw(dataset, stage):
    cfg = config(dataset, "unused", stage)
    e = cfg.emo_config()

    def data(mb):
        return TrainData(cfg.data, stage=stage, resolution=SIZE, frames=e.frames_per_clip, motion_frames=e.motion_frames,
                         audio_window=e.audio_window, audio_shape=(e.audio_layers, e.audio_dim), frame_cache_mb=mb)

    clip_bytes = FRAMES * SIZE * SIZE * 3
    uncached, cached, one_clip = data(0), data(64), data(1.5 * clip_bytes / 2 ** 20)
    for k in range(8):
        want = uncached.sample(2, step_generator(0, k, 0, 0))
        for d in (cached, one_clip):
            got = d.sample(2, step_generator(0, k, 0, 0))
            for field in dataclasses.fields(want):
                a, b = getattr(want, field.name), getattr(got, field.name)
                assert (a is None and b is None) or a is b is False or torch.equal(a, b), (k, field.name)
    assert uncached._frames.used == 0
    assert cached._frames.used == len(cached._frames._clips) * clip_bytes > clip_bytes  # several clips, whole
    assert one_clip._frames.used == clip_bytes  # the budget held one clip; the others were decoded per draw
    with pytest.raises(ConfigError, match="frame_cache_mb"):
        config(dataset, "unused", stage, frame_cache_mb=-1)


@pytest.mark.parametrize("stage", [1, 3])
def test_encoded_clips_give_the_latents_of_the_drawn_frames_and_change_no_draw(dataset, stage):
    """With a FrameEncoder the samples carry the VAE latents of the frames the pixel path draws (equal
    to the last bits), clips are encoded whole once within the budget, and the step inputs agree."""
    cfg = config(dataset, "unused", stage, motion_dropout=0.0)
    e = cfg.emo_config()
    codec = LatentCodec(tiny_vae())
    encoder = frame_encoder(codec, cfg)
    latent_bytes = 4 * 4 * (SIZE // 8) ** 2
    assert encoder.frame_bytes == latent_bytes

    def data(mb, encoder=None):
        return TrainData(cfg.data, stage=stage, resolution=SIZE, frames=e.frames_per_clip, motion_frames=e.motion_frames,
                         audio_window=e.audio_window, audio_shape=(e.audio_layers, e.audio_dim), frame_cache_mb=mb,
                         encoder=encoder)

    pixels, encoded, one_clip = data(0), data(64, encoder), data(1.5 * FRAMES * latent_bytes / 2 ** 20, encoder)
    objective = Objective(e.noise)
    for k in range(6):
        want = pixels.sample(2, step_generator(0, k, 0, 0))
        assert not want.encoded
        for d in (encoded, one_clip):
            got = d.sample(2, step_generator(0, k, 0, 0))
            assert got.encoded
            for name in ("target", "reference", "motion"):
                frames = getattr(want, name)
                if frames is None:
                    assert getattr(got, name) is None
                    continue
                latents = codec.encode(frames.flatten(0, -4)).unflatten(0, frames.shape[:-3])
                torch.testing.assert_close(getattr(got, name), latents, atol=1e-4, rtol=0)
            for name in ("face_mask", "mouth_mask", "audio_windows", "speed"):
                a, b = getattr(want, name), getattr(got, name)
                assert (a is None and b is None) or torch.equal(a, b), (k, name)
            a, b = (model_inputs(batch, codec, objective, cfg, step_generator(0, k, 0, 0), "cpu") for batch in (want, got))
            torch.testing.assert_close(b.noisy, a.noisy, atol=1e-4, rtol=0)
            for name, value in a.conditions.items():
                other = b.conditions[name]
                if isinstance(value, torch.Tensor):
                    torch.testing.assert_close(other, value, atol=1e-4, rtol=0)
                else:
                    assert other == value, name
    assert encoded._frames.used == len(encoded._frames._clips) * FRAMES * latent_bytes > FRAMES * latent_bytes
    assert one_clip._frames.used == FRAMES * latent_bytes  # the others were encoded per draw

    hue = config(dataset, "unused", stage, hue_augment=0.5)
    assert frame_encoder(codec, hue) is None  # hue turns pixels before the VAE: nothing to encode ahead
    with pytest.raises(ValueError, match="hue augmentation"):
        model_inputs(encoded.sample(2, step_generator(0, 0, 0, 0)), codec, objective, hue, step_generator(0, 0, 0, 0), "cpu")
