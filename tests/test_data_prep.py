"""Data preparation on a real video built here: the astronaut photo moved and rolled by a known angle
schedule, with espeak-ng speech as its soundtrack; plus bad inputs, resuming, and the readers."""
import json
import shutil
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from emo_model.data import DatasetError, PrepareOptions, load_index, prepare_dataset, read_clip, read_clip_frames
from emo_model.data.rotation import kabsch, rotation_angle
from emo_model.data.tracking import SkipClip, track_face
from emo_model.face import FaceBox, landmarks_available
from emo_model.video import write_video

FPS = 25
# Roll angle in degrees per frame: +1°/frame, hold, -2°/frame, hold, +1°/frame, hold (6 s).
STEPS = [1.0] * 20 + [0.0] * 25 + [-2.0] * 20 + [0.0] * 25 + [1.0] * 20 + [0.0] * 40
ANGLES = np.concatenate([[0.0], np.cumsum(STEPS)])[:len(STEPS)]
FACE = (175, 75, 278, 178)  # the astronaut's face box in skimage.data.astronaut()
CANVAS = (448, 576)  # height, width (not square, not a multiple of 16)
OPTIONS = dict(fps=FPS, resolution=(256, 256), min_seconds=2.0, max_seconds=3.5, face_scale=1.8)

needs_landmarks = pytest.mark.skipif(not landmarks_available(), reason="MediaPipe Face Mesh not installed "
                                     "(see requirements-train.txt)")
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng not installed (apt-get install espeak-ng): real speech is needed")


def _offset(i: int) -> tuple[float, float]:
    """Where the astronaut image's top-left corner sits on the canvas at frame i (slow drift)."""
    return 20 + 30 * np.sin(i / 25), -40 + 15 * np.cos(i / 30)


def _face_centre(i: int) -> tuple[float, float]:
    ox, oy = _offset(i)
    return ox + (FACE[0] + FACE[2]) / 2, oy + (FACE[1] + FACE[3]) / 2


def _frames(count: int) -> np.ndarray:
    from skimage.data import astronaut
    photo = Image.fromarray(astronaut())
    centre = ((FACE[0] + FACE[2]) / 2, (FACE[1] + FACE[3]) / 2)
    out = np.empty((count, *CANVAS, 3), np.uint8)
    for i in range(count):
        canvas = Image.new("RGB", CANVAS[::-1], (90, 100, 110))
        # PIL turns counter-clockwise for positive angles: a roll the landmarks must see.
        turned = photo.rotate(ANGLES[i], resample=Image.Resampling.BICUBIC, center=centre, fillcolor=(90, 100, 110))
        ox, oy = _offset(i)
        canvas.paste(turned, (round(ox), round(oy)))
        out[i] = np.asarray(canvas)
    return out


