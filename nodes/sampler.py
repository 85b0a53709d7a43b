"""The EMO Sampler node: reference + audio features (+ motion frames, speed) → frames, clip by clip."""
from __future__ import annotations

import re

import torch

from ..emo_model.errors import InputError
from ..emo_model.sampler import SamplerSettings, clip_plan, sample_clips
from ..emo_model.schedulers import SCHEDULERS
from . import host
from .bundle import EMO_AUDIO_EMBEDS, EMO_MODEL, EMO_MOTION, EMO_REFERENCE, AudioEmbeds, EMOBundle, Motion, Reference

_KEYFRAME = re.compile(r"^\s*([0-9.]+)\s*(s?)\s*:\s*([-+0-9.eE]+)\s*$")


def parse_speed_curve(text: str, num_frames: int, fps: float) -> torch.Tensor | None:
    """A head-speed curve from text → [num_frames] degrees/frame, or None for empty text.

    Either plain numbers ("0.2, 0.5, 1.0": one per frame, or fewer stretched over the video), or
    keyframes "frame:speed" / "seconds s:speed" ("0:0.2, 2.5s:1.0") interpolated linearly and
    held flat before the first and after the last.
    """
    parts = [p for p in re.split(r"[,;\n]+", text.strip()) if p.strip()]
    if not parts:
        return None
    try:
        if all(":" not in p for p in parts):
            values = torch.tensor([float(p) for p in parts])
            if values.numel() == 1:
                return values.expand(num_frames).clone()
            return torch.nn.functional.interpolate(values[None, None], size=num_frames, mode="linear",
                                                   align_corners=True)[0, 0]
        keys = []
        for p in parts:
            m = _KEYFRAME.match(p)
            if m is None:
                raise ValueError(p)
            at = float(m.group(1)) * (fps if m.group(2) else 1.0)
            keys.append((at, float(m.group(3))))
    except ValueError as e:
        raise InputError(f"speed curve: cannot read {str(e)!r}; write numbers ('0.2, 0.5') or keyframes "
                         "('0:0.2, 2.5s:1.0' = frame 0 and 2.5 seconds)") from None
    keys.sort()
    at = torch.tensor([k[0] for k in keys], dtype=torch.float64)
    value = torch.tensor([k[1] for k in keys], dtype=torch.float64)
    frames = torch.arange(num_frames, dtype=torch.float64)
    index = torch.searchsorted(at, frames).clamp(1, len(keys) - 1) if len(keys) > 1 else None
    if index is None:
        return value.expand(num_frames).float().clone()
    lo, hi = at[index - 1], at[index]
    weight = ((frames - lo) / (hi - lo).clamp(min=1e-9)).clamp(0, 1)
    return (value[index - 1] * (1 - weight) + value[index] * weight).float()


