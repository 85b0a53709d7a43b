"""The example workflows: valid against the nodes, UI and API formats agree, and they run headless."""
import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import save_file

import torch
from emo_model.checkpoint import save_emo_checkpoint
from emo_model.video import probe_video, read_video
from helpers import tiny_model, tiny_vae, write_wav

PACK = sys.modules["emo_comfyui"]
importlib.import_module("emo_comfyui.headless.cli")  # not imported by the pack itself: runner only
ROOT = Path(__file__).resolve().parents[1]
API = sorted((ROOT / "workflows/api").glob("*.json"))
UI = sorted((ROOT / "workflows").glob("*.json"))
cli = PACK.headless.cli
workflow = PACK.headless.workflow
host = PACK.nodes.host
NODE_CLASSES = {**PACK.headless.core_nodes.CORE_NODES, **PACK.NODE_CLASS_MAPPINGS}
CORE_SNAPSHOT = Path(__file__).parent / "data/comfyui_core_object_info.json"
TINY = ["--set", "7.width=64", "--set", "7.height=64"]


def tiny_sampler(*ids):
    args = []
    for i in ids:
        args += ["--set", f"{i}.steps=2", "--set", f"{i}.frames_per_clip=4", "--set", f"{i}.motion_frame_count=2"]
    return args


def referenced(prompt, class_type, name):
    return {n["inputs"][name] for n in prompt.values() if n["class_type"] == class_type}


@pytest.fixture(scope="module")
def comfy_dirs(tmp_path_factory):
    """A ComfyUI-like folder with every file the example workflows name (tiny stand-ins)."""
    root = tmp_path_factory.mktemp("workflows")
    (root / "models/emo").mkdir(parents=True)
    (root / "models/loras").mkdir(parents=True)
    (root / "input").mkdir()
    prompts = [json.loads(p.read_text()) for p in API]
    checkpoint = root / "tiny.safetensors"
    save_emo_checkpoint(tiny_model(), checkpoint, vae=tiny_vae())
    for name in set().union(*(referenced(p, "EMO_ModelLoader", "emo_checkpoint") for p in prompts)):
        shutil.copy(checkpoint, root / "models/emo" / name)
    layer = tiny_model().backbone.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_v
    key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_v"
    for name in set().union(*(referenced(p, "EMO_LoraLoader", "lora_name") for p in prompts)):
        save_file({f"{key}.lora_down.weight": torch.randn(2, layer.in_features),
                   f"{key}.lora_up.weight": torch.randn(layer.out_features, 2)}, root / "models/loras" / name)
    from skimage.data import astronaut
    from PIL import Image
    for name in set().union(*(referenced(p, "LoadImage", "image") for p in prompts)):
        Image.fromarray(astronaut()).save(root / "input" / name)
    for name in set().union(*(referenced(p, "EMO_LoadAudio", "audio") for p in prompts)):
        write_wav(root / "input" / name, 1.0)
    previous = host.configure(models_dir=root / "models", input_dir=root / "input", output_dir=root / "output")
    yield root
    host.configure(**previous.__dict__)


def test_there_are_basic_long_audio_and_composition_workflows_in_both_formats():
    names = {p.stem for p in API}
    assert {"emo_basic", "emo_long_audio", "emo_composition"} <= names
    assert {p.stem for p in UI} == names


@pytest.mark.parametrize("path", API, ids=lambda p: p.stem)
def test_api_workflow_is_valid(path, comfy_dirs):
    prompt = json.loads(path.read_text())
    assert workflow.validate(prompt, NODE_CLASSES) == []
    for node in prompt.values():  # every widget value is checked by a node's own check or the list above
        cls = NODE_CLASSES[node["class_type"]]
        if hasattr(cls, "VALIDATE_INPUTS"):
            args = workflow._custom_validated(cls)
            assert cls.VALIDATE_INPUTS(**{k: v for k, v in node["inputs"].items() if k in args}) is True


@pytest.mark.parametrize("path", UI, ids=lambda p: p.stem)
def test_ui_workflow_converts_to_its_api_twin(path, comfy_dirs):
    ui = json.loads(path.read_text())
    api = json.loads((ROOT / "workflows/api" / path.name).read_text())
    converted = workflow.ui_to_api(ui, NODE_CLASSES)
    assert converted == {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in api.items()}


def test_core_nodes_the_workflows_use_match_real_comfyui():
    """Our stand-ins for core nodes have ComfyUI's ids, inputs and outputs (snapshot of its /object_info)."""
    snapshot = json.loads(CORE_SNAPSHOT.read_text())
    for name, cls in PACK.headless.core_nodes.CORE_NODES.items():
        real = snapshot[name]
        ours = cls.INPUT_TYPES()
        assert list(ours["required"]) == list(real["input"]["required"]), name
        assert list(cls.RETURN_TYPES) == real["output"], name
        for key, spec in ours["required"].items():
            if isinstance(spec[0], list) and name != "LoadImage":
                assert spec[0] == real["input"]["required"][key][0], (name, key)


