"""The bundled demo model (models/emo/emo-demo.safetensors) running the README's main workflow on
the bundled portrait and speech, through the headless runner, as a user would; plus what it does
with inputs it was not made for."""
import dataclasses
import importlib
import json
from pathlib import Path

import numpy as np
import pytest

from emo_model.audio import load_audio
from emo_model.checkpoint import load_checkpoint_vae, load_emo_model
from emo_model.synthetic import identity_from_seed
from emo_model.synthetic.generate import SPLITS, _seed
from emo_model.synthetic.measure import mouth_opening
from emo_model.synthetic.render import face_geometry
from emo_model.synthetic.speech import mouth_curve
from emo_model.video import probe_video, read_video

PACK = importlib.import_module("emo_comfyui")
importlib.import_module("emo_comfyui.headless.cli")
cli = PACK.headless.cli
host = PACK.nodes.host
ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "models/emo/emo-demo.safetensors"
WORKFLOW = ROOT / "workflows/emo_basic.json"  # the README's main command runs this file
PORTRAIT, SPEECH = ROOT / "input/emo_portrait.png", ROOT / "input/emo_speech.wav"


@pytest.fixture
def empty_models(tmp_path):
    """Only the bundled model folder: what a fresh checkout sees."""
    previous = host.configure(models_dir=tmp_path / "models", input_dir=ROOT / "input", output_dir=tmp_path / "out")
    yield tmp_path
    host.configure(**previous.__dict__)


def _run(args, capsys):
    code = cli.main([str(WORKFLOW), "--device", "cpu", "--quiet", *args])
    return code, capsys.readouterr()


def test_demo_checkpoint_is_small_complete_and_listed_first(empty_models):
    assert DEMO.stat().st_size < 40 * 2 ** 20
    model = load_emo_model(DEMO)
    assert load_checkpoint_vae(DEMO) is not None  # ships its own VAE
    assert model.checkpoint_metadata["training_stage"] == "3"
    loader = PACK.NODE_CLASS_MAPPINGS["EMO_ModelLoader"]
    assert loader.INPUT_TYPES()["required"]["emo_checkpoint"][0][0] == "emo-demo.safetensors"


def _mouth_and_speech(out, seconds):
    """Mouth opening measured in the video, and the ground truth the training data's rule gives for the speech."""
    info = probe_video(out)
    frames = np.asarray(read_video(out).frames)
    # The portrait is identity 8 of the generator's held-out stream, drawn upright and centred: at the
    # video's size its mouth lies in face_geometry's mouth box.
    identity = identity_from_seed(_seed(0, 1, SPLITS["eval"], 8))
    measured = mouth_opening(frames, face_geometry(identity, frames.shape[1]).mouth_box)
    truth = mouth_curve(load_audio(SPEECH, 16000, duration=seconds).numpy(), info["fps"], len(frames))
    return measured, truth


# "auto" is MediaPipe where the training extras are installed (as in CI); a fresh machine with only
# requirements.txt has the scikit-image detector, which finds no cartoon face: the Face Mask node
# then uses its central fallback region, and the demo must still lip-sync.
@pytest.fixture(scope="module", params=["auto", "skimage"])
def main_video(tmp_path_factory, request):
    folder = tmp_path_factory.mktemp("demo")
    previous = host.configure(models_dir=folder / "models", input_dir=ROOT / "input", output_dir=folder / "out")
    try:
        code = cli.main([str(WORKFLOW), "--device", "cpu", "--quiet", "--output", str(folder / "demo.mp4"),
                         "--models-dir", str(folder / "models"), "--input-dir", str(ROOT / "input"),
                         "--set", "4.duration_seconds=2.0", "--set", f"6.detector={request.param}"])
    finally:
        host.configure(**previous.__dict__)
    assert code == 0
    return folder / "demo.mp4", 2.0


def test_main_workflow_animates_the_bundled_portrait_with_its_speech(main_video):
    out, seconds = main_video
    info = probe_video(out)
    assert info["frames"] == round(seconds * info["fps"]) == 50 and info["has_audio"]
    assert abs(info["audio_seconds"] - seconds) < 0.05
    measured, _ = _mouth_and_speech(out, seconds)
    assert measured.std() > 0.5 and (measured > 1.0).any() and (measured < 0.5).any()  # the mouth opens and closes


