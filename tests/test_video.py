import os

import numpy as np
import pytest
import torch

import emo_model.video as video_module
from emo_model.errors import InputError
from emo_model.video import probe_video, read_video, write_video

AAC_FRAME = 1024  # samples per AAC frame


def moving_square(n=24, h=48, w=64) -> np.ndarray:
    """float 0..1 frames: a colour gradient with a white square moving right."""
    frames = np.zeros((n, h, w, 3), np.float32)
    frames[..., 0] = np.linspace(0, 1, w)[None, None]
    frames[..., 1] = np.linspace(0, 1, h)[None, :, None]
    for i in range(n):
        frames[i, 8:24, i:i + 16] = 1.0
    return frames


def tone(freq, seconds, rate, channels=1, amplitude=0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return np.stack([amplitude * np.sin(2 * np.pi * freq * (c + 1) * t) for c in range(channels)]).astype(np.float32)


def peak_hz(signal: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return np.fft.rfftfreq(len(signal), 1 / rate)[spectrum.argmax()]


def folder_entries(folder):
    return sorted(os.listdir(folder))


def test_round_trip_with_tone(tmp_path):
    frames = moving_square()
    path = write_video(tmp_path / "out.mp4", torch.from_numpy(frames), 24, audio=torch.from_numpy(tone(440, 2, 16000)),
                       sample_rate=16000)
    assert path == tmp_path / "out.mp4" and folder_entries(tmp_path) == ["out.mp4"]

    info = probe_video(path)
    assert info["frames"] == 24 and info["fps"] == 24.0
    assert (info["width"], info["height"]) == (64, 48)
    assert (info["video_codec"], info["audio_codec"]) == ("h264", "aac") and info["has_audio"]
    assert abs(info["audio_seconds"] - 1.0) <= AAC_FRAME / 16000

    video = read_video(path)
    assert video.frames.shape == (24, 48, 64, 3) and video.frames.dtype == np.uint8 and video.fps == 24.0
    assert np.abs(video.frames / 255.0 - frames).mean() < 0.02
    assert video.sample_rate == 16000 and video.audio.dtype == np.float32 and video.audio.shape == (1, 16000)
    assert abs(peak_hz(video.audio[0], 16000) - 440) <= 2


def test_odd_size_is_padded_by_replicating_the_edge(tmp_path):
    frames = (moving_square(n=5, h=33, w=45) * 255).round().astype(np.uint8)
    video = read_video(write_video(tmp_path / "odd.mp4", frames, 25))
    assert video.frames.shape == (5, 34, 46, 3)
    diff = np.abs(video.frames.astype(int)[:, :33, :45] - frames).mean()
    assert diff < 5
    # the added row/column repeat their neighbours (up to compression error)
    assert np.abs(video.frames[:, 33].astype(int) - video.frames[:, 32]).mean() < 5
    assert np.abs(video.frames[:, :, 45].astype(int) - video.frames[:, :, 44]).mean() < 5


@pytest.mark.parametrize("audio_seconds", [3.0, 0.3])
def test_audio_is_cut_or_padded_to_the_video(tmp_path, audio_seconds):
    path = write_video(tmp_path / "a.mp4", moving_square(n=12), 12, tone(440, audio_seconds, 22050), 22050)
    assert abs(probe_video(path)["audio_seconds"] - 1.0) <= AAC_FRAME / 22050
    audio = read_video(path).audio
    assert audio.shape == (1, 22050)
    if audio_seconds < 1:  # silence after the tone
        assert np.abs(audio[0, 12000:]).max() < 0.01 and np.abs(audio[0, :6000]).max() > 0.3


def test_no_audio(tmp_path):
    path = write_video(tmp_path / "silent.mp4", moving_square(n=6), 30)
    info = probe_video(path)
    assert not info["has_audio"] and info["audio_codec"] is None and info["frames"] == 6
    video = read_video(path)
    assert video.audio is None and video.sample_rate is None


def test_stereo_and_resampled_rate(tmp_path):
    # 44000 Hz is not an AAC rate: resampled to the next one (44100); channels stay apart.
    path = write_video(tmp_path / "st.mp4", moving_square(n=10), 10, tone(300, 1, 44000, channels=2), 44000)
    video = read_video(path)
    assert video.sample_rate == 44100 and video.audio.shape == (2, 44100)
    assert abs(peak_hz(video.audio[0], 44100) - 300) <= 2 and abs(peak_hz(video.audio[1], 44100) - 600) <= 2


def test_ntsc_frame_rate(tmp_path):
    path = write_video(tmp_path / "ntsc.mp4", moving_square(n=30), np.float32(29.97), tone(440, 1.2, 48000), 48000)
    info = probe_video(path)
    assert info["frames"] == 30 and info["fps"] == pytest.approx(29.97, abs=1e-9)
    assert read_video(path).audio.shape == (1, round(30 / 29.97 * 48000))


def test_bad_inputs(tmp_path):
    good = moving_square(n=2)
    for frames, fps, match in [(good[:0], 25, "N, H, W > 0"), (good[..., :2], 25, r"\[N, H, W, 3\]"),
                               (good[0], 25, r"\[N, H, W, 3\]"), (good.astype(np.int32), 25, "uint8"),
                               (good, 0, "fps"), (good, float("nan"), "fps"), (good, "x", "fps")]:
        with pytest.raises(InputError, match=match):
            write_video(tmp_path / "x.mp4", frames, fps)
    with pytest.raises(InputError, match="sample rate"):
        write_video(tmp_path / "x.mp4", good, 25, audio=tone(440, 1, 16000))
    assert folder_entries(tmp_path) == []


def test_missing_folder_is_refused(tmp_path):
    with pytest.raises(InputError, match="does not exist.*Create it"):
        write_video(tmp_path / "nope" / "x.mp4", moving_square(n=2), 25)
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="not a folder"):
        write_video(tmp_path / "file" / "x.mp4", moving_square(n=2), 25)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs POSIX permissions; root ignores them")
def test_unwritable_folder_is_refused(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    try:
        with pytest.raises(InputError, match="write permission"):
            write_video(folder / "x.mp4", moving_square(n=2), 25)
        assert folder_entries(folder) == []
    finally:
        folder.chmod(0o700)


def test_write_refused_folder_is_reported(tmp_path, monkeypatch):
    """The same check as above where permissions cannot be tested (root, Windows): creating the file fails."""
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(video_module, "open", refuse, raising=False)
    with pytest.raises(InputError, match="write permission"):
        write_video(tmp_path / "x.mp4", moving_square(n=2), 25)
    assert folder_entries(tmp_path) == []


class FailingFrames(np.ndarray):
    """Frames whose slicing fails after the first chunk, like a cancel during encoding."""

    def __getitem__(self, item):
        if isinstance(item, slice) and (item.start or 0) > 0:
            raise KeyboardInterrupt
        return np.asarray(self)[item]


def test_failure_mid_encode_leaves_nothing(tmp_path):
    frames = moving_square(n=40).view(FailingFrames)
    with pytest.raises(KeyboardInterrupt):
        write_video(tmp_path / "x.mp4", frames, 25, tone(440, 2, 16000), 16000)
    assert folder_entries(tmp_path) == []


def test_failure_keeps_an_existing_file(tmp_path):
    path = write_video(tmp_path / "x.mp4", moving_square(n=3), 25)
    before = path.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        write_video(path, moving_square(n=40).view(FailingFrames), 25)
    assert folder_entries(tmp_path) == ["x.mp4"] and path.read_bytes() == before


def test_missing_file_for_reading(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_video(tmp_path / "none.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(InputError, match="Cannot"):
        probe_video(tmp_path / "junk.mp4")