class EMO_Sampler:
    DESCRIPTION = ("Generates the talking-head video clip by clip (EMO's sampler): each clip of frames_per_clip "
                   "frames continues from the last motion_frame_count frames of the previous one, so any audio "
                   "length runs in the same accelerator memory.")
    CATEGORY = "EMO"
    RETURN_TYPES = ("IMAGE", "LATENT", "FLOAT")
    RETURN_NAMES = ("images", "latent", "fps")
    OUTPUT_TOOLTIPS = ("The video frames.",
                       "The frames' SD latents (decode with core VAE Decode and an SD1.5 VAE).",
                       "The frame rate of the audio features (connect to EMO Video Combine).")
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "emo_model": (EMO_MODEL, {"tooltip": "From EMO Model Loader (or EMO LoRA)."}),
            "reference": (EMO_REFERENCE, {"tooltip": "From EMO ReferenceNet."}),
            "audio_embeds": (EMO_AUDIO_EMBEDS, {"tooltip": "From EMO Audio Encode; sets the length and frame rate."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 2**63 - 1, "control_after_generate": True,
                             "tooltip": "Noise seed: the same seed gives the same video on any device."}),
            "steps": ("INT", {"default": 40, "min": 1, "max": 1000, "tooltip": "Denoising steps per clip."}),
            "scheduler": (list(SCHEDULERS), {"default": "ddim", "tooltip": "Sampling scheduler."}),
            "reference_cfg": ("FLOAT", {"default": 2.5, "min": 1.0, "max": 20.0, "step": 0.05,
                                        "tooltip": "Guidance towards the portrait's identity (1 = off)."}),
            "audio_cfg": ("FLOAT", {"default": 3.5, "min": 1.0, "max": 20.0, "step": 0.05,
                                    "tooltip": "Guidance towards the audio: stronger lip and expression sync (1 = off)."}),
            "frames_per_clip": ("INT", {"default": 12, "min": 1, "max": 64,
                                        "tooltip": "Frames generated together (EMO's f; the paper uses 12)."}),
            "motion_frame_count": ("INT", {"default": 4, "min": 0, "max": 32,
                                           "tooltip": "Earlier frames each clip continues from (EMO's n; the paper "
                                                      "uses 4). n + f must fit the model's temporal modules."}),
            "speed": ("FLOAT", {"default": -1.0, "min": -1.0, "max": 10.0, "step": 0.01,
                                "tooltip": "Head rotation speed in degrees per frame for the speed layers; "
                                           "-1 turns them off."}),
        }, "optional": {
            "speed_curve": ("STRING", {"default": "", "multiline": False,
                                       "tooltip": "Per-frame speed instead of `speed`: numbers ('0.2, 0.8') or "
                                                  "keyframes ('0:0.2, 3s:1.0'). Empty: use `speed`."}),
            "motion_frames": (EMO_MOTION, {"tooltip": "Continue from an earlier video (EMO Motion Frames)."}),
            "motion_cfg": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 20.0, "step": 0.05,
                                     "tooltip": "Guidance towards the motion frames (1 = off). Above 1 each clip "
                                                "follows the one before more closely; below 1 it leans towards "
                                                "what a first clip would do, from the portrait's pose, against "
                                                "drift (the demo workflows: 0.5). Costs one more batch entry, and "
                                                "its memory, on every clip that has motion frames: from the "
                                                "second on, or all with a motion_frames input."}),
            "overlap_frames": ("INT", {"default": 0, "min": 0, "max": 63,
                                       "tooltip": "Each clip re-denoises this many of the previous clip's last frames "
                                                  "(held to them) with its new ones, so it starts where the last one "
                                                  "ended: smoother clip boundaries for frames_per_clip / "
                                                  "(frames_per_clip - overlap) the compute. Not in the paper. 0 = off."}),
            "shared_noise": ("BOOLEAN", {"default": False,
                                         "tooltip": "Every clip starts from the first clip's noise, so the details "
                                                    "the noise decides (shading, texture) repeat instead of jumping "
                                                    "at each clip boundary; slightly softer faces. Not in the paper."}),
            "guidance_rescale": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.05,
                                           "tooltip": "Pulls the guided prediction's spread back towards the fully "
                                                      "conditioned one's by this share, against the over-saturated colours strong "
                                                      "guidance gives with zero-terminal-SNR models (Lin et al. 2023 "
                                                      "use 0.7). 0 = off."}),
        }}

    def sample(self, emo_model: EMOBundle, reference: Reference, audio_embeds: AudioEmbeds, seed, steps, scheduler,
               reference_cfg, audio_cfg, frames_per_clip, motion_frame_count, speed, speed_curve="",
               motion_frames: Motion | None = None, motion_cfg=1.0, overlap_frames=0, shared_noise=False,
               guidance_rescale=0.0):
        settings = SamplerSettings(steps=steps, scheduler=scheduler, reference_cfg=reference_cfg, audio_cfg=audio_cfg,
                                   motion_cfg=motion_cfg, seed=seed, frames_per_clip=frames_per_clip,
                                   motion_frames=motion_frame_count, overlap_frames=overlap_frames,
                                   shared_noise=shared_noise, guidance_rescale=guidance_rescale)
        settings.validate()
        num_frames = audio_embeds.num_frames
        curve = parse_speed_curve(speed_curve or "", num_frames, audio_embeds.fps)
        speeds = curve if curve is not None else (None if speed < 0 else float(speed))
        clips = len(clip_plan(num_frames, frames_per_clip, overlap_frames, motion_frame_count,
                               given=0 if motion_frames is None else len(motion_frames.latents)))
        progress = host.Progress(clips * steps)

        def on_step(info):
            host.check_interrupted()
            progress.update(info.clip * info.num_steps + info.step + 1, info.latents[0, -1:])

        frames, latents = [], []
        with emo_model.use() as (model, codec):
            if model.config.audio_layers != audio_embeds.features.shape[1] or \
                    model.config.audio_dim != audio_embeds.features.shape[2]:
                raise InputError(f"this EMO model takes audio features of {model.config.audio_layers} layers x "
                                 f"{model.config.audio_dim}, the audio embeds are {tuple(audio_embeds.features.shape[1:])}"
                                 ": encode the audio with the encoder the model was trained with")
            for clip in sample_clips(model, codec.decode, reference_latents=reference.latents,
                                     reference_features=reference.features, frame_audio=audio_embeds.features,
                                     num_frames=num_frames, settings=settings, face_mask=reference.face_mask,
                                     speed=speeds, callback=on_step,
                                     initial_motion=None if motion_frames is None else motion_frames.latents):
                frames.append(clip.frames)
                latents.append(clip.latents)
            scaling = codec.scaling
        images = torch.cat(frames).float().div_(255.0)
        # ComfyUI LATENTs hold unscaled VAE latents (the model's latent format scales them)
        return images, {"samples": torch.cat(latents) / scaling}, float(audio_embeds.fps)
