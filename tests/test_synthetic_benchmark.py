"""The synthetic benchmark: its measurements checked on ground-truth renders, and the whole command
on a tiny checkpoint (values are meaningless there; the table, the runs and the errors are real)."""
import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from emo_model.audio import load_audio_encoder, packaged_whisper_tiny_dir
from emo_model.checkpoint import save_emo_checkpoint, save_vae_file
from emo_model.errors import InputError
from emo_model.pipeline import EMOPipeline
from emo_model.synthetic import identity_from_seed, render_face
from emo_model.color import match_color
from emo_model.synthetic.benchmark import (Runner, default_speeds, format_table, load_eval_clips, main, run_benchmark,
                                           still_renders, turning_region)
from emo_model.synthetic.compare import compare
from emo_model.synthetic.generate import generate_dataset
from emo_model.synthetic.measure import frame_changes, head_roll, head_speed, mouth_opening, psnr, ssim
from emo_model.synthetic.render import face_geometry
from emo_model.synthetic.vae_ceiling import main as vae_ceiling_main
from emo_model.synthetic.vae_ceiling import run_vae_ceiling
from helpers import tiny_model, tiny_vae

SIZE = 64


def _draw(identity, **kw):
    """Rendered at 128² and resized to 64² as the trainer does."""
    frame = torch.from_numpy(np.array(render_face(identity, 128, **kw)[0])).permute(2, 0, 1)[None].float()
    small = F.interpolate(frame, size=(SIZE, SIZE), mode="bilinear", antialias=True)
    return small.round().clamp(0, 255)[0].permute(1, 2, 0).to(torch.uint8).numpy()


@pytest.mark.parametrize("seed", [3, 11])
def test_mouth_and_roll_measurements_recover_the_rendered_truth(seed):
    identity = identity_from_seed(seed)
    geometry = face_geometry(identity, SIZE, 2.0, 0.01, 0.0)
    openings = np.linspace(0, 1, 6)
    frames = np.stack([_draw(identity, mouth_open=o, roll_deg=2.0, dx=0.01) for o in openings])
    measured = mouth_opening(frames, geometry.mouth_box)
    assert measured[0] == 0 and np.all(np.diff(measured[1:]) > 0)  # the faintest opening may not show at 64²
    reference = _draw(identity, roll_deg=2.0, dx=0.01)
    rolls = np.array([2.0, 3.0, 5.0, 8.0, -4.0, 14.0])
    frames = np.stack([_draw(identity, mouth_open=0.4, roll_deg=r, dx=0.01) for r in rolls])
    x0, y0, x1, y1 = geometry.face_box
    found = head_roll(frames, reference, geometry.centre, (x0 - 3, y0 - 3, x1 + 3, y1 + 1)) + 2.0
    assert np.all(np.diff(found[:4]) > 0) and found[4] < 0 < found[5]
    assert np.abs(found - rolls).max() < 0.2 * np.abs(rolls).max()  # rotation of the rest of the frame biases it low


def test_head_speed_orders_constant_speed_renders():
    identity = identity_from_seed(5)
    geometry = face_geometry(identity, SIZE)
    reference = _draw(identity)
    x0, y0, x1, y1 = geometry.face_box
    speeds = []
    for speed in (0.0, 0.4, 0.8):
        frames = np.stack([_draw(identity, roll_deg=speed * t) for t in range(16)])
        speeds.append(head_speed(head_roll(frames, reference, geometry.centre, (x0 - 3, y0 - 3, x1 + 3, y1 + 1))))
    assert speeds[0] < 0.05 and speeds[0] < speeds[1] < speeds[2]
    with pytest.raises(ValueError, match="more than"):
        head_speed(np.zeros(4))


