"""Cut the face-centred region out of a clip's frames and resize it to the training resolution.

One crop per clip (fixed camera in the training clip, as in EMO's data): the union of the clip's
face boxes, widened by `face_scale` about its centre and grown to the output aspect. Where the
crop leaves the frame it is filled by edge replication: black bars would be learned as picture
content, replicated edges are smooth and rarely reach the face.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..face import FaceBox


@dataclass(frozen=True)
class Crop:
    x0: int
    y0: int
    width: int
    height: int
    out_height: int
    out_width: int

    def map_boxes(self, boxes: np.ndarray) -> np.ndarray:
        """[N, 4] x0,y0,x1,y1 in source pixels → the same boxes in output (crop) pixels."""
        sx, sy = self.out_width / self.width, self.out_height / self.height
        return (boxes - np.array([self.x0, self.y0, self.x0, self.y0])) * np.array([sx, sy, sx, sy])


def plan_crop(union: FaceBox, face_scale: float, out_height: int, out_width: int) -> Crop:
    cx, cy = union.center
    aspect = out_width / out_height
    height = max(union.height * face_scale, union.width * face_scale / aspect)
    width = max(1, round(height * aspect))
    height = max(1, round(height))
    return Crop(round(cx - width / 2), round(cy - height / 2), width, height, out_height, out_width)


def crop_frames(frames: list[np.ndarray], crop: Crop) -> np.ndarray:
    """Frames uint8 [H, W, 3] → uint8 [T, out_height, out_width, 3] (bicubic; PIL widens the kernel
    when shrinking, so downscaling is antialiased)."""
    h, w = frames[0].shape[:2]
    inside = crop.x0 >= 0 and crop.y0 >= 0 and crop.x0 + crop.width <= w and crop.y0 + crop.height <= h
    # Indices clamped into the frame = edge replication, without padding whole frames.
    ys = np.clip(np.arange(crop.y0, crop.y0 + crop.height), 0, h - 1)
    xs = np.clip(np.arange(crop.x0, crop.x0 + crop.width), 0, w - 1)
    out = np.empty((len(frames), crop.out_height, crop.out_width, 3), np.uint8)
    for i, frame in enumerate(frames):
        part = (frame[crop.y0:crop.y0 + crop.height, crop.x0:crop.x0 + crop.width] if inside
                else frame[ys][:, xs])
        out[i] = np.asarray(Image.fromarray(part).resize((crop.out_width, crop.out_height),
                                                         Image.Resampling.BICUBIC))
    return out
