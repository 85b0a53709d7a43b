"""The face of a clip: detected on every k-th frame, boxes interpolated in between, and the checks
that decide whether the clip is usable (one clear, large enough face in most frames)."""
from __future__ import annotations

import numpy as np

from ..face import FaceBox, FaceDetector
from .decode import SkipVideo

# A clip needs a face in at least this share of its detection frames (short dropouts are filled).
MIN_FACE_SHARE = 0.5
# A second face this large relative to the main one, in this share of frames, makes the clip ambiguous:
# whose head motion and lips would the audio drive?
SECOND_FACE_AREA = 0.5
SECOND_FACE_SHARE = 0.3


class SkipClip(SkipVideo):
    """This clip cannot become training data (the rest of the video may)."""


def track_face(frames: list[np.ndarray], detector: FaceDetector, every: int, min_face: float) -> np.ndarray:
    """float64 [T, 4] face box per frame (x0, y0, x1, y1 in source pixels), or SkipClip with the reason."""
    picks = sorted(set(range(0, len(frames), every)) | {len(frames) - 1})
    main, several = {}, 0
    for i in picks:
        boxes = detector.detect(frames[i])
        if not boxes:
            continue
        best = max(boxes, key=lambda b: b.area * b.score)
        main[i] = best
        several += any(b is not best and b.area >= SECOND_FACE_AREA * best.area for b in boxes)
    if len(main) < MIN_FACE_SHARE * len(picks):
        raise SkipClip(f"no face (found in {len(main)} of {len(picks)} checked frames)")
    if several >= SECOND_FACE_SHARE * len(picks):
        raise SkipClip(f"several faces ({several} of {len(picks)} checked frames)")
    side = min(frames[0].shape[:2])
    size = float(np.median([min(b.width, b.height) for b in main.values()])) / side
    if size < min_face:
        raise SkipClip(f"face too small ({size:.2f} of the frame side, minimum {min_face:g})")
    return _interpolate(main, len(frames))


def _interpolate(found: dict[int, FaceBox], count: int) -> np.ndarray:
    idx = np.array(sorted(found))
    boxes = np.array([[found[i].x0, found[i].y0, found[i].x1, found[i].y1] for i in idx])
    t = np.arange(count)
    return np.stack([np.interp(t, idx, boxes[:, c]) for c in range(4)], axis=1)