def test_frame_change_psnr_and_ssim():
    frames = np.zeros((8, 8, 8, 3), np.uint8)
    frames[4:] = 40  # a jump at the clip boundary (clips of 4), nothing within clips
    frames[1::4] += 2
    across, within = frame_changes(frames, 4)
    assert across > 30 and within < 3
    assert frame_changes(frames, [0, 4]) == (across, within)
    assert frame_changes(frames, np.int64(4)) == frame_changes(frames, (s for s in (0, 4))) == (across, within)
    across, within = frame_changes(frames, [0, 2])  # clips that start elsewhere see other boundaries
    assert across == pytest.approx(2) and within > 5
    assert psnr(frames, frames) > 90 and ssim(frames, frames) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="boundary"):
        frame_changes(frames[:3], 4)


def _make_eval_split(tmp_path_factory, face_box: str):
    if shutil.which("espeak-ng") is None or packaged_whisper_tiny_dir() is None:
        pytest.skip("needs espeak-ng and the packaged Whisper tiny.en")
    out = tmp_path_factory.mktemp(f"bench_{face_box}")
    generate_dataset(out, identities=1, clips_per_identity=1, seconds=1.0, resolution=64, holdout_identities=1,
                     voices=["en-us"], encoder=load_audio_encoder(packaged_whisper_tiny_dir()), face_box=face_box)
    return out / "eval"


@pytest.fixture(scope="module")
def eval_split(tmp_path_factory):
    return _make_eval_split(tmp_path_factory, "ellipse")


@pytest.fixture(scope="module")
def detector_eval_split(tmp_path_factory):
    """The same split with the boxes a face detector gives (generate --face-box detector)."""
    return _make_eval_split(tmp_path_factory, "detector")


def test_benchmark_command_runs_every_row_on_a_tiny_checkpoint(eval_split, tmp_path, capsys, monkeypatch):
    checkpoint = tmp_path / "tiny.safetensors"
    save_emo_checkpoint(tiny_model(fps=25.0), checkpoint, vae=tiny_vae(), metadata={"training_resolution": "64"})
    result = run_benchmark(checkpoint, eval_split, clips=1, seconds=0.64, steps=2, speeds=(0.0, 1.0),
                           speed_clips=1, log=lambda m: None)
    rows = result["rows"]
    assert set(rows) == {"ground truth renders", "VAE reconstruction (ceiling)", "EMO (full)", "no audio",
                         "no motion frames", "no speed layers"}
    assert rows["ground truth renders"]["lip_sync"] > 0.8  # the measurement itself works on the truth
    assert rows["ground truth renders"]["speed_monotonic"]
    for row in ("EMO (full)", "no audio", "no motion frames"):
        assert {"lip_sync", "psnr", "ssim", "continuity"} <= set(rows[row])
    assert result["seconds_per_frame"] > 0 and result["peak_memory_mb"] > 0
    per_clip = result["per_clip"]
    assert len(per_clip["clip_ids"]) == 1 and per_clip["EMO (full)"]["psnr"] == [rows["EMO (full)"]["psnr"]]
    assert per_clip["VAE reconstruction (ceiling)"]["ssim"] == [rows["VAE reconstruction (ceiling)"]["ssim"]]
    table = format_table(result)
    assert all(f"| {row} |" in table for row in rows) and "Identity gap to the ceiling" in table
    json_out = tmp_path / "result.json"
    settings_seen, masks_seen, call = [], [], EMOPipeline.__call__
    monkeypatch.setattr(EMOPipeline, "__call__", lambda self, *a, **kw: (
        settings_seen.append(kw["settings"]), masks_seen.append(kw["face_mask"]), call(self, *a, **kw))[2])
    assert main(["--checkpoint", str(checkpoint), "--data", str(eval_split), "--clips", "1", "--seconds", "0.64",
                 "--steps", "1", "--speeds", "0,1", "--speed-clips", "1", "--audio-cfg", "5", "--motion-cfg", "2",
                 "--overlap", "1", "--shared-noise", "--color-match", "video", "--json", str(json_out)]) == 0
    assert "| EMO (full) |" in capsys.readouterr().out
    assert settings_seen and all(s.shared_noise and s.overlap_frames == 1 for s in settings_seen)
    # the three still-head runs get the still truth's face region, the sweep (2 speeds × with and
    # without speed layers) one turning region for every request
    clip = load_eval_clips(eval_split, SIZE, 1, 0.64, 25.0)[0]
    assert len(masks_seen) == 3 + 4
    assert all(torch.equal(m, clip.still_mask) for m in masks_seen[:3])
    assert all(torch.equal(m, clip.turn_mask) for m in masks_seen[3:])
    written = json.loads(json_out.read_text())
    assert written["audio_cfg"] == 5.0 and written["motion_cfg"] == 2.0 and written["overlap"] == 1
    assert written["shared_noise"] is True and "overlap 1 frames, shared noise" in format_table(written)
    assert written["color_match"] == "video" and "colour match (video)" in format_table(written)
    # the ceiling goes through the same colour match (like for like), the ground truth does not
    assert written["rows"]["VAE reconstruction (ceiling)"]["psnr"] != pytest.approx(
        rows["VAE reconstruction (ceiling)"]["psnr"])
    assert written["rows"]["ground truth renders"]["lip_sync"] == pytest.approx(rows["ground truth renders"]["lip_sync"])