def test_main_workflow_mouth_follows_the_speech(main_video):
    measured, truth = _mouth_and_speech(*main_video)
    assert np.corrcoef(measured, truth)[0, 1] > 0.6


def test_a_photo_or_a_faceless_picture_still_runs(empty_models, capsys, caplog):
    from skimage.data import astronaut
    from PIL import Image
    photo, blank = empty_models / "photo.png", empty_models / "blank.png"
    Image.fromarray(astronaut()).save(photo)
    Image.new("RGB", (300, 200), (90, 140, 200)).save(blank)
    caplog.set_level("WARNING", logger="emo")
    for picture in (photo, blank):
        out = empty_models / f"{picture.stem}.mp4"
        code, printed = _run(["--image", str(picture), "--output", str(out), "--models-dir",
                              str(empty_models / "models"), "--set", "4.duration_seconds=0.5", "--set", "8.steps=4"],
                             capsys)
        assert code == 0, printed.err
        assert probe_video(out)["frames"] == 12
    assert "no face" in caplog.text.lower()  # the blank picture: the documented fallback region, announced


def test_unsupported_audio_is_a_clear_error_and_writes_nothing(empty_models, capsys):
    bad = empty_models / "speech.mp3"
    bad.write_text("this is not audio")
    out = empty_models / "never.mp4"
    code, printed = _run(["--audio", str(bad), "--output", str(out), "--models-dir", str(empty_models / "models")],
                         capsys)
    assert code != 0 and "speech.mp3" in printed.err
    assert "audio" in printed.err.lower() and not out.exists()


def test_demo_training_configs_reproduce_its_geometry():
    from emo_model.train.config import TrainConfig
    model = load_emo_model(DEMO)
    assert model.config.fps == 25.0  # the synthetic data's rate, which the trainer records
    # Every EMO run of scripts/train_demo_model.sh, each starting from the one before it; the last made the file.
    runs = ["stage1", "stage2", "stage3"]
    configs = [TrainConfig.from_file(ROOT / f"configs/demo/{run}.json") for run in runs]
    for config in configs:
        assert json.loads(dataclasses.replace(config.emo_config(), fps=25.0).to_json()) == json.loads(model.config.to_json())
    for before, after in zip(configs, configs[1:]):
        assert after.init_checkpoint == f"{before.output_dir}/emo.safetensors"
    assert [config.stage for config in configs] == [1, 2, 3]
    assert configs[0].vae == json.loads((ROOT / "configs/demo/vae.json").read_text())["output_dir"] + "/vae.safetensors"
    assert configs[1].trainable == ["temporal", "audio", "backbone_spatial"]  # stage 2 trains the spatial layers too
    script = (ROOT / "scripts/train_demo_model.sh").read_text()
    assert script.index("configs/demo/vae.json") < script.index("configs/demo/stage1.json") \
        < script.index("configs/demo/stage2.json") < script.index("configs/demo/stage3.json") \
        < script.index("runs/demo/stage3/emo.safetensors models/emo")
    assert model.checkpoint_metadata["training_resolution"] == str(configs[-1].resolution)


def test_demo_vae_hands_the_diffusion_model_unit_scale_latents():
    """Its scaling_factor is the one the VAE trainer measured (1 / std of its latents, as SD's 0.18215 is
    for SD's VAE), so the noise schedule meets the signal level it was designed for."""
    from emo_model.image import prepare_image
    from emo_model.vae import LatentCodec
    from PIL import Image
    assert "scaling_factor" not in json.loads((ROOT / "configs/demo/vae.json").read_text())  # measured, not pinned
    codec = LatentCodec(load_checkpoint_vae(DEMO))
    resolution = int(load_emo_model(DEMO).checkpoint_metadata["training_resolution"])
    latents = codec.encode(prepare_image(Image.open(PORTRAIT), resolution, resolution)[None])
    assert 0.6 < float(latents.std()) < 1.6, float(latents.std())
