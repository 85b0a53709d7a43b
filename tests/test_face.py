"""Face detection and face-region masks: real face (skimage's astronaut), no face, box scaling, errors."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from emo_model.errors import InputError
from emo_model.face import (FaceBox, FaceDetector, available_detectors, detect_face_box, face_mask_for_image,
                            face_region_mask, fallback_face_box, make_detector, to_uint8_rgb, union_box)
from emo_model.face import detectors as detectors_module

# Measured on astronaut() by eye (cheek to cheek, hairline to chin); MediaPipe full-range gives
# (174, 68, 278, 172), yuface (178, 63, 267, 175), the skimage cascade (176, 69, 271, 163).
ASTRONAUT_FACE = FaceBox(175, 75, 278, 178)
BACKENDS = ["skimage", "mediapipe", "yuface"]


@pytest.fixture(scope="module")
def astronaut():
    return pytest.importorskip("skimage.data").astronaut()


@pytest.fixture(scope="module")
def skimage_detector():
    pytest.importorskip("skimage")
    return make_detector("skimage")


def _detector(name):
    if name not in available_detectors():
        pytest.skip(f"{name} is not installed")
    return make_detector(name)


def _shrink(image, size):
    from PIL import Image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.LANCZOS))


@pytest.mark.parametrize("name", BACKENDS)
def test_finds_the_astronauts_face(name, astronaut):
    detector = _detector(name)
    assert isinstance(detector, FaceDetector) and detector.name == name
    box = detect_face_box(astronaut, detector)
    assert box is not None and box.iou(ASTRONAUT_FACE) > 0.5
    assert 0 < box.score <= 1
    cx, cy = ASTRONAUT_FACE.center
    assert box.x0 < cx < box.x1 and box.y0 < cy < box.y1


def test_box_follows_a_shift_inside_a_bigger_canvas(skimage_detector, astronaut):
    dx, dy = 300, 150
    canvas = np.full((700, 900, 3), 128, np.uint8)
    canvas[dy:dy + 512, dx:dx + 512] = astronaut
    plain = detect_face_box(astronaut, skimage_detector)
    moved = detect_face_box(canvas, skimage_detector)
    assert moved is not None and moved.iou(ASTRONAUT_FACE.shifted(dx, dy)) > 0.5
    back = moved.shifted(-dx, -dy)
    assert np.allclose(back.center, plain.center, atol=10)
    assert back.width == pytest.approx(plain.width, rel=0.2)


def test_box_scales_with_a_downscaled_image(skimage_detector, astronaut):
    small = _shrink(astronaut, 256)
    box = detect_face_box(small, skimage_detector)
    half = FaceBox(*(v / 2 for v in (ASTRONAUT_FACE.x0, ASTRONAUT_FACE.y0, ASTRONAUT_FACE.x1, ASTRONAUT_FACE.y1)))
    assert box is not None and box.iou(half) > 0.5


@pytest.mark.parametrize("kind", ["blank", "noise"])
def test_no_face_gives_the_fallback_mask(skimage_detector, kind):
    rng = np.random.default_rng(0)
    image = np.full((384, 512, 3), 200, np.uint8) if kind == "blank" else rng.integers(0, 256, (384, 512, 3), np.uint8)
    assert skimage_detector.detect(image) == []
    mask, box, found = face_mask_for_image(image, skimage_detector, scale=1.5)
    assert not found and box == fallback_face_box(384, 512) and box.score == 0
    assert mask.shape == (384, 512) and mask.dtype == np.float32
    np.testing.assert_array_equal(mask, face_region_mask(384, 512, box, 1.5))
    # a face-sized guess (a third of the width, 40 % of the height, centre a little above the middle),
    # scaled like a detected face: at the Face Mask node's default 1.5, the central 50 % x 60 %
    assert box.width == pytest.approx(512 / 3) and box.height == pytest.approx(0.4 * 384)
    assert box.center == pytest.approx((256, 0.45 * 384))
    assert mask.mean() == pytest.approx(0.5 * 0.6, abs=0.01)
    assert face_mask_for_image(image, skimage_detector, scale=1.0)[0].mean() == pytest.approx(0.4 / 3, abs=0.01)


def test_face_mask_for_a_portrait(skimage_detector, astronaut):
    mask, box, found = face_mask_for_image(astronaut, skimage_detector, scale=1.5)
    assert found and box.iou(ASTRONAUT_FACE) > 0.5
    assert mask.shape == (512, 512) and set(np.unique(mask)) == {0.0, 1.0}
    ys, xs = np.nonzero(mask)
    assert xs.min() <= ASTRONAUT_FACE.x0 and xs.max() >= ASTRONAUT_FACE.x1 - 1
    assert mask[int(box.center[1]), int(box.center[0])] == 1 and mask[500, 10] == 0


@pytest.mark.parametrize("scale", [0.5, 1.5, 2.0])
def test_mask_area_grows_with_scale_squared(scale):
    box = FaceBox(200, 150, 300, 270)
    base = face_region_mask(512, 512, box).sum()
    assert base == pytest.approx(box.area)
    assert face_region_mask(512, 512, box, scale).sum() / base == pytest.approx(scale ** 2, rel=0.03)
    assert face_region_mask(512, 512, box, scale)[210, 250] == 1  # centre stays inside


def test_mask_is_clipped_to_the_image():
    corner = FaceBox(-40, -30, 60, 50)
    mask = face_region_mask(100, 200, corner, scale=1.0)
    assert mask.sum() == 60 * 50 and mask[0, 0] == 1 and mask[50, 60] == 0
    assert face_region_mask(100, 200, FaceBox(90, 40, 110, 60), scale=100).all()
    assert not face_region_mask(100, 200, FaceBox(300, 300, 400, 400)).any()
    with pytest.raises(InputError):
        face_region_mask(100, 200, corner, scale=0)


def test_face_box_helpers():
    box = FaceBox(10, 20, 50, 100, 0.9)
    assert (box.width, box.height, box.center, box.area) == (40, 80, (30, 60), 3200)
    assert box.scaled(0.5) == FaceBox(20, 40, 40, 80, 0.9)
    assert box.scaled(2, 1).height == 80 and box.scaled(2, 1).width == 80
    assert box.clipped(40, 90) == FaceBox(10, 20, 40, 90, 0.9)
    assert box.shifted(5, -5) == FaceBox(15, 15, 55, 95, 0.9)
    assert box.iou(box) == 1 and box.iou(FaceBox(100, 100, 110, 110)) == 0
    assert type(FaceBox(np.int64(1), np.float32(2), 3, 4).x0) is float


def test_union_box_over_frames():
    frames = [FaceBox(10, 20, 50, 60, 0.9), None, FaceBox(30, 10, 70, 55, 0.8)]
    assert union_box(frames) == FaceBox(10, 10, 70, 60, 0.8)
    assert union_box([None, None]) is None and union_box([]) is None


def test_float_and_gray_input(skimage_detector, astronaut):
    as_uint8 = skimage_detector.detect(astronaut)
    as_float = skimage_detector.detect(astronaut.astype(np.float32) / 255)
    assert as_float[0].iou(as_uint8[0]) > 0.95
    gray = astronaut.mean(-1).astype(np.uint8)
    assert to_uint8_rgb(gray).shape == (512, 512, 3)
    assert to_uint8_rgb(np.dstack([astronaut, np.full((512, 512), 255, np.uint8)])).shape == (512, 512, 3)
    with pytest.raises(InputError, match="0..1"):
        skimage_detector.detect(astronaut.astype(np.float32))  # 0..255 floats


@pytest.mark.parametrize("bad, message", [
    (np.full((64, 64, 3), 200.0, np.float32), "0..1"),
    (np.zeros((64, 64, 3), np.int32), "dtype"),
    (np.zeros((1, 64, 64, 3), np.uint8), "shape"),
    (np.zeros((64, 64, 2), np.uint8), "shape"),
    (np.zeros((4, 4, 3), np.uint8), "too small"),
])
def test_bad_images_are_refused(bad, message):
    with pytest.raises(InputError, match=message):
        to_uint8_rgb(bad)


def test_unknown_and_missing_backends(monkeypatch):
    with pytest.raises(InputError, match="unknown face detector 'nonexistent'"):
        make_detector("nonexistent")
    with pytest.raises(InputError, match="named detector"):
        make_detector("auto", min_face=0.2)
    monkeypatch.setattr(detectors_module, "_installed", lambda module: module == "skimage")
    assert available_detectors() == ["skimage"]
    with pytest.raises(InputError, match="pip install mediapipe"):
        make_detector("mediapipe")
    with pytest.raises(InputError, match="pip install yuface"):
        make_detector("yuface")
    monkeypatch.setattr(detectors_module, "_installed", lambda module: False)
    with pytest.raises(InputError, match="pip install scikit-image"):
        make_detector("skimage")
    with pytest.raises(InputError, match="pip install scikit-image"):
        make_detector("auto")


def test_skimage_import_failure_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)  # makes `import skimage` raise ImportError
    with pytest.raises(InputError, match="pip install scikit-image"):
        detectors_module.SkimageCascadeDetector()


def test_auto_falls_through_a_backend_that_cannot_start(monkeypatch):
    pytest.importorskip("skimage")
    def broken():
        raise InputError("mediapipe without its models")
    monkeypatch.setattr(detectors_module, "_installed", lambda module: module in ("mediapipe", "skimage"))
    monkeypatch.setitem(detectors_module._BACKENDS, "mediapipe", ("mediapipe", "mediapipe", broken))
    assert make_detector("auto").name == "skimage"


def test_import_is_cheap_and_loads_no_backend():
    code = ("import sys, emo_model.face as f; "
            "print(any(m.split('.')[0] in ('skimage', 'mediapipe', 'yuface', 'torch') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "False"


def test_mediapipe_without_bundled_solutions_is_explained(monkeypatch):
    import types
    monkeypatch.setitem(sys.modules, "mediapipe", types.ModuleType("mediapipe"))  # like mediapipe >= 0.10.30
    with pytest.raises(InputError, match="mediapipe==0.10.21"):
        detectors_module.MediaPipeDetector()