def test_vae_ceiling_gives_the_benchmarks_ceiling_row_for_each_vae_alone(eval_split, tmp_path, capsys):
    checkpoint, standalone = tmp_path / "tiny.safetensors", tmp_path / "vae.safetensors"
    save_emo_checkpoint(tiny_model(fps=25.0), checkpoint, vae=tiny_vae(), metadata={"training_resolution": "64"})
    other = tiny_vae()
    other.decoder.conv_out.bias.data += 0.2  # a brighter decoder: another VAE
    save_vae_file(other, standalone)
    bench = run_benchmark(checkpoint, eval_split, clips=1, seconds=0.64, steps=1, speed_clips=0, ablations=False,
                          color_match="video", log=lambda m: None)
    result = run_vae_ceiling([checkpoint, standalone], eval_split, clips=1, seconds=0.64, resolution=64,
                             color_match="video")
    rows = result["rows"]
    assert rows[str(checkpoint)] == bench["rows"]["VAE reconstruction (ceiling)"]  # the same row, the same numbers
    assert rows["ground truth renders"] == {"lip_sync": bench["rows"]["ground truth renders"]["lip_sync"]}
    assert rows[str(standalone)]["psnr"] != rows[str(checkpoint)]["psnr"]
    assert result["per_clip"]["clip_ids"] == bench["per_clip"]["clip_ids"]
    plain = run_vae_ceiling([checkpoint], eval_split, clips=1, seconds=0.64, resolution=64)
    assert plain["rows"][str(checkpoint)]["psnr"] != rows[str(checkpoint)]["psnr"]  # the colour match took part
    with pytest.raises(InputError, match="different sizes"):  # tiny_vae's sample_size is 32; the trainer's is set
        bigger = tiny_vae()
        bigger.register_to_config(sample_size=64)
        save_vae_file(bigger, tmp_path / "v64.safetensors")
        run_vae_ceiling([standalone, tmp_path / "v64.safetensors"], eval_split, clips=1, seconds=0.64)
    bare = tmp_path / "bare.safetensors"
    save_emo_checkpoint(tiny_model(fps=25.0), bare)
    with pytest.raises(InputError, match="holds no VAE"):
        run_vae_ceiling([bare], eval_split, clips=1, seconds=0.64, resolution=64)
    json_out = tmp_path / "ceiling.json"
    assert vae_ceiling_main(["--vae", str(checkpoint), "--data", str(eval_split), "--clips", "1", "--seconds", "0.64",
                             "--resolution", "64", "--json", str(json_out)]) == 0
    assert f"| {checkpoint} |" in capsys.readouterr().out
    assert json.loads(json_out.read_text())["rows"] == plain["rows"]
    assert vae_ceiling_main(["--vae", str(bare), "--data", str(eval_split), "--resolution", "64"]) == 2


