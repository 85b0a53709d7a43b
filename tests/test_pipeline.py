"""Portrait + audio → frames through the whole inference path (tiny model, tiny VAE, real Whisper tiny.en)."""
import numpy as np
import pytest
import torch

from emo_model.audio import WhisperAudioEncoder, packaged_whisper_tiny_dir
from emo_model.errors import AudioError, InputError
from emo_model.image import prepare_image
from emo_model.pipeline import EMOPipeline
from emo_model.sampler import SamplerSettings
from helpers import tiny_model, tiny_vae


@pytest.fixture(scope="module")
def pipeline():
    encoder = WhisperAudioEncoder.from_ctranslate2(packaged_whisper_tiny_dir())
    return EMOPipeline(tiny_model(), tiny_vae(), encoder)


def speech_like(seconds, rate=16000):
    t = np.arange(int(seconds * rate)) / rate
    return torch.tensor(0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t)), dtype=torch.float32)


def test_portrait_and_audio_make_a_video(pipeline):
    portrait = (np.random.default_rng(0).random((90, 70, 4)) * 255).astype(np.uint8)  # odd size, alpha
    video = pipeline(portrait, speech_like(1.05), fps=10, height=64, width=64,
                     settings=SamplerSettings(steps=2), speed=0.5, return_latents=True)
    assert video.frames.shape == (10, 64, 64, 3) and video.frames.dtype == torch.uint8
    assert video.latents.shape == (10, 4, 8, 8)
    assert video.audio.shape[0] == 16000  # trimmed to the frames
    assert video.fps == 10


def test_silent_audio_runs_and_too_short_audio_is_refused(pipeline):
    video = pipeline(np.zeros((64, 64), np.uint8), torch.zeros(16000 // 5), fps=10, height=64, width=64,
                     settings=SamplerSettings(steps=1))
    assert video.frames.shape[0] == 2
    with pytest.raises(AudioError, match="shorter than one video frame"):
        pipeline(np.zeros((64, 64), np.uint8), torch.zeros(800), fps=10, height=64, width=64)


def test_audio_file_input_and_bad_file(pipeline, tmp_path):
    import av
    path = tmp_path / "speech.wav"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=16000, layout="mono")
        samples = (speech_like(0.5).numpy() * 32767).astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    video = pipeline(np.zeros((64, 64, 3), np.uint8), path, fps=8, height=64, width=64,
                     settings=SamplerSettings(steps=1))
    assert video.frames.shape[0] == 4
    bad = tmp_path / "notes.mp3"
    bad.write_text("not audio")
    with pytest.raises(AudioError, match="notes.mp3"):
        pipeline(np.zeros((64, 64, 3), np.uint8), bad, fps=8, height=64, width=64)


def test_encoder_that_does_not_match_the_model_is_refused():
    from transformers import Wav2Vec2Config
    from emo_model.audio import Wav2Vec2AudioEncoder
    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(16, 16), conv_kernel=(10, 3), conv_stride=(5, 2), num_feat_extract_layers=2)
    with pytest.raises(InputError, match="audio features"):
        EMOPipeline(tiny_model(), tiny_vae(), Wav2Vec2AudioEncoder.from_config(config))


def test_vae_of_another_scale_factor_is_refused():
    from diffusers import AutoencoderKL
    vae = AutoencoderKL(block_out_channels=(8, 8, 8), layers_per_block=1, norm_num_groups=4,
                        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3)
    encoder = WhisperAudioEncoder.from_ctranslate2(packaged_whisper_tiny_dir())
    with pytest.raises(InputError, match="down-samples 4x"):
        EMOPipeline(tiny_model(), vae, encoder)  # the tiny model works on 8x latents


@pytest.mark.parametrize("shape", [(300, 200), (200, 300, 3), (64, 64, 1), (120, 90, 2), (100, 100, 4)])
@pytest.mark.parametrize("mode", ["crop", "pad", "stretch"])
def test_any_image_becomes_the_requested_size(shape, mode):
    image = (np.random.default_rng(0).random(shape) * 255).astype(np.uint8)
    out = prepare_image(image, 64, 48, mode)
    assert out.shape == (3, 64, 48) and 0 <= out.min() and out.max() <= 1


def test_image_rules():
    transparent = np.zeros((32, 32, 4), np.uint8)
    assert torch.allclose(prepare_image(transparent, 16, 16), torch.ones(3, 16, 16))  # alpha over white
    wide = np.zeros((16, 64, 3), np.uint8)
    wide[:, 24:40] = 255  # a white centre band: crop keeps only it
    assert prepare_image(wide, 16, 16, "crop").min() > 0.9
    padded = prepare_image(wide, 16, 16, "pad")
    assert padded[:, 0].min() > 0.99 and padded[:, 8, 0].max() < 0.05  # white bars, black content kept
    with pytest.raises(InputError, match="multiples of 8"):
        prepare_image(wide, 30, 30)
    with pytest.raises(InputError, match="one reference image"):
        prepare_image(torch.zeros(2, 16, 16, 3), 16, 16)
