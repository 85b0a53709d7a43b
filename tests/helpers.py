"""Shared builders for tests: tiny models whose EMO layers are not all-zero (so conditions matter), audio files."""
import wave

import numpy as np
import torch
from diffusers import AutoencoderKL

from emo_model.config import EMOConfig
from emo_model.model import EMOModel


def tiny_config(**overrides) -> EMOConfig:
    return EMOConfig.tiny(**overrides)


def awake(model: EMOModel, seed: int = 0, std: float = 0.05) -> EMOModel:
    """Give the zero-initialised output layers small random weights, as training would."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if torch.count_nonzero(p) == 0 and ("to_out" in name or "proj_out" in name or name.endswith("context")):
            p.data = torch.randn(p.shape, generator=g) * std
    return model


def tiny_model(seed: int = 0, **overrides) -> EMOModel:
    torch.manual_seed(seed)
    return awake(EMOModel(tiny_config(**overrides)), seed).eval()


def tiny_vae() -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(block_out_channels=(8, 8, 8, 8), layers_per_block=1, norm_num_groups=4, latent_channels=4,
                         down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4).eval()


def write_wav(path, seconds, rate=16000, channels=1, freq=220.0):
    """A 16-bit wav of a tone with a 3 Hz speech-like envelope."""
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * freq * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2
    data = np.repeat(tone[:, None], channels, axis=1)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes((data * 32767).astype(np.int16).tobytes())
