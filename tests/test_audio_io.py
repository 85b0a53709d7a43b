"""load_audio / to_mono_16k on files the test writes itself with PyAV (no fixtures on disk)."""

import av
import numpy as np
import pytest
import torch

from emo_model.audio import load_audio, to_mono_16k
from emo_model.errors import AudioError

RATE = 44100
SECONDS = 1.5
AMPLITUDE = 0.5


def sine(freq=440.0, rate=RATE, seconds=SECONDS):
    t = np.arange(round(rate * seconds)) / rate
    return (AMPLITUDE * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_media(path, codec, stereo, rate=RATE, video=False):
    """Encode `stereo` [2, T] at `rate` with `codec` (plus a small H.264 video stream if asked)."""
    with av.open(str(path), "w") as out:
        if video:
            vstream = out.add_stream("libx264", rate=25)
            vstream.width = vstream.height = 64
            vstream.pix_fmt = "yuv420p"
        if stereo is not None:
            astream = out.add_stream(codec, rate=48000 if codec == "libopus" else rate)  # Opus: 48 kHz only
            astream.layout = "stereo"
            astream.codec_context.open()  # fixes frame_size and the sample format the codec wants
            ctx = astream.codec_context
            frame = av.AudioFrame.from_ndarray(stereo, format="fltp", layout="stereo")
            frame.sample_rate = rate
            resampler = av.AudioResampler(format=ctx.format.name, layout="stereo", rate=ctx.sample_rate)
            fifo = av.AudioFifo()
            for converted in resampler.resample(frame) + resampler.resample(None):
                fifo.write(converted)
            pts = 0
            while fifo.samples:
                chunk = fifo.read(min(ctx.frame_size or 1024, fifo.samples))
                chunk.pts = pts
                pts += chunk.samples
                out.mux(astream.encode(chunk))
            out.mux(astream.encode(None))
        if video:
            for i in range(int(SECONDS * 25)):
                image = np.full((64, 64, 3), (i * 7) % 255, np.uint8)
                out.mux(vstream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            out.mux(vstream.encode(None))
    return path


def dominant_frequency(x, rate=16000):
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spectrum) * rate / len(x)


FORMATS = {  # extension -> (audio codec, with a video stream)
    "wav": ("pcm_s16le", False),
    "mp3": ("libmp3lame", False),
    "m4a": ("aac", False),
    "flac": ("flac", False),
    "ogg": ("libopus", False),
    "mp4": ("aac", True),
    "mkv": ("libopus", True),
}


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("media")
    stereo = np.stack([sine(), sine()])
    return {ext: write_media(folder / f"tone.{ext}", codec, stereo, video=video)
            for ext, (codec, video) in FORMATS.items()}


@pytest.mark.parametrize("ext", FORMATS)
def test_load_audio_formats(media, ext):
    x = load_audio(media[ext])
    assert x.dtype == torch.float32 and x.ndim == 1
    # Lossy codecs add up to a frame of priming/padding (AAC ~10 ms here); allow 30 ms.
    assert abs(len(x) - SECONDS * 16000) <= 0.03 * 16000
    assert abs(dominant_frequency(x.numpy()) - 440) < 2
    # Channels are averaged (FFmpeg's own stereo->mono would give 0.707 * (L + R) ~ 0.71).
    assert abs(x.abs().max().item() - AMPLITUDE) < 0.05


def test_lossless_matches_comfy_path(media):
    """A wav file and the same signal as a ComfyUI waveform give the same 16 kHz samples."""
    from_file = load_audio(media["wav"])
    from_tensor = to_mono_16k(torch.from_numpy(np.stack([sine(), sine()]))[None], RATE)
    assert len(from_file) == len(from_tensor) == 24000
    assert torch.allclose(from_file, from_tensor, atol=1e-3)  # 16-bit quantisation of the wav


@pytest.mark.parametrize("ext", ["wav", "m4a", "mp4"])
def test_start_and_duration(media, ext):
    full = load_audio(media[ext])
    part = load_audio(media[ext], start=0.5, duration=0.25)
    assert len(part) == 4000
    assert torch.equal(part, full[8000:12000])
    tail = load_audio(media[ext], start=1.0)
    assert torch.equal(tail, full[16000:])
    # A duration beyond the end returns what exists rather than padding.
    assert torch.equal(load_audio(media[ext], start=1.0, duration=5.0), full[16000:])


def test_other_sample_rate(media):
    x = load_audio(media["flac"], sample_rate=8000)
    assert len(x) == 12000
    assert abs(dominant_frequency(x.numpy(), 8000) - 440) < 2


def test_start_past_end(media):
    with pytest.raises(AudioError, match="past the end"):
        load_audio(media["wav"], start=3.0)


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="nothere.wav"):
        load_audio(tmp_path / "nothere.wav")


def test_text_file_renamed_wav(tmp_path):
    bogus = tmp_path / "notes.wav"
    bogus.write_text("this is not audio\n" * 50)
    with pytest.raises(AudioError, match="notes.wav"):
        load_audio(bogus)


def test_video_without_audio(tmp_path):
    silent = write_media(tmp_path / "silent.mp4", None, None, video=True)
    with pytest.raises(AudioError, match="silent.mp4.*no audio track"):
        load_audio(silent)


def test_to_mono_16k_from_48k_stereo():
    left, right = sine(rate=48000), 0.5 * sine(rate=48000)
    waveform = torch.from_numpy(np.stack([left, right]))[None]  # ComfyUI AUDIO: [B=1, C=2, T]
    out = to_mono_16k(waveform, 48000)
    assert out.dtype == torch.float32 and out.shape == (24000,)
    assert abs(dominant_frequency(out.numpy()) - 440) < 2
    expected = torch.from_numpy(0.75 * sine(rate=16000))
    assert torch.allclose(out[100:-100], expected[100:-100], atol=2e-3)


def test_to_mono_16k_identity_and_shapes():
    stereo = torch.randn(2, 1000)
    assert torch.equal(to_mono_16k(stereo, 16000), stereo.mean(0))
    assert to_mono_16k(torch.randn(441), 44100).shape == (160,)
    with pytest.raises(AudioError, match="shape"):
        to_mono_16k(torch.randn(1, 1, 2, 10), 16000)
