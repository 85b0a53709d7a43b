"""`python run_workflow.py WORKFLOW [options]`: run an EMO workflow without the ComfyUI server, or
submit it to a running ComfyUI (`--server URL`) and download the video.

Overrides: --image / --audio replace the files of the LoadImage / audio-loading nodes, --output
names the mp4 to write, --set NODE.INPUT=VALUE changes any input (VALUE is JSON, else a string).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from ..emo_model.errors import EMOError
from ..nodes import NODE_CLASS_MAPPINGS, host
from .core_nodes import CORE_NODES
from .executor import run_prompt
from .server import ComfyClient, ServerError, written_files
from .workflow import WorkflowError, classes_from_object_info, load_workflow

IMAGE_LOADERS = {"LoadImage": "image"}
AUDIO_LOADERS = {"EMO_LoadAudio": "audio", "LoadAudio": "audio"}


class TerminalProgress:
    """A one-line progress bar on stderr for the denoising steps."""

    def __init__(self, width: int = 30):
        self.width, self.start = width, None

    def __call__(self, done: int, total: int) -> None:
        stream = sys.stderr
        if self.start is None or done == 1:
            self.start = time.monotonic()
        elapsed = time.monotonic() - self.start
        filled = round(self.width * done / max(total, 1))
        eta = elapsed / max(done, 1) * (total - done)
        stream.write(f"\r  [{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} steps "
                          f"{elapsed:5.0f}s elapsed, {eta:4.0f}s left")
        if done >= total:
            stream.write("\n")
        stream.flush()


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="run_workflow.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workflow", type=Path, help="workflow JSON (ComfyUI UI or API format)")
    p.add_argument("--image", type=Path, help="portrait for the LoadImage node(s)")
    p.add_argument("--audio", type=Path, help="speech/singing file for the audio loader node(s)")
    p.add_argument("--output", type=Path, help="write the video to this .mp4 path")
    p.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=VALUE", help="override any input")
    p.add_argument("--models-dir", type=Path, default=Path(os.environ.get("EMO_MODELS_DIR", "models")),
                   help="folder laid out like ComfyUI/models (emo/, checkpoints/, vae/, audio_encoders/, loras/); "
                        "the pack's bundled models are always available (default: ./models)")
    p.add_argument("--input-dir", type=Path, default=Path("input"), help="ComfyUI-style input folder (default ./input)")
    p.add_argument("--output-dir", type=Path, default=Path("output"), help="output folder (default ./output)")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--server", metavar="URL", help="submit to this running ComfyUI (e.g. http://127.0.0.1:8188) "
                                                   "instead of running here")
    p.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the server (default 3600)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p.parse_args(argv)


def apply_overrides(prompt: dict, image=None, audio=None, sets=()) -> dict:
    prompt = json.loads(json.dumps(prompt))
    for path, loaders, what in ((image, IMAGE_LOADERS, "image"), (audio, AUDIO_LOADERS, "audio")):
        if path is None:
            continue
        targets = [n for n in prompt.values() if n["class_type"] in loaders]
        if not targets:
            raise WorkflowError(f"--{what} given, but the workflow has no {'/'.join(loaders)} node")
        for node in targets:
            node["inputs"][loaders[node["class_type"]]] = str(path)
    for item in sets:
        target, _, raw = item.partition("=")
        node_id, _, name = target.partition(".")
        if node_id not in prompt or not name or not _:
            raise WorkflowError(f"--set {item!r}: expected NODE_ID.INPUT=VALUE with a node id of the workflow "
                                f"({', '.join(sorted(prompt))})")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        prompt[node_id]["inputs"][name] = value
    return prompt


def run_local(prompt: dict, node_classes: dict, args) -> list[Path]:
    """Execute here; returns the videos written."""
    for path, what in ((args.image, "image"), (args.audio, "audio")):
        if path is not None and not path.is_file():
            raise WorkflowError(f"--{what} {path}: no such file")
    staging = None
    output_dir = args.output_dir
    if args.output is not None:  # write next to the target, then rename: atomic, same filesystem
        args.output.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".emo-run-", dir=args.output.parent))
        output_dir = staging
    previous = host.configure(models_dir=args.models_dir, input_dir=args.input_dir, output_dir=output_dir,
                              device=args.device, progress=None if args.quiet else TerminalProgress())

    def announce(node_id, class_type):
        if not args.quiet:
            print(f"[{node_id}] {class_type}", file=sys.stderr, flush=True)

    try:
        result = run_prompt(prompt, node_classes, on_node=announce)
        videos = [Path(output_dir) / i.get("subfolder", "") / i["filename"]
                  for ui in result.ui.values() for i in ui.get("images", [])]
        if args.output is not None:
            if len(videos) != 1:
                raise WorkflowError(f"--output needs exactly one video written, the workflow wrote {len(videos)}")
            os.replace(videos[0], args.output)
            videos = [args.output]
        return videos
    finally:
        host.configure(**previous.__dict__)
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def run_on_server(prompt: dict, args) -> list[Path]:
    client = ComfyClient(args.server)
    for node in prompt.values():  # local files go to the server's input folder first
        for loaders in (IMAGE_LOADERS, AUDIO_LOADERS):
            key = loaders.get(node["class_type"])
            if key and Path(str(node["inputs"].get(key, ""))).is_file():
                node["inputs"][key] = client.upload(Path(node["inputs"][key]))
    prompt_id = client.queue(prompt)

    def waiting(seconds):
        if not args.quiet:
            print(f"\r  waiting for ComfyUI: {seconds:5.0f}s", end="", file=sys.stderr, flush=True)

    entry = client.wait(prompt_id, args.timeout, waiting)
    if not args.quiet:
        print(file=sys.stderr)
    files = [f for f in written_files(entry) if f["filename"].endswith(".mp4")]
    if args.output is not None:
        if len(files) != 1:
            raise WorkflowError(f"--output needs exactly one video written, ComfyUI wrote {len(files)}")
        args.output.parent.mkdir(parents=True, exist_ok=True)
        return [client.download(files[0], args.output)]
    args.output_dir.mkdir(parents=True, exist_ok=True)
    return [client.download(f, args.output_dir / f["filename"]) for f in files]


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    node_classes = {**CORE_NODES, **NODE_CLASS_MAPPINGS}
    try:
        if args.server:  # the server knows every node of its install, core ones included
            node_classes = classes_from_object_info(ComfyClient(args.server).get_json("/object_info"))
        prompt = apply_overrides(load_workflow(args.workflow, node_classes), args.image, args.audio, args.set)
        videos = run_on_server(prompt, args) if args.server else run_local(prompt, node_classes, args)
    except (WorkflowError, EMOError, ServerError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ncancelled: no partial video was left behind", file=sys.stderr)
        return 130
    for video in videos:
        print(video)
    return 0
