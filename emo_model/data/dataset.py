"""The prepared dataset on disk: writing clips and the index, reading them back for the trainer.

See the package docstring for the layout. Every file is written atomically (temp file + rename), and
a clip's .safetensors is written after its .mp4, so its presence alone means "this clip is done".
"""
from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from ..atomic import write_text_atomic
from ..errors import EMOError
from ..video import write_video
from ..weights.files import write_safetensors

FORMAT = "emo-dataset/1"
INDEX = "index.json"
CLIPS = "clips"
TENSORS = ("face_boxes", "face_region", "rotation", "speed", "audio_features", "audio")


class DatasetError(EMOError, ValueError):
    """A prepared dataset folder is missing, empty, corrupt or of another format."""


def clip_paths(root: Path, clip_id: str) -> tuple[Path, Path]:
    """(mp4, safetensors) of a clip."""
    return root / CLIPS / f"{clip_id}.mp4", root / CLIPS / f"{clip_id}.safetensors"


def clip_done(root: Path, clip_id: str) -> bool:
    return clip_paths(root, clip_id)[1].is_file()


def write_clip(root: Path, clip_id: str, frames: np.ndarray, fps: float, tensors: dict[str, torch.Tensor],
               metadata: dict[str, str]) -> None:
    """The clip's video (with its 16 kHz audio) first, then its tensors: the latter marks it done."""
    mp4, st = clip_paths(root, clip_id)
    mp4.parent.mkdir(parents=True, exist_ok=True)
    # The trainer reads its frames from this file: crf 17 keeps them visually lossless; "veryfast" halves
    # the encoding time of "medium" (the biggest cost of preparation) at a slightly larger file.
    write_video(mp4, frames, fps, audio=tensors["audio"].numpy(), sample_rate=16000, crf=17, preset="veryfast")
    write_safetensors(tensors, st, metadata={"format": FORMAT, **metadata})


def write_index(root: Path, index: dict) -> None:
    write_text_atomic(root / INDEX, json.dumps(index, indent=1))


def read_index(root: Path) -> dict | None:
    """The index if the folder has a readable one of this format, else None (data preparation starts afresh)."""
    try:
        index = json.loads((Path(root) / INDEX).read_text())
    except (OSError, ValueError):
        return None
    return index if isinstance(index, dict) and index.get("format") == FORMAT else None


def load_index(root) -> dict:
    """The index of a prepared dataset, checked: format, at least one clip, every clip's files present.

    Raises DatasetError naming the folder and what to do.
    """
    root = Path(root)
    prepare = f"Prepare it with: python -m emo_model.data.prepare VIDEOS_DIR {root}"
    if not root.is_dir():
        raise DatasetError(f"Dataset folder {root} does not exist. {prepare}")
    path = root / INDEX
    if not path.is_file():
        raise DatasetError(f"{root} has no {INDEX}: it is not a prepared EMO dataset (or preparation never "
                           f"finished a video). {prepare}")
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path} is corrupt ({e}). Delete it and run the preparation again; finished "
                           f"clips are kept. {prepare}") from e
    if not isinstance(index, dict) or index.get("format") != FORMAT or not isinstance(index.get("clips"), list):
        raise DatasetError(f"{path} is not an {FORMAT} index. {prepare}")
    if not index["clips"]:
        reasons = sorted({s.get("reason", "?") for s in index.get("skipped", [])})
        raise DatasetError(f"Dataset {root} has no clips" + (f" (skipped: {'; '.join(reasons)})" if reasons else "")
                           + ". Add talking-head videos with one clear face and speech, 3 s or longer, and "
                           "prepare again.")
    missing = [c["id"] for c in index["clips"] if not all(p.is_file() for p in clip_paths(root, c["id"]))]
    if missing:
        raise DatasetError(f"Dataset {root} lacks the files of {len(missing)} clip(s), e.g. {missing[0]}. "
                           f"Run the preparation again to rebuild them. {prepare}")
    return index


def read_clip(root, clip_id: str) -> dict:
    """A clip's tensors (see TENSORS) plus "metadata" (dict of str)."""
    _, st = clip_paths(Path(root), clip_id)
    if not st.is_file():
        raise DatasetError(f"Clip {clip_id} not found in {root} ({st} is missing). Run the preparation again.")
    try:
        with safe_open(str(st), framework="pt") as f:
            out = {k: f.get_tensor(k) for k in f.keys()}
            out["metadata"] = dict(f.metadata() or {})
    except (SafetensorError, OSError) as e:
        raise DatasetError(f"Clip file {st} is corrupt ({e}). Delete it and run the preparation again "
                           "to rebuild it.") from e
    absent = [k for k in TENSORS if k not in out]
    if absent or out["metadata"].get("format") != FORMAT:
        raise DatasetError(f"Clip file {st} is not an {FORMAT} clip (missing {absent or 'format'}). "
                           "Delete it and run the preparation again.")
    return out


def read_clip_frames(root, clip_id: str, start: int, count: int) -> np.ndarray:
    """Frames start .. start + count - 1 of a clip as uint8 [count, H, W, 3], decoding only from the
    keyframe before `start` up to the last frame wanted."""
    mp4, _ = clip_paths(Path(root), clip_id)
    if start < 0 or count < 1:
        raise DatasetError(f"Frames {start}..{start + count - 1} of clip {clip_id}: need start >= 0 and count >= 1.")
    frames = []
    try:
        with av.open(str(mp4)) as container:
            stream = container.streams.video[0]
            fps = stream.average_rate
            first = stream.start_time or 0
            # Frame i has pts = first + i / fps in the stream's time base (constant-rate clips we wrote).
            container.seek(first + int(start / fps / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                i = round(float((frame.pts - first) * stream.time_base * fps))
                if i >= start:
                    frames.append(frame.to_ndarray(format="rgb24"))
                if len(frames) == count:
                    break
    except (av.FFmpegError, OSError, IndexError) as e:
        raise DatasetError(f"Cannot decode clip video {mp4} ({e}). Delete {clip_id}.safetensors and its "
                           ".mp4 and run the preparation again.") from e
    if len(frames) < count:
        raise DatasetError(f"Clip {clip_id} has no frames {start}..{start + count - 1} "
                           f"(it ends at frame {start + len(frames) - 1}).")
    return np.stack(frames)