def test_no_speed_sweep_leaves_the_speed_columns_empty(eval_split, tmp_path):
    checkpoint = tmp_path / "tiny.safetensors"
    save_emo_checkpoint(tiny_model(fps=25.0), checkpoint, vae=tiny_vae(), metadata={"training_resolution": "64"})
    result = run_benchmark(checkpoint, eval_split, clips=1, seconds=0.64, steps=1, speed_clips=0, log=lambda m: None)
    assert all("speed_spearman" not in values and "speed_medians" not in values for values in result["rows"].values())
    assert "psnr" in result["rows"]["EMO (full)"]
    table = format_table(result)
    assert "nan" not in table and "| no speed layers | – | – | – | – | – | – |" in table


def test_no_ablations_runs_only_the_full_model_and_compares_with_another_checkpoint(eval_split, tmp_path, monkeypatch):
    runs = []
    call = EMOPipeline.__call__
    monkeypatch.setattr(EMOPipeline, "__call__",
                        lambda self, *a, **kw: (runs.append(kw["settings"]), call(self, *a, **kw))[1])
    paths = []
    for seed in (0, 1):
        checkpoint = tmp_path / f"tiny{seed}.safetensors"
        save_emo_checkpoint(tiny_model(seed, fps=25.0), checkpoint, vae=tiny_vae(),
                            metadata={"training_resolution": "64"})
        paths.append(tmp_path / f"tiny{seed}.json")
        assert main(["--checkpoint", str(checkpoint), "--data", str(eval_split), "--clips", "1", "--seconds", "0.64",
                     "--steps", "1", "--speed-clips", "0", "--no-ablations", "--json", str(paths[-1])]) == 0
    assert len(runs) == 2 and all(s.audio_cfg != 0 and s.reuse_motion for s in runs)  # one full run per checkpoint
    results = [json.loads(p.read_text()) for p in paths]
    assert results[0]["ablations"] is False and results[0]["rows"]["no audio"] == {} and results[0]["seed"] == 0
    assert "| no motion frames | – | – | – | – | – | – |" in format_table(results[0])
    # the two checkpoints' JSONs pair clip by clip
    measures = compare([paths[0]], [paths[1]])["measures"]
    assert set(measures) == {"psnr", "ssim", "lip_sync", "continuity", "identity_gap"}
    full = [r["rows"]["EMO (full)"] for r in results]
    assert measures["psnr"]["clips"] == 1
    assert measures["psnr"]["mean_difference"] == pytest.approx(full[1]["psnr"] - full[0]["psnr"])


def test_color_match_shifts_exactly_the_measured_frames(eval_split):
    pipeline = EMOPipeline(tiny_model(fps=25.0), tiny_vae(), load_audio_encoder(packaged_whisper_tiny_dir()))
    clip = load_eval_clips(eval_split, SIZE, 1, 0.64, 25.0)[0]
    clip = dataclasses.replace(clip, mouth=clip.mouth[:10])  # fewer frames measured than generated
    plain = Runner(pipeline, SIZE, 25.0, 1, 0, 3.5).generate(clip, clip.still_mask, speed=0.0)
    matched = Runner(pipeline, SIZE, 25.0, 1, 0, 3.5, color_match="video").generate(clip, clip.still_mask, speed=0.0)
    expected = match_color(torch.from_numpy(plain), torch.from_numpy(clip.reference), "video").numpy()
    assert len(plain) == 10 and not np.array_equal(plain, matched) and np.array_equal(matched, expected)


