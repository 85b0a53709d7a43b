"""Training samples from prepared datasets (`emo_model.data`), drawn from a caller's generator.

Every draw (clip, frames, reference frame) comes from the `torch.Generator` passed to `sample`, so
the trainer can make step k's batch a pure function of (seed, k): that is what makes a resumed run
identical to an uninterrupted one, with no data-loader state to save.

Stage 1: one target frame, and a different random frame of the same clip as reference.
Stages 2 and 3: n + f consecutive frames (the first n are motion frames), a reference frame from
outside that window when the clip has one, the ±m audio-feature windows of the f generated frames,
and (stage 3) the head speed of all n + f frames. Every sample has a face region as a pixel mask for
the Face Locator, the union of face boxes over `face_mask_span`: "clip", the whole clip's (its stored
`face_region`, the paper's M), or "sample", the sample's own frames'. A clip's region spans all its
head motion (seconds), so inside it the mask does not say where the head of these frames is; the
sample's span does, and a model trained on it keeps the head where the user's mask puts it (and
expects masks as tight as the face). `face_mask_widen` w > 1 widens each sample's box about its
centre by a factor drawn from 1..w, for its width and its height apart, so that the mask's centre
still says where the head is but its size no longer says how big the head is: users' masks are
detector boxes scaled by hand, or a fallback guess, not the data's face boxes. Each target frame's
mouth region (a fixed part of that frame's face box, `MOUTH_REGION`) is there for the trainer's
optional mouth loss weight.
Pixels are float 0..1, [.., 3, H, W].

Decoding is the costly part of a draw at small sizes (a seek to the keyframe before each wanted frame,
then decoding up to it: at 64² it took 40% of a stage-1 step, more than the model's forward). So each
clip is decoded whole the first time it is drawn and its frames are kept, as decoded (uint8), while
they fit `frame_cache_mb`; clips drawn after the budget is full are seek-decoded per draw as before.
Frames are the same either way, so the cache changes no result, only the time.

With a `FrameEncoder` (the trainer gives one when nothing augments the pixels) a clip is instead
encoded by the frozen VAE once, the first time it is drawn, and its latents are kept under the same
budget: samples then carry latents, and the VAE no longer runs on every step (at 64² it was 15–17% of a
step in every stage, timed on one machine). A latent differs from one encoded in another batch only in
the last bits (CPU convolutions pick kernels by batch size).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..audio.features import frame_windows
from ..data import DatasetError, load_index, read_clip, read_clip_frames


# Where the mouth lies in a face box, as fractions (x0, y0, x1, y1) of its width and height: the lower
# middle of the face. The data keeps face boxes, not lip landmarks, so this is a fixed prior (it holds
# for detector boxes of frontal faces and for the synthetic faces, whose mouth spans 0.65..0.85 of
# the height of their ellipse boxes and about 0.6..0.83 of their detector boxes). Only the trainer's
# mouth loss weight uses it.
MOUTH_REGION = (0.25, 0.6, 0.75, 0.95)

FACE_MASK_SPANS = ("clip", "sample")


@dataclass
class Batch:
    target: torch.Tensor                 # [B, F, 3, H, W] frames to generate (F = 1 in stage 1)
    reference: torch.Tensor              # [B, 3, H, W]
    face_mask: torch.Tensor              # [B, 1, H, W]
    mouth_mask: torch.Tensor             # [B, F, 1, H, W] each target frame's mouth region
    motion: torch.Tensor | None = None   # [B, n, 3, H, W]
    audio_windows: torch.Tensor | None = None  # [B, F, 2m+1, L, D]
    speed: torch.Tensor | None = None    # [B, n + F] degrees per frame
    encoded: bool = False                # target, reference and motion are VAE latents [.., C, h, w], not pixels


@dataclass(frozen=True)
class FrameEncoder:
    """Pixels [N, 3, R, R] in 0..1 → latents [N, C, h, w] on the CPU, and the bytes one frame's latents take."""
    encode: Callable[[torch.Tensor], torch.Tensor]
    frame_bytes: int