def test_validation_rejects_what_comfyui_rejects(comfy_dirs):
    prompt = json.loads((ROOT / "workflows/api/emo_basic.json").read_text())
    bad = cli.apply_overrides(prompt, sets=["8.steps=0", "5.fps=0", "8.frames_per_clip=0", "8.scheduler=\"magic\"",
                                            "9.images=[\"99\", 0]", "7.reference=1"])
    errors = "\n".join(workflow.validate(bad, NODE_CLASSES))
    for expected in ("steps=0 is below the minimum 1", "fps=0 is below the minimum", "frames_per_clip=0",
                     "'magic' is not one of the choices", "missing node 99", "unknown input 'reference'"):
        assert expected in errors
    wrong_type = cli.apply_overrides(prompt, sets=["9.audio=[\"7\", 0]"])
    assert "expects AUDIO, node 7 output 0 is EMO_REFERENCE" in "\n".join(workflow.validate(wrong_type, NODE_CLASSES))


def _run(args, capsys):
    code = cli.main(args)
    return code, capsys.readouterr()


def test_basic_workflow_runs_headless_and_writes_a_video_with_sound(comfy_dirs, tmp_path, capsys):
    out = tmp_path / "video/basic.mp4"
    code, printed = _run([str(ROOT / "workflows/api/emo_basic.json"), "--output", str(out), "--models-dir",
                          str(comfy_dirs / "models"), "--input-dir", str(comfy_dirs / "input"), "--device", "cpu",
                          *TINY, *tiny_sampler(8)], capsys)
    assert code == 0, printed.err
    assert printed.out.strip() == str(out) and "steps" in printed.err  # the progress bar
    info = probe_video(out)
    assert info["frames"] == 25 and info["has_audio"] and abs(info["fps"] - 25) < 1e-6  # 1 s of audio x 25 fps
    assert sorted(p.name for p in out.parent.iterdir()) == ["basic.mp4"]  # staging folder removed


def test_long_audio_workflow_joins_two_segments_seamlessly(comfy_dirs, tmp_path, capsys):
    out = tmp_path / "long.mp4"
    code, printed = _run([str(ROOT / "workflows/api/emo_long_audio.json"), "--output", str(out), "--models-dir",
                          str(comfy_dirs / "models"), "--input-dir", str(comfy_dirs / "input"), "--device", "cpu",
                          "--set", "4.duration_seconds=0.6", "--set", "10.start_seconds=0.6", *TINY,
                          *tiny_sampler(8, 13)], capsys)
    assert code == 0, printed.err
    video = read_video(out)
    assert video.frames.shape[0] == 25 and video.audio is not None  # 15 + 10 frames, the whole second of sound


def test_composition_workflow_applies_lora_and_upscales(comfy_dirs, tmp_path, capsys, caplog):
    out = tmp_path / "styled.mp4"
    caplog.set_level("INFO", logger="emo")
    code, printed = _run([str(ROOT / "workflows/api/emo_composition.json"), "--output", str(out), "--models-dir",
                          str(comfy_dirs / "models"), "--input-dir", str(comfy_dirs / "input"), "--device", "cpu",
                          *TINY, *tiny_sampler(8)], capsys)
    assert code == 0, printed.err
    info = probe_video(out)
    assert (info["width"], info["height"], info["frames"]) == (128, 128, 25)
    assert "Backbone: LoRA 'sd15_style_lora': 1 layers patched" in caplog.text


def test_runner_errors_are_clear_and_leave_nothing_behind(comfy_dirs, tmp_path, capsys):
    out = tmp_path / "never.mp4"
    code, printed = _run([str(ROOT / "workflows/api/emo_basic.json"), "--output", str(out), "--models-dir",
                          str(tmp_path / "empty_models"), "--input-dir", str(comfy_dirs / "input"),
                          "--set", "1.emo_checkpoint=missing.safetensors"], capsys)
    assert code == 2 and "not one of the choices" in printed.err and "emo_checkpoint" in printed.err
    code, printed = _run([str(ROOT / "workflows/api/emo_basic.json"), "--output", str(out), "--set", "8.steps=0",
                          "--models-dir", str(comfy_dirs / "models"), "--input-dir", str(comfy_dirs / "input")], capsys)
    assert code == 2 and "steps=0 is below the minimum 1" in printed.err
    code, printed = _run([str(ROOT / "workflows/api/emo_basic.json"), "--audio", str(tmp_path / "nope.wav")], capsys)
    assert code == 2 and "nope.wav: no such file" in printed.err
    assert list(tmp_path.iterdir()) == []


def test_runner_script_loads_the_pack_from_any_folder(comfy_dirs, tmp_path):
    """`python run_workflow.py` from elsewhere: the pack imports as a package, never via sys.path."""
    speech = tmp_path / "my speech.wav"
    write_wav(speech, 0.5)
    out = tmp_path / "cli.mp4"
    run = subprocess.run([sys.executable, str(ROOT / "run_workflow.py"), str(ROOT / "workflows/api/emo_basic.json"),
                          "--audio", str(speech), "--output", str(out), "--models-dir", str(comfy_dirs / "models"),
                          "--input-dir", str(comfy_dirs / "input"), "--quiet", *TINY, *tiny_sampler(8)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert probe_video(out)["frames"] == 12  # 0.5 s x 25 fps
