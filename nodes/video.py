"""EMO Video Combine: frames + audio → an H.264/AAC mp4 in the output folder, and a core VIDEO."""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path

from ..emo_model.errors import InputError
from ..emo_model.video import write_video
from . import host


@dataclass(frozen=True)
class VideoFile:
    """Standalone stand-in for ComfyUI's VideoFromFile: the written file."""
    path: Path

    def get_stream_source(self) -> str:
        return str(self.path)


def next_video_path(prefix: str) -> tuple[Path, str]:
    """`<output>/<subfolder>/<name>_00001.mp4` with the next free counter, and the subfolder."""
    if not prefix or prefix.startswith(("/", "\\")) or ".." in Path(prefix).parts:
        raise InputError(f"filename_prefix {prefix!r} must be a relative name inside the output folder")
    root = host.output_dir()
    target = root / prefix
    folder, name = target.parent, target.name
    pattern = re.compile(re.escape(name) + r"_(\d{5})\.mp4$")
    counters = [int(m.group(1)) for p in (folder.iterdir() if folder.is_dir() else ()) if (m := pattern.match(p.name))]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create the output folder {folder}: {e.strerror}. Choose another "
                         "filename_prefix or fix the folder's permissions.") from None
    path = folder / f"{name}_{max(counters, default=0) + 1:05d}.mp4"
    return path, "" if folder == root else folder.relative_to(root).as_posix()


def _video_output(path: Path):
    """Core VIDEO (VideoFromFile) inside ComfyUI, so SaveVideo/GetVideoComponents accept it."""
    if host.in_comfyui():
        try:
            return importlib.import_module("comfy_api.latest").InputImpl.VideoFromFile(str(path))
        except (ImportError, AttributeError):
            pass
    return VideoFile(path)


class EMO_VideoCombine:
    DESCRIPTION = ("Writes the frames and the audio as an H.264/AAC mp4 into ComfyUI's output folder (atomically: "
                   "no half-written file on cancel or error). The audio is cut or padded to the video's length.")
    CATEGORY = "EMO"
    RETURN_TYPES = ("VIDEO",)
    RETURN_NAMES = ("video",)
    OUTPUT_TOOLTIPS = ("The written video (core VIDEO: connect to SaveVideo, GetVideoComponents, ...).",)
    OUTPUT_NODE = True
    FUNCTION = "combine"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE", {"tooltip": "The frames (from EMO Sampler, an upscaler, ...)."}),
            "fps": ("FLOAT", {"default": 25.0, "min": 0.01, "max": 240.0, "step": 0.01,
                              "tooltip": "Frame rate; connect the EMO Sampler's fps output."}),
            "filename_prefix": ("STRING", {"default": "EMO/emo", "tooltip": "File name inside the output folder; "
                                                                           "a counter and .mp4 are appended."}),
            "crf": ("INT", {"default": 19, "min": 0, "max": 51, "tooltip": "H.264 quality: lower is better and "
                                                                           "bigger (17-23 is typical)."}),
        }, "optional": {
            "audio": ("AUDIO", {"tooltip": "Soundtrack (EMO Audio Encode's audio output matches the frames)."}),
        }}

    def combine(self, images, fps, filename_prefix, crf, audio=None):
        if fps <= 0:
            raise InputError(f"fps must be > 0, got {fps}")
        path, subfolder = next_video_path(filename_prefix)
        waveform = rate = None
        if audio is not None:
            waveform, rate = audio["waveform"][0], int(audio["sample_rate"])
        write_video(path, images, fps, waveform, rate, crf=crf)
        preview = {"filename": path.name, "subfolder": subfolder, "type": "output"}
        return {"ui": {"images": [preview], "animated": (True,)}, "result": (_video_output(path),)}