class TrainData:
    def __init__(self, folders: list[str], *, stage: int, resolution: int, frames: int, motion_frames: int,
                 audio_window: int, audio_shape: tuple[int, int], frame_cache_mb: float = 0,
                 encoder: FrameEncoder | None = None, face_mask_span: str = "clip", face_mask_widen: float = 1.0):
        if face_mask_span not in FACE_MASK_SPANS:
            raise ValueError(f"face_mask_span must be one of {FACE_MASK_SPANS}, got {face_mask_span!r}")
        if not face_mask_widen >= 1:
            raise ValueError(f"face_mask_widen must be >= 1, got {face_mask_widen!r}")
        self.stage, self.resolution, self.encoder = stage, resolution, encoder
        self.face_mask_span, self.face_mask_widen = face_mask_span, face_mask_widen
        self.frames = 1 if stage == 1 else frames
        self.motion_frames = 0 if stage == 1 else motion_frames
        self.audio_window, self.audio_shape = audio_window, tuple(audio_shape)
        need = 2 if stage == 1 else self.motion_frames + self.frames
        self.clips: list[tuple[str, str, int]] = []
        short, rates = 0, set()
        for folder in folders:
            index = load_index(folder)  # DatasetError for a missing, corrupt or empty dataset
            rates.add(float(index.get("options", {}).get("fps", 0)))
            for clip in index["clips"]:
                if clip["num_frames"] >= need:
                    self.clips.append((str(folder), clip["id"], int(clip["num_frames"])))
                else:
                    short += 1
        if not self.clips:
            raise DatasetError(f"No clip in {', '.join(map(str, folders))} has the {need} frames stage {stage} "
                               f"needs ({short} shorter clip(s)). Use longer clips or fewer frames per clip.")
        if len(rates) != 1 or not min(rates) > 0:
            raise DatasetError(f"The datasets {', '.join(map(str, folders))} need one common frame rate (index "
                               f"options.fps), found {sorted(rates)}: prepare them with the same --fps.")
        self.fps = rates.pop()  # the model learns motion per frame at this rate: saved as its config's fps
        self._tensors = lru_cache(maxsize=64)(self._read_tensors)
        self._frames = ClipCache(int(frame_cache_mb * 2 ** 20))

    def __len__(self) -> int:
        return len(self.clips)

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        samples = [self._one(generator) for _ in range(batch_size)]
        return Batch(**{key: None if samples[0][key] is None else torch.stack([s[key] for s in samples])
                        for key in samples[0]}, encoded=self.encoder is not None)

    def _one(self, g: torch.Generator) -> dict:
        root, clip_id, total = self.clips[_randint(len(self.clips), g)]
        tensors = self._tensors(root, clip_id)
        window = self.motion_frames + self.frames
        start = _randint(total - window + 1, g)
        outside = [i for i in range(total) if not start <= i < start + window]
        reference_index = outside[_randint(len(outside), g)] if outside else start + _randint(window, g)
        height, width = tensors["size"]
        frames = self._clip_frames(root, clip_id, start, window, total, height * width * 3)
        reference = self._clip_frames(root, clip_id, reference_index, 1, total, height * width * 3)[0]
        targets = range(start + self.motion_frames, start + window)
        out = {"target": frames[self.motion_frames:], "reference": reference,
               "face_mask": face_region_mask(self._face_region(tensors, start, window, g), height, width,
                                             self.resolution),
               "mouth_mask": torch.stack([face_region_mask(mouth_box(tensors["face_boxes"][i]), height, width,
                                                           self.resolution) for i in targets]),
               "motion": frames[:self.motion_frames] if self.motion_frames else None,
               "audio_windows": None, "speed": None}
        if self.stage > 1:
            generated = torch.arange(start + self.motion_frames, start + window)
            out["audio_windows"] = frame_windows(tensors["audio_features"], self.audio_window, generated)
        if self.stage == 3:
            out["speed"] = tensors["speed"][start:start + window].float()
        return out

    def _face_region(self, tensors: dict, start: int, window: int, g: torch.Generator) -> torch.Tensor:
        if self.face_mask_span == "clip":
            box = tensors["face_region"].float()
        else:
            boxes = tensors["face_boxes"][start:start + window].float()
            box = torch.stack([boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()])
        if self.face_mask_widen == 1:  # no draw: runs without widening keep their draws
            return box
        factors = 1 + (self.face_mask_widen - 1) * torch.rand(2, generator=g, dtype=torch.float64).float()
        centre, half = (box[:2] + box[2:]) / 2, (box[2:] - box[:2]) / 2 * factors
        return torch.cat([centre - half, centre + half])

    def _read_tensors(self, root: str, clip_id: str) -> dict:
        clip = read_clip(root, clip_id)
        features = clip["audio_features"]
        if features.ndim != 3 or tuple(features.shape[1:]) != self.audio_shape:
            raise DatasetError(
                f"Clip {clip_id} in {root} has audio features of {tuple(features.shape[1:])} (layers, dim) but the "
                f"model takes {self.audio_shape}: prepare the data with the audio encoder the model uses, or pick "
                "the matching geometry (audio_encoder).")
        try:
            height, width = (int(v) for v in clip["metadata"]["resolution"].split("x"))
        except (KeyError, ValueError) as e:
            raise DatasetError(f"Clip {clip_id} in {root} has no valid 'resolution' metadata (HxW): "
                               "prepare it again.") from e
        return {"audio_features": features.float(), "speed": clip["speed"], "face_region": clip["face_region"].float(),
                "face_boxes": clip["face_boxes"].float(), "size": (height, width)}

    def _clip_frames(self, root: str, clip_id: str, start: int, count: int, total: int, decoded_bytes: int
                     ) -> torch.Tensor:
        """Frames start..start + count of a clip: pixels [count, 3, R, R] in 0..1, or their latents with an encoder."""
        key = (root, clip_id)
        if self.encoder is None:
            return self._pixels(self._frames.frames(key, start, count, total, decoded_bytes,
                                                    lambda s, c: read_clip_frames(root, clip_id, s, c)))
        return self._frames.frames(key, start, count, total, self.encoder.frame_bytes,
                                   lambda s, c: self._encode(read_clip_frames(root, clip_id, s, c)))

    def _encode(self, decoded: np.ndarray, part: int = 32) -> torch.Tensor:
        # In parts, so a long clip at 512² never holds all its frames as float pixels at once.
        return torch.cat([self.encoder.encode(self._pixels(decoded[i:i + part])) for i in range(0, len(decoded), part)])

    def _pixels(self, decoded: np.ndarray) -> torch.Tensor:
        frames = torch.from_numpy(decoded).permute(0, 3, 1, 2).float() / 255
        if frames.shape[-2:] != (self.resolution, self.resolution):
            frames = F.interpolate(frames, size=(self.resolution, self.resolution), mode="bilinear",
                                   antialias=True, align_corners=False).clamp(0, 1)
        return frames


