"""Opt-in: the pack inside a real ComfyUI server (skipped unless EMO_COMFYUI_DIR points at a ComfyUI checkout).

    EMO_COMFYUI_DIR=/path/to/ComfyUI [EMO_COMFYUI_PYTHON=/path/to/its/venv/bin/python] pytest tests/test_comfyui_integration.py

The test links this repo into a temporary custom_nodes folder (through extra_model_paths.yaml, so
the checkout is not modified), starts ComfyUI on 127.0.0.1 with temporary model/input/output
folders holding a tiny EMO model, checks /object_info lists every EMO node, submits the basic
example workflow through the headless runner's --server mode, and checks the mp4 it downloads.
"""
import importlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

COMFYUI = os.environ.get("EMO_COMFYUI_DIR")
pytestmark = pytest.mark.skipif(not COMFYUI, reason="set EMO_COMFYUI_DIR to a ComfyUI checkout to run")

ROOT = Path(__file__).resolve().parents[1]
PACK = sys.modules["emo_comfyui"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from emo_model.checkpoint import save_emo_checkpoint
    from helpers import tiny_model, tiny_vae, write_wav
    base = tmp_path_factory.mktemp("comfyui")
    (base / "models/emo").mkdir(parents=True)
    (base / "custom_nodes").mkdir()
    (base / "input").mkdir()
    (base / "custom_nodes/ComfyUI-EMO").symlink_to(ROOT, target_is_directory=True)
    save_emo_checkpoint(tiny_model(), base / "models/emo/emo-demo.safetensors", vae=tiny_vae())
    # SD1.5-geometry VAE (random weights) in both the EMO checkpoint and models/vae: core VAEDecode interop
    from diffusers import AutoencoderKL
    from safetensors.torch import save_file
    from emo_model.weights.sd15 import SD15_VAE_CONFIG
    torch.manual_seed(0)
    sd15_vae = AutoencoderKL.from_config(SD15_VAE_CONFIG).eval()
    save_emo_checkpoint(tiny_model(), base / "models/emo/emo-sd15-vae.safetensors", vae=sd15_vae)
    (base / "models/vae").mkdir()
    save_file(sd15_vae.state_dict(), base / "models/vae/sd15_vae.safetensors")
    from PIL import Image
    from skimage.data import astronaut
    Image.fromarray(astronaut()).save(base / "input/emo_portrait.png")
    write_wav(base / "input/emo_speech.wav", 1.0)
    (base / "extra_model_paths.yaml").write_text(
        f"emo_test:\n  base_path: {base}\n  emo: models/emo/\n  vae: models/vae/\n  custom_nodes: custom_nodes/\n")
    port = free_port()
    python = os.environ.get("EMO_COMFYUI_PYTHON", sys.executable)
    log = open(base / "comfyui.log", "w")
    process = subprocess.Popen(
        [python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--disable-api-nodes",
         "--preview-method", "latent2rgb", "--extra-model-paths-config", str(base / "extra_model_paths.yaml"), "--input-directory", str(base / "input"),
         "--output-directory", str(base / "output")], cwd=COMFYUI, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            if process.poll() is not None:
                pytest.fail(f"ComfyUI exited: {(base / 'comfyui.log').read_text()[-3000:]}")
            try:
                get(url + "/system_stats")
                break
            except (urllib.error.URLError, OSError):
                time.sleep(1)
        else:
            pytest.fail("ComfyUI did not answer within 240 s")
        yield url, base
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def test_object_info_lists_every_emo_node(server):
    url, base = server
    info = get(url + "/object_info", timeout=60)
    missing = set(PACK.NODE_CLASS_MAPPINGS) - set(info)
    assert not missing, f"not registered: {missing}; log: {(base / 'comfyui.log').read_text()[-3000:]}"
    assert "emo-demo.safetensors" in info["EMO_ModelLoader"]["input"]["required"]["emo_checkpoint"][0]
    assert "IMPORT FAILED" not in (base / "comfyui.log").read_text()
    version = get(url + "/system_stats")["system"].get("comfyui_version")
    print(f"ComfyUI {version}")


def test_basic_workflow_runs_in_comfyui_and_the_video_comes_back(server, tmp_path):
    url, base = server
    cli = importlib.import_module("emo_comfyui.headless.cli")
    from emo_model.video import probe_video
    out = tmp_path / "from_comfyui.mp4"
    sets = ["7.width=64", "7.height=64", "8.steps=2", "8.frames_per_clip=4", "8.motion_frame_count=2"]
    code = cli.main([str(ROOT / "workflows/api/emo_basic.json"), "--server", url, "--output", str(out),
                     "--timeout", "600", "--quiet", *[a for s in sets for a in ("--set", s)]])
    assert code == 0, (base / "comfyui.log").read_text()[-3000:]
    info = probe_video(out)
    assert info["frames"] == 25 and info["has_audio"]  # 1 s of speech at 25 fps
    written = list((base / "output/EMO").glob("emo_*.mp4"))
    assert len(written) == 1 and not list((base / "output").rglob("*.part*"))


def test_invalid_values_are_rejected_by_comfyui_validation(server):
    url, _ = server
    prompt = json.loads((ROOT / "workflows/api/emo_basic.json").read_text())
    prompt["8"]["inputs"]["steps"] = 0
    request = urllib.request.Request(url + "/prompt", data=json.dumps({"prompt": prompt}).encode(),
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=30)
    assert error.value.code == 400 and "steps" in error.value.read().decode()


def test_cancel_stops_the_sampler_within_a_step_and_leaves_no_file(server):
    url, base = server
    client = importlib.import_module("emo_comfyui.headless.server").ComfyClient(url)
    prompt = json.loads((ROOT / "workflows/api/emo_basic.json").read_text())
    prompt["7"]["inputs"].update(width=64, height=64)
    prompt["8"]["inputs"].update(steps=1000, frames_per_clip=4, motion_frame_count=2, seed=7)
    prompt["9"]["inputs"]["filename_prefix"] = "EMO/cancelled"
    prompt_id = client.queue(prompt)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not get(url + "/queue")["queue_running"]:
        time.sleep(0.5)
    time.sleep(3)  # loaders and encoders take about a second: by now the sampler is stepping
    urllib.request.urlopen(urllib.request.Request(url + "/interrupt", data=b"", method="POST"), timeout=10)
    start = time.monotonic()
    while time.monotonic() - start < 60:
        entry = get(url + f"/history/{prompt_id}").get(prompt_id)
        if entry:
            break
        time.sleep(0.5)
    assert entry is not None, "the interrupted prompt did not finish within 60 s"
    assert time.monotonic() - start < 30  # stopped within a step, not after 1000 x clips steps
    assert entry["status"]["status_str"] == "error"
    assert any(m[0] == "execution_interrupted" for m in entry["status"]["messages"])
    assert not list((base / "output").rglob("cancelled*")) and not list((base / "output").rglob("*.part*"))


def test_core_nodes_interoperate_with_emo_nodes(server, tmp_path):
    """core LoadAudio → AudioEncode; Sampler LATENT → core VAEDecode (SD1.5 VAE); VideoCombine's VIDEO →
    core GetVideoComponents; portrait without a face mask (automatic detection)."""
    url, base = server
    cli = importlib.import_module("emo_comfyui.headless.cli")
    from emo_model.video import read_video
    prompt = {
        "1": {"class_type": "EMO_ModelLoader", "inputs": {"emo_checkpoint": "emo-sd15-vae.safetensors",
              "base_unet": "(none)", "motion_module": "(none)", "vae": "(from EMO checkpoint)", "precision": "fp32"}},
        "2": {"class_type": "EMO_AudioEncoderLoader", "inputs": {"encoder": "whisper-tiny.en (packaged)"}},
        "3": {"class_type": "LoadImage", "inputs": {"image": "emo_portrait.png"}},
        "4": {"class_type": "LoadAudio", "inputs": {"audio": "emo_speech.wav"}},
        "5": {"class_type": "EMO_AudioEncode", "inputs": {"audio": ["4", 0], "fps": 25.0, "audio_encoder": ["2", 0]}},
        "7": {"class_type": "EMO_ReferenceNet", "inputs": {"emo_model": ["1", 0], "image": ["3", 0], "width": 64,
              "height": 64, "resize_mode": "crop"}},
        "8": {"class_type": "EMO_Sampler", "inputs": {"emo_model": ["1", 0], "reference": ["7", 0],
              "audio_embeds": ["5", 0], "seed": 1, "steps": 2, "scheduler": "ddim", "reference_cfg": 2.5,
              "audio_cfg": 3.5, "frames_per_clip": 4, "motion_frame_count": 2, "speed": 0.5}},
        "9": {"class_type": "EMO_VideoCombine", "inputs": {"images": ["8", 0], "fps": ["8", 2],
              "filename_prefix": "interop/ours", "crf": 10, "audio": ["5", 2]}},
        "10": {"class_type": "GetVideoComponents", "inputs": {"video": ["9", 0]}},
        "11": {"class_type": "EMO_VideoCombine", "inputs": {"images": ["10", 0], "fps": ["10", 2],
               "filename_prefix": "interop/roundtrip", "crf": 10, "audio": ["10", 1]}},
        "12": {"class_type": "VAELoader", "inputs": {"vae_name": "sd15_vae.safetensors"}},
        "13": {"class_type": "VAEDecode", "inputs": {"samples": ["8", 1], "vae": ["12", 0]}},
        "14": {"class_type": "EMO_VideoCombine", "inputs": {"images": ["13", 0], "fps": ["8", 2],
               "filename_prefix": "interop/vaedecoded", "crf": 10, "audio": ["5", 2]}},
    }
    path = tmp_path / "interop.json"
    path.write_text(json.dumps(prompt))
    code = cli.main([str(path), "--server", url, "--output-dir", str(tmp_path / "got"), "--timeout", "600", "--quiet"])
    assert code == 0, (base / "comfyui.log").read_text()[-3000:]
    videos = {p.name.split("_")[0]: read_video(p) for p in (tmp_path / "got").glob("*.mp4")}
    assert set(videos) == {"ours", "roundtrip", "vaedecoded"}
    assert {v.frames.shape[0] for v in videos.values()} == {25} and all(v.audio is not None for v in videos.values())
    ours = videos["ours"].frames.astype(float)
    assert abs(ours - videos["vaedecoded"].frames).mean() < 3  # same latents, same VAE, in ComfyUI's decoder
    # a second H.264 4:2:0 encode of these noise-like (untrained model) frames: chroma loss only
    assert abs(ours - videos["roundtrip"].frames).mean() < 10


CHROMIUM = os.environ.get("EMO_CHROMIUM", "/usr/bin/chromium")


@pytest.mark.parametrize("name", ["emo_basic", "emo_long_audio", "emo_composition"])
def test_ui_workflow_loads_in_the_frontend_unchanged_and_converts_to_its_api_twin(server, name):
    """The UI files in the real frontend (headless Chromium + Playwright, opt-in like the rest): after
    loadGraphData, serialize() gives the file back (but for the graph's random id and the upload
    button's value) and graphToPrompt() gives exactly the API file."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (set EMO_CHROMIUM)")
    url, _ = server
    ui = json.loads((ROOT / "workflows" / f"{name}.json").read_text())
    api = json.loads((ROOT / "workflows/api" / f"{name}.json").read_text())
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.goto(url, wait_until="networkidle")
            page.wait_for_function("window.app && window.app.graph", timeout=60000)
            page.evaluate("async (w) => { await window.app.loadGraphData(w); }", ui)
            serialized = page.evaluate("() => window.app.graph.serialize()")
            prompt = page.evaluate("async () => (await window.app.graphToPrompt()).output")
        finally:
            browser.close()
    assert {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in prompt.items()} == \
        {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in api.items()}

    def comparable(graph):
        nodes = []
        for node in graph["nodes"]:
            node = dict(node)
            named = {k: v for k, v in (node.pop("widgets_values_named", None) or {}).items() if k != "upload"}
            values = [v for v in node.pop("widgets_values", []) if v not in ("", None)]
            nodes.append((node, named, values))
        return sorted(nodes, key=lambda n: n[0]["id"]), graph["links"]

    assert comparable(serialized) == comparable(ui)
