"""Face-region masks for EMO's Face Locator, from a detected face box.

The Face Locator is conditioned on a mask that is 1 inside the face region: a tighter box gives
less head motion, a wider/taller one more (EMO paper Fig. 7), so callers let the user scale the
detected box about its centre. For training data the region is the union of the per-frame boxes
over a clip (`union_box`).
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..errors import InputError
from .detectors import FaceBox, FaceDetector

# Fallback face box as fractions of the image: a third of the width, 40 % of the height, centred
# horizontally and at 45 % of the height (see fallback_face_box).
FALLBACK_WIDTH, FALLBACK_HEIGHT, FALLBACK_CENTER_Y = 1 / 3, 0.4, 0.45


def detect_face_box(image: np.ndarray, detector: FaceDetector) -> FaceBox | None:
    """The subject's face: the detection with the largest area × score (a portrait's main face is
    its biggest; the score keeps a large weak false hit from beating a clear face). None if none."""
    boxes = detector.detect(image)
    return max(boxes, key=lambda b: b.area * b.score) if boxes else None


def fallback_face_box(height: int, width: int) -> FaceBox:
    """The face box assumed when none is found: the central third of the width by 40 % of the
    height, centred at 45 % of the height, with score 0.

    In a head-and-shoulders portrait the head sits in the middle, slightly above centre. It stands
    for a detected face, so callers scale it as they scale one: at the Face Mask node's default 1.5
    the region is the central 50 % × 60 % (x 25–75 %, y 15–75 %). It is a guess: callers should warn.
    """
    _check_size(height, width)
    cy = FALLBACK_CENTER_Y * height
    hw, hh = FALLBACK_WIDTH * width / 2, FALLBACK_HEIGHT * height / 2
    return FaceBox(width / 2 - hw, cy - hh, width / 2 + hw, cy + hh, 0.0)


def face_region_mask(height: int, width: int, box: FaceBox, scale: float = 1.0) -> np.ndarray:
    """float32 [height, width]: 1 inside `box` scaled by `scale` about its centre, clipped to the image.

    Box edges are rounded to whole pixels (a pixel is inside when its centre is), so the mask
    holds exactly 0 and 1. A box wholly outside the image gives an all-zero mask.
    """
    _check_size(height, width)
    if not np.isfinite(scale) or scale <= 0:
        raise InputError(f"face mask scale must be positive, got {scale}")
    b = box.scaled(scale).clipped(width, height)
    x0, x1 = int(round(b.x0)), int(round(b.x1))
    y0, y1 = int(round(b.y0)), int(round(b.y1))
    mask = np.zeros((height, width), np.float32)
    mask[y0:y1, x0:x1] = 1.0
    return mask


def face_mask_for_image(image: np.ndarray, detector: FaceDetector,
                        scale: float = 1.0) -> tuple[np.ndarray, FaceBox, bool]:
    """Detect the face and build its mask → (mask float32 [H, W], box before scaling, found).

    With no face found, `fallback_face_box` is used and `found` is False (the caller warns).
    """
    box = detect_face_box(image, detector)
    h, w = np.asarray(image).shape[:2]
    found = box is not None
    if box is None:
        box = fallback_face_box(h, w)
    return face_region_mask(h, w, box, scale), box, found


def union_box(boxes: Iterable[FaceBox | None]) -> FaceBox | None:
    """The smallest box holding every given box (e.g. one per video frame; None entries, frames
    without a face, are skipped). Score = the lowest of theirs. None when no box is given."""
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        return None
    return FaceBox(min(b.x0 for b in boxes), min(b.y0 for b in boxes), max(b.x1 for b in boxes),
                   max(b.y1 for b in boxes), min(b.score for b in boxes))


def _check_size(height: int, width: int) -> None:
    if int(height) != height or int(width) != width or height < 1 or width < 1:
        raise InputError(f"mask size must be positive whole pixels, got {width}x{height}")