class ClipCache:
    """Whole clips, as `load(start, count)` returns them (decoded uint8 frames [N, H, W, 3], or latents),
    kept up to a byte budget, first come first kept: no eviction, so a dataset larger than the budget
    never pays a whole-clip load for a clip it drops. Budget 0: every call loads just the frames asked for."""

    def __init__(self, budget_bytes: int):
        self.budget, self.used = budget_bytes, 0
        self._clips: dict[tuple[str, str], np.ndarray | torch.Tensor] = {}

    def frames(self, key: tuple[str, str], start: int, count: int, total: int, frame_bytes: int,
               load: Callable[[int, int], np.ndarray | torch.Tensor]) -> np.ndarray | torch.Tensor:
        if key not in self._clips and self.used + total * frame_bytes <= self.budget:
            self._clips[key] = load(0, total)
            self.used += total * frame_bytes
        if key in self._clips:
            return self._clips[key][start:start + count]
        return load(start, count)


def _randint(high: int, g: torch.Generator) -> int:
    return int(torch.randint(high, (1,), generator=g))


def face_region_mask(box: torch.Tensor, height: int, width: int, resolution: int) -> torch.Tensor:
    """Face region (x0, y0, x1, y1 in the clip's pixels) → [1, R, R] mask at the training resolution
    (also what the benchmark gives the Face Locator at inference)."""
    sx, sy = resolution / width, resolution / height
    x0, x1 = int(box[0] * sx), int(torch.ceil(box[2] * sx))
    y0, y1 = int(box[1] * sy), int(torch.ceil(box[3] * sy))
    mask = torch.zeros(1, resolution, resolution)
    mask[:, max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = 1.0
    return mask


def mouth_box(face_box: torch.Tensor) -> torch.Tensor:
    """A frame's face box (x0, y0, x1, y1) → the `MOUTH_REGION` part of it, in the same pixels."""
    x0, y0, x1, y1 = face_box.tolist()
    fx0, fy0, fx1, fy1 = MOUTH_REGION
    w, h = x1 - x0, y1 - y0
    return torch.tensor([x0 + fx0 * w, y0 + fy0 * h, x0 + fx1 * w, y0 + fy1 * h])