def _speech(tmp_path, seconds: float) -> np.ndarray:
    wav = tmp_path / "speech.wav"
    text = ("The astronaut looks at the camera and tells us about the mission, the long flight, "
            "and the view of the earth from space, which she will never forget.")
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(wav), text], check=True, capture_output=True)
    from emo_model.audio import load_audio
    audio = load_audio(wav, 16000).numpy()
    audio = np.pad(audio, (0, max(0, round(seconds * 16000) - len(audio))))[:round(seconds * 16000)]
    return audio


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    if not landmarks_available() or shutil.which("espeak-ng") is None:
        pytest.skip("needs MediaPipe Face Mesh and espeak-ng")
    tmp = tmp_path_factory.mktemp("prep")
    videos, out = tmp / "videos", tmp / "out"
    (videos / "bad").mkdir(parents=True)
    seconds = len(STEPS) / FPS
    speech = _speech(tmp, seconds)
    frames = _frames(len(STEPS))
    write_video(videos / "astronaut.mp4", frames, FPS, audio=speech, sample_rate=16000)
    # Bad inputs, each small: a text file, no audio track, noise without a face, silence.
    (videos / "bad" / "notes.mp4").write_text("this is not a video")
    write_video(videos / "bad" / "mute.mp4", frames[:60, ::2, ::2], FPS)
    noise = np.random.default_rng(0).integers(0, 256, (60, 128, 160, 3), dtype=np.uint8)
    write_video(videos / "bad" / "noise.mp4", noise, FPS, audio=speech[:16000 * 60 // FPS], sample_rate=16000)
    write_video(videos / "bad" / "silent.mp4", frames[:60, ::2, ::2], FPS, audio=np.zeros(16000 * 60 // FPS),
                sample_rate=16000)
    report = prepare_dataset(videos, out, PrepareOptions(**OPTIONS))
    return videos, out, report


@needs_landmarks
@needs_espeak
def test_clips_and_format(prepared):
    _, out, report = prepared
    index = load_index(out)
    assert len(index["clips"]) == 2 == len(report.clips)  # 6 s split into two 3 s clips (max 3.5 s)
    assert [c["num_frames"] for c in index["clips"]] == [75, 75]
    assert index["options"]["fps"] == FPS and index["options"]["resolution"] == "256x256"
    clip = read_clip(out, index["clips"][0]["id"])
    t = 75
    assert clip["face_boxes"].shape == (t, 4) and clip["face_boxes"].dtype == torch.float32
    assert clip["face_region"].shape == (4,)
    assert clip["rotation"].shape == (t, 3) and clip["speed"].shape == (t,)
    assert clip["audio_features"].shape == (t, 5, 384) and clip["audio_features"].dtype == torch.float16
    assert clip["audio"].shape == (round(t / FPS * 16000),)
    meta = clip["metadata"]
    assert meta["format"] == "emo-dataset/1" and meta["source"] == "astronaut.mp4"
    assert meta["num_frames"] == "75" and meta["resolution"] == "256x256" and meta["audio_layers"] == "5"


def _true_face(i: int, crop: list[float], side: int) -> np.ndarray:
    """The face box at frame i in crop pixels: the astronaut's face box, rolled about its centre
    (its bounding box grows by |cos| + |sin|), moved with the drift, then cropped and resized."""
    cx, cy = _face_centre(i)
    a = np.radians(ANGLES[i])
    half = (FACE[2] - FACE[0]) / 2 * (abs(np.cos(a)) + abs(np.sin(a)))
    s = side / (crop[2] - crop[0])
    return np.array([cx - half - crop[0], cy - half - crop[1], cx + half - crop[0], cy + half - crop[1]]) * s


@needs_landmarks
@needs_espeak
def test_face_boxes_follow_the_face(prepared):
    _, out, _ = prepared
    for entry in load_index(out)["clips"]:
        clip = read_clip(out, entry["id"])
        boxes, region = clip["face_boxes"].numpy(), clip["face_region"].numpy()
        first = round(float(clip["metadata"]["start_seconds"]) * FPS)
        crop = [float(v) for v in clip["metadata"]["crop"].split(",")]
        for i, box in enumerate(boxes):
            truth = _true_face(first + i, crop, 256)
            side = truth[2] - truth[0]
            # Detectors box the face more tightly than the reference box (brow to chin, cheek to cheek).
            assert np.abs((box[:2] + box[2:]) / 2 - (truth[:2] + truth[2:]) / 2).max() < 0.15 * side, (i, box, truth)
            assert 0.5 < (box[2] - box[0]) / side < 1.2, (i, box, truth)
        assert (region[:2] <= boxes[:, :2].min(0) + 1e-3).all() and (region[2:] >= boxes[:, 2:].max(0) - 1e-3).all()
        assert (region >= 0).all() and (region <= 256).all()  # the whole face region lies in the crop


@needs_landmarks
@needs_espeak
def test_speed_follows_known_rotation(prepared):
    _, out, _ = prepared
    speed = np.concatenate([read_clip(out, c["id"])["speed"].numpy() for c in load_index(out)["clips"]])
    known = np.abs(np.array(STEPS[:len(speed)]))
    known[0] = known[1]
    # Frame 0 of each clip repeats frame 1 (no previous frame inside the clip).
    assert np.corrcoef(speed, known)[0, 1] > 0.9
    for value in (0.0, 1.0, 2.0):
        steady = [i for i in range(2, len(known) - 2) if (known[i - 2:i + 3] == value).all() and i % 75 > 1]
        assert abs(np.mean(speed[steady]) - value) < 0.25, (value, np.mean(speed[steady]))
    roll = np.concatenate([read_clip(out, c["id"])["rotation"].numpy()[:, 2] for c in load_index(out)["clips"]])
    # Absolute roll follows the schedule too, up to the photo's own tilt; PIL turns counter-clockwise,
    # and roll counts clockwise.
    error = -roll - ANGLES[:len(roll)]
    assert np.abs(error - np.median(error)).max() < 2.0


@needs_landmarks
@needs_espeak
def test_bad_inputs_are_skipped_with_reasons(prepared):
    _, out, report = prepared
    reasons = {s["source"]: s["reason"] for s in load_index(out)["skipped"]}
    assert reasons["bad/notes.mp4"].startswith("unreadable")
    assert reasons["bad/mute.mp4"] == "no audio track"
    assert reasons["bad/noise.mp4"].startswith("no face")
    assert reasons["bad/silent.mp4"].startswith("silent audio")
    summary = report.summary()
    assert "kept 2 clips" in summary and "no audio track" in summary


@needs_landmarks
@needs_espeak
def test_read_clip_frames(prepared):
    _, out, _ = prepared
    clip_id = load_index(out)["clips"][1]["id"]
    got = read_clip_frames(out, clip_id, 40, 5)
    assert got.shape == (5, 256, 256, 3) and got.dtype == np.uint8
    from emo_model.video import read_video
    every = read_video(out / "clips" / f"{clip_id}.mp4").frames
    assert every.shape[0] == 75
    assert np.array_equal(got, every[40:45])
    with pytest.raises(DatasetError, match="no frames"):
        read_clip_frames(out, clip_id, 74, 3)


@needs_landmarks
@needs_espeak
def test_resume_redoes_only_missing_clips(prepared):
    videos, out, _ = prepared
    clips = load_index(out)["clips"]
    files = sorted((out / "clips").iterdir())
    before = {p.name: p.stat().st_mtime_ns for p in files}
    again = prepare_dataset(videos, out, PrepareOptions(**OPTIONS))
    assert again.computed == 0 and len(again.clips) == 2
    assert {p.name: p.stat().st_mtime_ns for p in sorted((out / "clips").iterdir())} == before
    (out / "clips" / f"{clips[1]['id']}.safetensors").unlink()
    third = prepare_dataset(videos, out, PrepareOptions(**OPTIONS))
    assert third.computed == 1
    after = {p.name: p.stat().st_mtime_ns for p in (out / "clips").iterdir()}
    assert after[f"{clips[0]['id']}.safetensors"] == before[f"{clips[0]['id']}.safetensors"]
    assert after[f"{clips[1]['id']}.safetensors"] != before[f"{clips[1]['id']}.safetensors"]
    with pytest.raises(DatasetError, match="other options"):
        prepare_dataset(videos, out, PrepareOptions(**{**OPTIONS, "fps": 30}))


def test_empty_or_corrupt_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_index(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="no index.json"):
        load_index(tmp_path)
    (tmp_path / "index.json").write_text("{ broken")
    with pytest.raises(DatasetError, match="corrupt"):
        load_index(tmp_path)
    (tmp_path / "index.json").write_text(json.dumps({"format": "emo-dataset/1", "clips": [],
                                                     "skipped": [{"source": "a.mp4", "reason": "no face"}]}))
    with pytest.raises(DatasetError, match="no clips.*no face"):
        load_index(tmp_path)


class _Fake:
    name = "fake"

    def __init__(self, boxes):
        self.boxes = boxes

    def detect(self, image):
        return list(self.boxes)


def test_face_checks():
    frames = [np.zeros((200, 300, 3), np.uint8)] * 9
    one = FaceBox(100, 50, 180, 130, 0.9)
    boxes = track_face(frames, _Fake([one]), 3, 0.1)
    assert boxes.shape == (9, 4) and np.allclose(boxes[4], [100, 50, 180, 130])
    with pytest.raises(SkipClip, match="several faces"):
        track_face(frames, _Fake([one, one.shifted(100, 0)]), 3, 0.1)
    with pytest.raises(SkipClip, match="face too small"):
        track_face(frames, _Fake([FaceBox(10, 10, 20, 20)]), 3, 0.1)
    with pytest.raises(SkipClip, match="no face"):
        track_face(frames, _Fake([]), 3, 0.1)


def test_kabsch_measures_known_rotations():
    pts = np.random.default_rng(1).normal(size=(100, 3))
    for deg in (0.5, 2.0, 10.0):
        a = np.radians(deg)
        r = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])  # a yaw
        moved = 1.3 * pts @ r.T + 5  # zoom and shift do not count as rotation
        assert abs(rotation_angle(kabsch(pts, moved)) - deg) < 1e-6


class _Frame:
    def __init__(self, pts, value):
        self.pts, self.value = pts, value

    def to_ndarray(self, format):
        return np.full((2, 2, 3), self.value, np.uint8)


class _Stream:
    time_base = __import__("fractions").Fraction(1, 1000)
    average_rate = guessed_rate = 20


def test_variable_frame_rate_is_resampled_by_timestamps():
    from emo_model.data.decode import SkipVideo, _resample
    # Frames at 0, 40, 50, 120, 200 ms (irregular), starting at pts 1000: at 25 fps (every 40 ms)
    # output frame i shows the source frame on screen at i * 40 ms.
    frames = [_Frame(1000 + t, k) for k, t in enumerate([0, 40, 50, 120, 200])]
    got = [int(f[0, 0, 0]) for f in _resample(frames, _Stream, 25)]
    assert got == [0, 1, 2, 3, 3, 4, 4]  # 0, 40, 80, 120, 160, 200, 240 ms (last frame lasts 50 ms)
    with pytest.raises(SkipVideo, match="no timestamps"):
        list(_resample([_Frame(None, 0)], _Stream, 25))
    backwards = [_Frame(t, 0) for t in [0] + list(range(100, 0, -5))]
    with pytest.raises(SkipVideo, match="broken timestamps"):
        list(_resample(backwards, _Stream, 25))
