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


def blob_clip(seed: int, size: int, frames: int, fps: float):
    """Frames of a coloured blob whose horizontal position follows the clip's audio features, and the
    clip's tensors in the prepared-dataset format."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(frames, 5, 384, generator=g)
    drive = features[:, 0, :8].mean(1)
    x = (size / 2 + 12 * torch.tanh(drive)).numpy()
    yy, xx = np.mgrid[:size, :size]
    colour = np.array([[220, 80, 60], [60, 160, 220]][seed % 2], dtype=np.float32)
    images = []
    for t in range(frames):
        blob = np.exp(-((xx - x[t]) ** 2 + (yy - size / 2) ** 2) / (2 * 8.0 ** 2))[..., None]
        images.append((40 + blob * (colour - 40)).astype(np.uint8))
    speed = (torch.tensor(np.abs(np.diff(x, prepend=x[0])), dtype=torch.float32) / 4)
    tensors = {
        "face_boxes": torch.tensor([[16.0, 12.0, 48.0, 52.0]]).repeat(frames, 1),
        "face_region": torch.tensor([16.0, 12.0, 48.0, 52.0]),
        "rotation": torch.zeros(frames, 3),
        "speed": speed,
        "audio_features": features.half(),
        "audio": torch.zeros(round(frames / fps * 16000)),
    }
    return np.stack(images), tensors


def make_blob_dataset(root, size: int = 64, frames: int = 24, fps: float = 25.0):
    """A two-clip prepared dataset (emo-dataset/1) of blob clips: what the trainers' tests learn from."""
    from emo_model.data.dataset import FORMAT, write_clip, write_index
    clips = []
    for i in range(2):
        images, tensors = blob_clip(i, size, frames, fps)
        write_clip(root, f"clip{i}", images, fps, tensors,
                   {"source": f"v{i}.mp4", "start_seconds": "0", "fps": str(fps), "num_frames": str(frames),
                    "resolution": f"{size}x{size}", "audio_encoder": "whisper-tiny", "audio_layers": "5",
                    "audio_dim": "384"})
        clips.append({"id": f"clip{i}", "source": f"v{i}.mp4", "start_seconds": 0.0, "num_frames": frames,
                      "seconds": frames / fps})
    write_index(root, {"format": FORMAT, "options": {"fps": fps, "resolution": f"{size}x{size}"},
                       "clips": clips, "skipped": [], "videos": {}})
    return root