def _mask_box(mask: torch.Tensor):
    ys, xs = np.nonzero(mask.numpy())
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def test_face_masks_are_the_face_regions_of_the_truths_scored(eval_split):
    """The model places the head by its Face Locator mask, so each run's mask must be the region of
    the truth it is scored against: the still head's own face box, and for the sweep a region that
    holds every pose a turning truth passes through, centred on the reference face."""
    clip = load_eval_clips(eval_split, SIZE, 1, 0.64, 25.0)[0]
    assert clip.max_roll == 15.0  # the generator's default --max-roll
    still = face_geometry(clip.identity, SIZE, clip.roll, clip.dx, clip.dy)
    assert np.allclose(_mask_box(clip.still_mask), still.face_box, atol=1.0)  # whole pixels
    x0, y0, x1, y1 = _mask_box(clip.turn_mask)
    for roll in (-clip.max_roll, clip.roll, clip.max_roll):
        b = face_geometry(clip.identity, SIZE, roll, clip.dx, clip.dy).face_box
        assert x0 <= b[0] + 1 and y0 <= b[1] + 1 and x1 >= b[2] - 1 and y1 >= b[3] - 1
    assert clip.turn_mask.sum() > clip.still_mask.sum() and torch.all(clip.turn_mask >= clip.still_mask)
    assert abs((x0 + x1) / 2 - still.centre[0]) <= 1.0  # a turn about the face centre stays centred on it
    # a still truth's turning region is its own box
    box = turning_region(clip.identity, 128, clip.dx, clip.dy, 0.0).numpy()
    assert np.allclose(box, face_geometry(clip.identity, 128, 0.0, clip.dx, clip.dy).face_box, atol=1e-4)


def test_detector_box_splits_score_the_same_truth_with_their_own_boxes(eval_split, detector_eval_split):
    """A split with detector boxes places its truths as the ellipse split does (the boxes' centres
    differ, the heads do not) and gives the Face Locator boxes of its own kind."""
    ellipse = load_eval_clips(eval_split, SIZE, 1, 0.64, 25.0)[0]
    clip = load_eval_clips(detector_eval_split, SIZE, 1, 0.64, 25.0)[0]
    assert (clip.roll, clip.dx, clip.dy) == pytest.approx((ellipse.roll, ellipse.dx, ellipse.dy), abs=1e-6)
    assert np.array_equal(still_renders(clip, SIZE), still_renders(ellipse, SIZE))
    still = face_geometry(clip.identity, SIZE, clip.roll, clip.dx, clip.dy)
    assert np.allclose(_mask_box(clip.still_mask), still.detector_box, atol=1.0)
    assert not np.allclose(_mask_box(clip.still_mask), still.face_box, atol=1.0)
    x0, y0, x1, y1 = _mask_box(clip.turn_mask)
    for roll in (-clip.max_roll, clip.max_roll):
        b = face_geometry(clip.identity, SIZE, roll, clip.dx, clip.dy).detector_box
        assert x0 <= b[0] + 1 and y0 <= b[1] + 1 and x1 >= b[2] - 1 and y1 >= b[3] - 1
    assert not torch.equal(clip.turn_mask, ellipse.turn_mask)


def test_default_speed_sweep_spans_the_splits_speed_range(eval_split):
    assert default_speeds(eval_split) == (0.0, 0.25, 0.5, 0.75, 1.0)  # generated with the default --max-speed 1


def test_benchmark_errors_are_clear(eval_split, tmp_path):
    checkpoint = tmp_path / "novae.safetensors"
    save_emo_checkpoint(tiny_model(), checkpoint, metadata={"training_resolution": "64"})
    with pytest.raises(InputError, match="holds no VAE"):
        run_benchmark(checkpoint, eval_split, log=lambda m: None)
    save_emo_checkpoint(tiny_model(), checkpoint, vae=tiny_vae(), metadata={"training_resolution": "64"})
    with pytest.raises(InputError, match="not a synthetic split"):
        run_benchmark(checkpoint, tmp_path, log=lambda m: None)
    with pytest.raises(InputError, match="color_match must be one of"):
        run_benchmark(checkpoint, eval_split, color_match="lab", log=lambda m: None)
    with pytest.raises(InputError, match="smaller --seconds"):
        run_benchmark(checkpoint, eval_split, seconds=5.0, log=lambda m: None)
