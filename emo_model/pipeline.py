"""Portrait + speech → talking video: the whole inference path in one object.

`EMOPipeline` holds the EMO model, a VAE and an audio encoder. It prepares the reference image,
encodes it once, runs the audio encoder once over the whole track (on the CPU-side features
store, so accelerator memory stays flat), then hands over to the clip-by-clip sampler.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from .audio import AudioEncoder, load_audio, num_video_frames
from .errors import AudioError, InputError
from .image import prepare_image, prepare_mask
from .model import EMOModel
from .sampler import ClipResult, SamplerSettings, StepInfo, sample_clips
from .vae import LatentCodec, vae_scale_factor


@dataclass
class EMOVideo:
    frames: torch.Tensor          # uint8 [N, H, W, 3]
    fps: float
    audio: torch.Tensor           # float32 mono [T] at `sample_rate`, trimmed to N / fps
    sample_rate: int
    latents: torch.Tensor | None  # [N, 4, h, w] when asked for


class EMOPipeline:
    def __init__(self, model: EMOModel, vae, audio_encoder: AudioEncoder, vae_chunk: int = 4):
        self.model = model
        self.codec = LatentCodec(vae, chunk=vae_chunk)
        self.audio_encoder = audio_encoder
        c = model.config
        if vae_scale_factor(vae) != c.vae_scale_factor:
            raise InputError(f"this EMO model works on latents {c.vae_scale_factor}x smaller than the image, but the VAE "
                             f"down-samples {vae_scale_factor(vae)}x: use the VAE the model was trained with")
        if (audio_encoder.num_layers, audio_encoder.hidden_size) != (c.audio_layers, c.audio_dim):
            raise InputError(
                f"this EMO model expects audio features of {c.audio_layers} layers x {c.audio_dim} "
                f"(e.g. {'Whisper tiny' if c.audio_dim == 384 else 'wav2vec2-base'}), but the audio encoder gives "
                f"{audio_encoder.num_layers} x {audio_encoder.hidden_size}: load the encoder the model was trained with")

    def prepare_audio(self, audio) -> torch.Tensor:
        """A file path or a mono waveform [T] at the encoder's rate (16 kHz) → float32 waveform [T]."""
        if isinstance(audio, (str, bytes)) or hasattr(audio, "__fspath__"):
            return load_audio(audio, self.audio_encoder.sample_rate)
        wave = torch.as_tensor(audio, dtype=torch.float32)
        if wave.ndim != 1:
            raise AudioError(f"expected a mono 16 kHz waveform [T], got shape {tuple(wave.shape)}")
        return wave

    def frame_features(self, waveform: torch.Tensor, fps: float) -> tuple[torch.Tensor, int]:
        """Audio features at the video frame rate [N, L, D] (CPU) and N, the frames the audio covers."""
        if fps <= 0:
            raise InputError(f"fps must be > 0, got {fps}")
        rate = self.audio_encoder.sample_rate
        frames = num_video_frames(waveform.shape[-1], rate, fps)
        if frames < 1:
            raise AudioError(f"the audio lasts {waveform.shape[-1] / rate * 1000:.0f} ms, shorter than one "
                             f"video frame at {fps:g} fps: give at least {1000 / fps:.0f} ms of audio")
        return self.audio_encoder.encode_to_frames(waveform, fps, frames), frames

    def iter_clips(self, image, audio, *, fps: float | None = None, height: int = 512, width: int = 512,
                   resize_mode: str = "crop", face_mask=None, speed=None, settings: SamplerSettings | None = None,
                   initial_motion_frames: torch.Tensor | None = None,
                   callback: Callable[[StepInfo], None] | None = None) -> Iterator[ClipResult]:
        """Stream the video clip by clip (see `__call__` for the arguments)."""
        fps = fps or self.model.config.fps
        waveform = self.prepare_audio(audio)
        features, frames = self.frame_features(waveform, fps)
        reference = self.codec.encode(prepare_image(image, height, width, resize_mode)[None])
        mask = None if face_mask is None else prepare_mask(face_mask, height, width)
        motion = None
        if initial_motion_frames is not None:
            motion = self.codec.encode(initial_motion_frames)
        yield from sample_clips(self.model, self.codec.decode, reference_latents=reference, frame_audio=features,
                                num_frames=frames, settings=settings or SamplerSettings(), face_mask=mask,
                                speed=speed, initial_motion=motion, callback=callback)

    def __call__(self, image, audio, *, fps: float | None = None, return_latents: bool = False, **kwargs) -> EMOVideo:
        """image: portrait (PIL, array or tensor, any size; see emo_model.image). audio: a file path (any
        container PyAV reads) or a mono 16 kHz waveform. fps defaults to the model's training rate.
        Keyword arguments: height, width, resize_mode, face_mask ([H, W] in the prepared image's
        coordinates), speed (degrees/frame: number or per-frame curve), settings (SamplerSettings),
        initial_motion_frames ([k, 3, H, W] 0..1 earlier frames to continue), callback (per step)."""
        fps = fps or self.model.config.fps
        waveform = self.prepare_audio(audio)
        frames, latents = [], []
        for clip in self.iter_clips(image, waveform, fps=fps, **kwargs):
            frames.append(clip.frames)
            if return_latents:
                latents.append(clip.latents)
        video = torch.cat(frames)
        rate = self.audio_encoder.sample_rate
        samples = round(video.shape[0] * rate / fps)
        return EMOVideo(video, fps, waveform[:samples], rate, torch.cat(latents) if return_latents else None)
