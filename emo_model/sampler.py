"""Clip-by-clip sampling with motion frames, so any audio length works in flat accelerator memory.

Per video: ReferenceNet on the reference latents once, the Face Locator once. Per clip of f
frames: ReferenceNet on the last n latents of the previous clip (zero maps for the first), the
audio projection and speed encoding once, then `steps` Backbone calls with every guidance branch
in one batch. With `overlap_frames` o > 0 (not in the paper), a clip that continues earlier frames
spends its first o slots on the last o finished frames, held at each step's noise level (the
"replacement" method of Ho et al. 2022, Video Diffusion Models, for extending a video), so its f - o
new frames are denoised together with the frames they follow instead of meeting them at a boundary.
Each finished clip is decoded, moved to the CPU as uint8 and yielded, so only one clip ever lives on
the accelerator. Noise comes from a seeded CPU generator: the same seed gives
the same video on any device.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from .audio.features import frame_windows
from .errors import InputError
from .model import EMOModel
from .schedulers import make_scheduler


@dataclass
class SamplerSettings:
    steps: int = 40
    scheduler: str = "ddim"
    reference_cfg: float = 2.5  # guidance towards the reference identity (1 = off)
    audio_cfg: float = 3.5      # guidance towards the audio (1 = off)
    # guidance towards the motion frames (1 = off): clips follow the previous clip more closely
    motion_cfg: float = 1.0
    seed: int = 0
    frames_per_clip: int | None = None  # None: the model's f
    motion_frames: int | None = None    # None: the model's n
    # False: every clip starts from zero motion maps, as the first one does (the benchmark's ablation)
    reuse_motion: bool = True
    # True: every clip starts from the first clip's noise, so the choices the noise drives (shading,
    # texture) repeat from clip to clip instead of jumping at each boundary. False: fresh noise per clip.
    shared_noise: bool = False
    # o > 0: each clip after the first re-denoises the previous clip's last o frames (held to the finished
    # latents at every step's noise level) with f - o new ones; smoother boundaries for f / (f - o) the compute
    overlap_frames: int = 0
    # True: held frames are re-noised with the noise they were denoised from in the previous clip, so the
    # clip sees them as that clip's last steps did (smoother joins). False: with this clip's own noise.
    carry_overlap_noise: bool = True
    # phi in 0..1: the guided prediction's standard deviation is pulled back to the full branch's by this share
    # (Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps are Flawed", §3.4; 0 = off)
    guidance_rescale: float = 0.0
    schedule_overrides: dict | None = None  # prediction_type / rescale_betas_zero_snr / timestep_spacing

    def validate(self):
        if self.steps < 1:
            raise InputError(f"steps must be >= 1, got {self.steps}")
        if self.frames_per_clip is not None and self.frames_per_clip < 1:
            raise InputError(f"frames per clip must be >= 1, got {self.frames_per_clip}")
        if self.motion_frames is not None and self.motion_frames < 0:
            raise InputError(f"motion frames must be >= 0, got {self.motion_frames}")
        if self.overlap_frames < 0 or (self.frames_per_clip is not None and self.overlap_frames >= self.frames_per_clip):
            raise InputError(f"overlap frames must be >= 0 and fewer than the frames per clip, got {self.overlap_frames}")
        for name in ("reference_cfg", "audio_cfg", "motion_cfg"):
            scale = getattr(self, name)
            if not (math.isfinite(scale) and scale >= 0):  # NaN would fill the video with NaNs
                raise InputError(f"{name} must be a finite number >= 0 (1 = off), got {scale}")
        if not 0.0 <= self.guidance_rescale <= 1.0:  # also rejects NaN
            raise InputError(f"guidance_rescale must be between 0 (off) and 1, got {self.guidance_rescale}")


@dataclass
class StepInfo:
    clip: int
    num_clips: int
    step: int
    num_steps: int
    latents: torch.Tensor  # [1, f, 4, h, w] current latents of this clip


@dataclass
class ClipResult:
    index: int
    frames: torch.Tensor   # uint8 [f', H, W, 3] on the CPU (f' < f only for the last clip)
    latents: torch.Tensor  # [f', 4, h, w] on the CPU


def guidance_branches(reference_cfg: float, audio_cfg: float, motion_cfg: float = 1.0) -> list[tuple[bool, bool, bool]]:
    """(keep reference, keep audio, keep motion frames) per batch entry, only those the guidance needs."""
    branches = []
    if reference_cfg != 1.0:
        branches.append((False, False, True))
    if reference_cfg != 1.0 or audio_cfg != 1.0:
        branches.append((True, False, True))
    if motion_cfg != 1.0:  # audio guidance 0 means no audio anywhere, the motion term's branches included
        branches.append((True, audio_cfg != 0.0, False))
    branches.append((True, True, True))
    return branches


def combine_guidance(pred: torch.Tensor, reference_cfg: float, audio_cfg: float,
                     motion_cfg: float = 1.0) -> torch.Tensor:
    """ref + s_audio (full - ref) + (s_ref - 1)(ref - uncond) + (s_motion - 1)(full - no motion), for the
    batch from `guidance_branches` (uncond + s_ref (ref - uncond) + s_audio (full - ref) when s_motion = 1).
    With s_audio = 0 the motion term is (ref - ref without motion frames), so that no audio reaches the result."""
    branches = guidance_branches(reference_cfg, audio_cfg, motion_cfg)
    if pred.shape[0] % len(branches):
        raise ValueError(f"a batch of {pred.shape[0]} does not split into the {len(branches)} guidance branches")
    parts = dict(zip(branches, pred.chunk(len(branches))))
    full = out = parts[(True, True, True)]
    ref = parts.get((True, False, True))
    if ref is not None:
        out = ref + audio_cfg * (full - ref)
    uncond = parts.get((False, False, True))
    if uncond is not None:
        out = out + (reference_cfg - 1.0) * (ref - uncond)
    no_motion = parts.get((True, audio_cfg != 0.0, False))
    if no_motion is not None:  # away from what zero motion maps (no previous clip) would give
        with_motion = full if audio_cfg != 0.0 else ref
        out = out + (motion_cfg - 1.0) * (with_motion - no_motion)
    return out


def rescale_guidance(guided: torch.Tensor, full: torch.Tensor, phi: float) -> torch.Tensor:
    """Mix the guided prediction with its copy rescaled to the fully conditioned prediction's standard deviation
    (per batch entry): strong guidance inflates it, which over-saturates colours, most of all with a
    zero-terminal-SNR schedule (Lin et al. 2023, §3.4)."""
    dims = list(range(1, guided.ndim))
    rescaled = guided * (full.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True))
    return phi * rescaled + (1.0 - phi) * guided


def clip_indices(start: int, length: int, total: int) -> torch.Tensor:
    """Frame indices start..start+length, clamped into the video (edge frames repeat)."""
    return torch.arange(start, start + length).clamp(0, total - 1)


def clip_plan(num_frames: int, frames_per_clip: int, overlap: int = 0, motion_frames: int = 0,
              given: int = 0) -> list[tuple[int, int]]:
    """(first new frame, overlapped earlier frames) of every clip. A clip holds up to `overlap` earlier frames
    (the `given` initial motion frames, then the finished ones) and makes f - held new ones. Where fewer than
    motion_frames + overlap earlier frames exist, the motion frames come first: a clip only holds frames
    beyond the n it takes as motion frames."""
    if not 0 <= overlap < frames_per_clip:
        raise InputError(f"overlap frames must be >= 0 and fewer than the {frames_per_clip} frames per clip, got {overlap}")
    plan, start = [], 0
    while start < num_frames:
        known = min(overlap, max(0, given + start - motion_frames))
        plan.append((start, known))
        start += frames_per_clip - known
    return plan


def speed_curve(speed, num_frames: int) -> torch.Tensor:
    """A constant or a per-frame head speed (degrees per frame) → [num_frames] float."""
    curve = torch.as_tensor(speed, dtype=torch.float32).flatten()
    if curve.numel() < 1 or not torch.isfinite(curve).all():
        raise InputError("speed must be a finite number or a per-frame list of finite numbers")
    if bool((curve < 0).any()):
        raise InputError(f"speed {float(curve.min()):g}: the speed layers take the head rotation speed, 0 or more "
                         "degrees per frame; leave speed out (-1 in the EMO Sampler node) to turn them off")
    if curve.numel() == 1:
        return curve.expand(num_frames).clone()
    if curve.numel() != num_frames:  # a curve of another length is stretched over the video
        curve = torch.nn.functional.interpolate(curve[None, None], size=num_frames, mode="linear", align_corners=True)[0, 0]
    return curve


@torch.inference_mode()
def sample_clips(model: EMOModel, decode: Callable[[torch.Tensor], torch.Tensor], *, reference_latents: torch.Tensor,
                 frame_audio: torch.Tensor, num_frames: int, settings: SamplerSettings,
                 face_mask: torch.Tensor | None = None, speed=None, initial_motion: torch.Tensor | None = None,
                 reference_features: list[torch.Tensor] | None = None, callback: Callable[[StepInfo], None] | None = None) -> Iterator[ClipResult]:
    """Generate `num_frames` frames clip by clip.

    reference_latents: [1, 4, h, w]. frame_audio: audio features at the video frame rate,
    [num_frames, L, D] (CPU is fine: each clip's windows move to the model's device). face_mask:
    [1, 1, H, W] pixel-resolution mask or None (= all ones, no guidance). speed: None (no speed
    layers), a number, or a per-frame curve in degrees per frame (0 or more). initial_motion: latents
    [k, 4, h, w] of earlier frames to continue from (the last n are used). reference_features:
    ReferenceNet's output for `reference_latents` when already computed (then it is not rerun).
    `decode` maps latents
    [N, 4, h, w] to uint8 frames [N, H, W, 3]. `callback` runs after every step; an exception
    raised there stops generation (cancellation).
    """
    settings.validate()
    config = model.config
    f = settings.frames_per_clip or config.frames_per_clip
    n = config.motion_frames if settings.motion_frames is None else settings.motion_frames
    if n + f > config.unet.motion_max_frames:
        raise InputError(f"motion frames + frames per clip = {n + f} exceeds the model's {config.unet.motion_max_frames}")
    if num_frames < 1:
        raise InputError("nothing to generate: the audio is shorter than one video frame")
    if frame_audio.shape[0] < num_frames:
        raise InputError(f"audio features cover {frame_audio.shape[0]} frames, {num_frames} requested")
    device, dtype = model.device, model.dtype
    scheduler = make_scheduler(settings.scheduler, config.noise, **(settings.schedule_overrides or {}))
    generator = torch.Generator().manual_seed(settings.seed)

    if reference_features is None:
        reference = model.reference_features(reference_latents.to(device))
    else:
        reference = [r.to(device, dtype) for r in reference_features]
    if face_mask is None:
        h, w = reference_latents.shape[-2:]
        face_mask = torch.ones(1, 1, h * config.vae_scale_factor, w * config.vae_scale_factor)
    face = model.face_features(face_mask.to(device, dtype))
    speeds = None if speed is None else speed_curve(speed, num_frames)
    if settings.overlap_frames >= f:  # checked even where reuse_motion turns it off below
        raise InputError(f"overlap frames must be fewer than the {f} frames per clip, got {settings.overlap_frames}")
    o = settings.overlap_frames if settings.reuse_motion else 0  # without reuse nothing is continued
    history = n + o  # finished latents a clip continues from: n motion frames, then up to o overlapped ones
    previous = None if initial_motion is None or history == 0 or len(initial_motion) == 0 \
        else initial_motion[-history:].to(device, dtype)[None]
    plan = clip_plan(num_frames, f, o, n, given=0 if previous is None else previous.shape[1])
    latent_shape = (1, f, *reference_latents.shape[1:])

    for clip, (start, known) in enumerate(plan):
        motion = held = None
        if previous is not None:
            earlier = previous[:, max(0, previous.shape[1] - known - n):]  # n motion frames, then the held ones
            if earlier.shape[1] < n + known:  # fewer than n earlier frames: repeat the first (plan gives known 0)
                earlier = torch.cat([earlier[:, :1].expand(-1, n + known - earlier.shape[1], -1, -1, -1), earlier], 1)
            if n:
                motion = model.motion_features(earlier[:, :n])
            held = earlier[:, n:]
        motion_cfg = 1.0 if motion is None else settings.motion_cfg  # the first clip has nothing to follow
        branches = guidance_branches(settings.reference_cfg, settings.audio_cfg, motion_cfg)
        flags = torch.tensor(branches, device=device).T  # [3, branches]: keep reference, audio, motion
        first = start - known  # the clip's first slot, an overlapped frame when known > 0
        windows = frame_windows(frame_audio, config.audio_window, clip_indices(first, f, num_frames)).to(device)
        clip_speed = None if speeds is None else speeds[clip_indices(first - n, n + f, num_frames)][None]
        motion_keep = flags[2] if motion_cfg != 1.0 else None  # None: no per-row check in every temporal layer
        cond = model.condition(f, reference=reference, reference_keep=flags[0], audio_windows=windows,
                               audio_keep=flags[1], motion=motion, motion_keep=motion_keep, num_motion=n,
                               speed=clip_speed)

        scheduler.set_timesteps(settings.steps, device=device)
        if clip == 0 or not settings.shared_noise:
            noise = torch.randn(latent_shape, generator=generator)
        latents = noise.to(device, dtype) * scheduler.init_noise_sigma
        if known and clip and settings.carry_overlap_noise:  # the noise the held frames were finished from
            held_noise = carried_noise[:, carried_noise.shape[1] - known:]
        else:
            held_noise = noise[:, :known]
        held_noise = held_noise.to(device, dtype)
        for step, t in enumerate(scheduler.timesteps):
            if known:  # the overlapped slots are the finished frames at this step's noise level
                latents[:, :known] = scheduler.add_noise(held, held_noise, t.reshape(1)).to(dtype)
            model_in = scheduler.scale_model_input(latents, t).expand(len(branches), *latent_shape[1:])
            raw = model.denoise(model_in, t, cond, face)
            pred = combine_guidance(raw, settings.reference_cfg, settings.audio_cfg, motion_cfg)
            if settings.guidance_rescale and len(branches) > 1:
                pred = rescale_guidance(pred, raw.chunk(len(branches))[-1], settings.guidance_rescale)
            latents = scheduler.step(pred.to(latents.dtype), t, latents).prev_sample
            if callback is not None:
                callback(StepInfo(clip, len(plan), step, len(scheduler.timesteps), latents))

        new = latents[:, known:known + min(f - known, num_frames - start)]
        carried_noise = torch.cat([held_noise.cpu(), noise[:, known:known + new.shape[1]]], 1)[:, -o:] if o else None
        if history and settings.reuse_motion:
            previous = new[:, -history:] if previous is None else torch.cat([previous, new], 1)[:, -history:]
        yield ClipResult(clip, decode(new[0]), new[0].float().cpu())
