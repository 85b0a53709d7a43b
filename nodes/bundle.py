"""The payloads that travel between EMO nodes (ComfyUI custom types).

EMO_MODEL        `EMOBundle`: the EMO model, its VAE, precision and the LoRAs stacked on it
EMO_AUDIO_ENCODER  `AudioEncoderBundle`: an `emo_model.audio.AudioEncoder` ComfyUI can offload
EMO_AUDIO_EMBEDS `AudioEmbeds`: per-video-frame audio features [N, L, D] at `fps`
EMO_REFERENCE    `Reference`: the prepared portrait, its latents, ReferenceNet features, face mask
EMO_MOTION       `Motion`: latents of earlier frames that a new generation continues from
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field

import torch

from ..emo_model.audio import AudioEncoder
from ..emo_model.lora import LoraWeights, merged_lora
from ..emo_model.model import EMOModel
from ..emo_model.vae import LatentCodec
from . import host

EMO_MODEL = "EMO_MODEL"
EMO_AUDIO_ENCODER = "EMO_AUDIO_ENCODER"
EMO_AUDIO_EMBEDS = "EMO_AUDIO_EMBEDS"
EMO_REFERENCE = "EMO_REFERENCE"
EMO_MOTION = "EMO_MOTION"


@dataclass(frozen=True)
class EMOBundle:
    model: EMOModel
    vae: torch.nn.Module
    name: str
    patchers: tuple = ()  # ComfyUI ModelPatchers of model and vae (empty standalone)
    loras: tuple[tuple[LoraWeights, float, float], ...] = ()  # (lora, backbone strength, ReferenceNet strength)

    def with_lora(self, lora: LoraWeights, backbone: float, reference: float) -> "EMOBundle":
        """A new bundle sharing the weights, with one more LoRA applied at use time."""
        return dataclasses.replace(self, loras=self.loras + ((lora, backbone, reference),))

    @contextlib.contextmanager
    def use(self):
        """Load onto the accelerator, merge the LoRAs for the duration, yield (model, codec)."""
        host.load_models(self.patchers)
        with contextlib.ExitStack() as stack:
            for part, index in (("backbone", 1), ("reference_net", 2)):
                loras = [(lora[0], lora[index]) for lora in self.loras if lora[index] != 0]
                if loras:
                    stack.enter_context(merged_lora(getattr(self.model, part), loras))
            yield self.model, LatentCodec(self.vae)


@dataclass(frozen=True)
class AudioEncoderBundle:
    encoder: AudioEncoder
    patchers: tuple = ()  # its ComfyUI ModelPatcher (empty standalone)

    def loaded(self) -> AudioEncoder:
        """The encoder, on the accelerator when ComfyUI manages it."""
        host.load_models(self.patchers)
        return self.encoder


@dataclass(frozen=True)
class AudioEmbeds:
    features: torch.Tensor  # [N, L, D] on the CPU, one entry per video frame
    fps: float
    source: str             # which encoder made them

    @property
    def num_frames(self) -> int:
        return self.features.shape[0]


@dataclass(frozen=True)
class Reference:
    image: torch.Tensor       # [3, H, W] 0..1, the prepared portrait
    latents: torch.Tensor     # [1, 4, h, w] scaled latents (CPU)
    features: list = field(repr=False)  # ReferenceNet output per attention layer (CPU)
    face_mask: torch.Tensor   # [1, 1, H, W] 0..1
    resize_mode: str

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.image.shape[1:])


@dataclass(frozen=True)
class Motion:
    latents: torch.Tensor  # [k, 4, h, w] scaled latents of the frames to continue from (CPU)
