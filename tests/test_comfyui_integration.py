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
    from helpers import tiny_model, tiny_vae
    from test_workflows import write_speech
    base = tmp_path_factory.mktemp("comfyui")
    (base / "models/emo").mkdir(parents=True)
    (base / "custom_nodes").mkdir()
    (base / "input").mkdir()
    (base / "custom_nodes/ComfyUI-EMO").symlink_to(ROOT, target_is_directory=True)
    save_emo_checkpoint(tiny_model(), base / "models/emo/emo-demo.safetensors", vae=tiny_vae())
    from PIL import Image
    from skimage.data import astronaut
    Image.fromarray(astronaut()).save(base / "input/emo_portrait.png")
    write_speech(base / "input/emo_speech.wav", 1.0)
    (base / "extra_model_paths.yaml").write_text(
        f"emo_test:\n  base_path: {base}\n  emo: models/emo/\n  custom_nodes: custom_nodes/\n")
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
