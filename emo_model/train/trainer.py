"""The training loop: one stage of EMO on prepared data, on CPU, one GPU or many (accelerate).

A "step" is one optimizer step of `gradient_accumulation_steps` micro-batches of `batch_size`
samples per process. Every random draw of micro-batch m of step k on process r (clip, frames,
reference frame, CFG/motion dropout, timesteps, noise) comes from a fresh `torch.Generator` seeded
from (seed, k, m, r) on the CPU. So the state that a resume needs is only the model, the optimizer,
the step and the loss-log accumulator; checkpoints are taken at step boundaries (no half-accumulated
gradients), and a killed run resumed from its last checkpoint redoes exactly the lost steps and
ends bitwise equal to an uninterrupted run (same hardware, same process count).

The learning rate is a pure function of the step (linear warm-up, then constant or a cosine decay to
0 at max_steps): no scheduler state.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, set_seed

from ..checkpoint import load_emo_model, save_emo_checkpoint
from ..vae import LatentCodec, vae_scale_factor
from . import state as ckpt
from .config import ConfigError, TrainConfig
from .data import Batch, FrameEncoder, TrainData
from .freeze import apply_freezing, stage_groups
from .hue import hue_angles, hue_matrices, turn_hues
from .loss_log import LossLog, plot_losses
from .objective import Objective
from .setup import adopt_config, build_training_model, load_training_vae, own_storage

log = logging.getLogger("emo_model.train")
FINAL = "emo.safetensors"
# Changing these between a run and its resume is harmless; any other change is warned about.
_RESUME_FREE = {"max_steps", "save_every", "keep_checkpoints", "log_every", "output_dir", "save_vae", "frame_cache_mb"}


def step_generator(seed: int, step: int, micro: int, rank: int) -> torch.Generator:
    digest = hashlib.sha256(f"{seed}/{step}/{micro}/{rank}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2 ** 63 - 1))


def learning_rate(config: TrainConfig, step: int) -> float:
    """The rate of optimizer step `step` (0-based). Cosine: from lr at the end of the warm-up towards 0
    at max_steps; annealing settles the weights that a constant rate leaves noisy (usually a lower final
    loss for the same steps)."""
    warmup = config.lr_warmup_steps  # validated >= 0
    if step < warmup:
        return config.lr * (step + 1) / warmup
    if config.lr_schedule == "cosine":
        progress = min(1.0, (step - warmup) / max(1, config.max_steps - warmup))
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    return config.lr


@torch.enable_grad()  # whatever mode the caller is in (e.g. a host that runs everything under no_grad)
def train(config: TrainConfig, *, resume: str | None = None,
          on_step: Callable[[int, float], None] | None = None) -> Path:
    """Train one stage; returns OUT/emo.safetensors. `resume`: None (fresh run), "auto" (newest
    checkpoint in OUT, fresh if none) or a checkpoint folder. `on_step(step, loss)` runs after each
    step (after that step's checkpoint is saved); an exception from it stops training."""
    accelerator = Accelerator(
        mixed_precision=config.mixed_precision, gradient_accumulation_steps=config.gradient_accumulation_steps,
        cpu=not torch.cuda.is_available(),
        # Stage 1 trains the whole ReferenceNet, whose layers after its last captured feature get no
        # gradient; DDP must be told (only matters with several processes).
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    out = Path(config.output_dir)
    emo_config = config.emo_config()
    # fp32 whatever the mixed precision: SD's VAE overflows in fp16, and the saved copy stays exact.
    vae = load_training_vae(config, accelerator.device)
    if vae_scale_factor(vae) != emo_config.vae_scale_factor:
        raise ConfigError(f"the VAE down-samples {vae_scale_factor(vae)}x but the geometry's vae_scale_factor is "
                          f"{emo_config.vae_scale_factor}: set geometry.vae_scale_factor (and face_locator_channels)")
    codec = LatentCodec(vae)
    data = TrainData(config.data, stage=config.stage, resolution=config.resolution,
                     frames=emo_config.frames_per_clip, motion_frames=emo_config.motion_frames,
                     audio_window=emo_config.audio_window, audio_shape=(emo_config.audio_layers, emo_config.audio_dim),
                     frame_cache_mb=config.frame_cache_mb, encoder=frame_encoder(codec, config),
                     face_mask_span=config.face_mask_span, face_mask_widen=config.face_mask_widen)
    emo_config = dataclasses.replace(emo_config, fps=data.fps)
    checkpoint = _resume_point(out, resume)

    set_seed(config.seed)  # only fresh layers' initialisation draws from the global generators
    if checkpoint is None:
        model = build_training_model(config, emo_config)
    else:
        model = load_emo_model(checkpoint / ckpt.MODEL).float().train()
        adopt_config(model, emo_config, checkpoint / ckpt.MODEL)
    own_storage(model)
    params = apply_freezing(model, stage_groups(config.stage, config.trainable))
    if config.gradient_checkpointing:
        model.backbone.enable_gradient_checkpointing()
        model.reference_net.enable_gradient_checkpointing()
    # Fused: one kernel for all parameters (on CPU 4x faster than the per-tensor loop for our 700 tensors).
    optimizer = torch.optim.AdamW(params, lr=config.lr, betas=(config.adam_beta1, config.adam_beta2),
                                  eps=config.adam_epsilon, weight_decay=config.weight_decay,
                                  fused=accelerator.device.type in ("cpu", "cuda"))
    model, optimizer = accelerator.prepare(model, optimizer)

    step, log_sum, log_count, seconds = 0, 0.0, 0, 0.0
    if checkpoint is not None:
        saved, optimizer_state = ckpt.load_checkpoint_state(checkpoint)
        optimizer.load_state_dict(optimizer_state)
        step, log_sum, log_count, seconds = saved["step"], saved["log_sum"], saved["log_count"], saved["seconds"]
        if accelerator.scaler is not None and saved.get("scaler"):
            accelerator.scaler.load_state_dict(saved["scaler"])
        _warn_changes(saved.get("config", {}), config)
        log.info("resuming from %s (step %d)", checkpoint, step)

    objective = Objective(emo_config.noise, config.noise_offset, config.min_snr_gamma)
    losses = LossLog(out / "loss.jsonl")
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(config.to_json())
        losses.truncate_after(step)  # drop what a killed run logged after its last save (all of it if fresh)

    started = time.monotonic() - seconds
    while step < config.max_steps:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        micro_losses = []
        for micro in range(config.gradient_accumulation_steps):
            g = step_generator(config.seed, step, micro, accelerator.process_index)
            inputs = model_inputs(data.sample(config.batch_size, g), codec, objective, config, g, accelerator.device)
            with accelerator.accumulate(model):
                with accelerator.autocast():
                    prediction = model(inputs.noisy, inputs.timesteps.to(accelerator.device), **inputs.conditions)
                loss = objective.loss(prediction, inputs.target, inputs.timesteps, inputs.weights)
                accelerator.backward(loss)
                if accelerator.sync_gradients and config.max_grad_norm:
                    accelerator.clip_grad_norm_(params, config.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            micro_losses.append(loss.detach().float())
        step += 1
        step_loss = accelerator.reduce(torch.stack(micro_losses).mean(), reduction="mean").item()
        log_sum, log_count = log_sum + step_loss, log_count + 1
        if step % config.log_every == 0 or step == config.max_steps:
            record = {"step": step, "loss": log_sum / log_count, "lr": learning_rate(config, step - 1),
                      "seconds": round(time.monotonic() - started, 3)}
            log_sum, log_count = 0.0, 0
            if accelerator.is_main_process:
                losses.append(record)
                log.info("step %d/%d  loss %.4f  lr %.3g", step, config.max_steps, record["loss"], record["lr"])
        if step % config.save_every == 0 or step == config.max_steps:
            if accelerator.is_main_process:
                ckpt.save_checkpoint(out, step, model=accelerator.unwrap_model(model),
                                     optimizer_state=optimizer.state_dict(), keep=config.keep_checkpoints,
                                     state={"log_sum": log_sum, "log_count": log_count,
                                            "seconds": time.monotonic() - started,
                                            "scaler": accelerator.scaler.state_dict() if accelerator.scaler else None,
                                            "config": dataclasses.asdict(config)})
            accelerator.wait_for_everyone()
        if on_step is not None:
            on_step(step, step_loss)

    final = out / FINAL
    if accelerator.is_main_process:
        save_emo_checkpoint(accelerator.unwrap_model(model), final, vae=vae if config.save_vae else None,
                            metadata={"training_stage": str(config.stage), "training_steps": str(step),
                                      "training_resolution": str(config.resolution)})
        plot_losses(losses.read(), out / "loss.png")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return final


def _resume_point(out: Path, resume: str | None) -> Path | None:
    if resume is None:
        if ckpt.latest_checkpoint(out) is not None:
            raise ConfigError(f"{out} already holds training checkpoints: pass --resume auto to continue that run, "
                              "or choose another output_dir.")
        return None
    if resume == "auto":
        return ckpt.latest_checkpoint(out)
    path = Path(resume)
    if not path.is_dir():
        raise ckpt.ResumeError(f"checkpoint folder {path} does not exist; checkpoints are {out / ckpt.CHECKPOINTS}/step_*")
    return path


def _warn_changes(saved: dict, config: TrainConfig) -> None:
    now = json.loads(config.to_json())
    # A field added after the checkpoint was saved counts as its default (what that run used).
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}
    free = _RESUME_FREE if now.get("lr_schedule") == "constant" else _RESUME_FREE - {"max_steps"}  # it shapes a decay
    changed = sorted(k for k in now if k not in free and saved.get(k, defaults.get(k)) != now[k])
    if changed:
        log.warning("resuming with changed settings %s: the run will differ from an uninterrupted one", changed)


@dataclass
class StepInputs:
    noisy: torch.Tensor       # [B, F, 4, h, w] on the device
    timesteps: torch.Tensor   # [B] on the CPU
    target: torch.Tensor      # like noisy
    conditions: dict          # EMOModel.forward keyword arguments
    weights: torch.Tensor | None = None  # [B, F, 1, h, w] per-element loss weights, None = uniform


def frame_encoder(codec: LatentCodec, config: TrainConfig) -> FrameEncoder | None:
    """Latents encoded once per clip (see `TrainData`), unless hue augmentation must turn the pixels first."""
    if config.hue_augment > 0:
        return None
    channels, size = codec.vae.config.latent_channels, config.resolution // vae_scale_factor(codec.vae)
    # Clone outside inference mode: the cached latents are ordinary tensors that autograd may save.
    return FrameEncoder(lambda pixels: codec.encode(pixels).float().cpu().clone(), frame_bytes=4 * channels * size * size)


def model_inputs(batch: Batch, codec: LatentCodec, objective: Objective, config: TrainConfig,
                  g: torch.Generator, device) -> StepInputs:
    """Latents, noise and conditioning of one micro-batch; the draws' order is fixed (see module doc)."""
    size = batch.target.shape[0]
    reference_keep = torch.rand(size, generator=g) >= config.reference_dropout
    audio_keep = torch.rand(size, generator=g) >= config.audio_dropout
    motion_kept = bool(torch.rand((), generator=g) >= config.motion_dropout)

    def encode(frames: torch.Tensor) -> torch.Tensor:
        if batch.encoded:
            return frames.to(device).contiguous()  # still-motion frames are an expanded view
        # LatentCodec works in inference mode; clone to get ordinary tensors autograd may save.
        return codec.encode(frames.flatten(0, -4)).clone().float().unflatten(0, frames.shape[:-3])

    if config.hue_augment > 0:  # drawn only when on, so runs without it keep every draw they had
        if batch.encoded:
            raise ValueError("hue augmentation turns pixels: draw the batch without a FrameEncoder")
        batch = rotate_hues(batch, hue_angles(size, config.hue_augment, g))
    latents = encode(batch.target)                       # [B, F, 4, h, w]
    timesteps, noise = objective.draw(latents, g)
    noise = noise.to(device)
    kwargs = {"reference_latents": encode(batch.reference), "face_mask": batch.face_mask.to(device),
              "reference_keep": reference_keep.to(device), "temporal": config.stage > 1}
    # Drawn last and only where it applies, so every other draw stays what it was without it.
    still = (config.stage > 1 and motion_kept and config.still_motion > 0
             and bool(torch.rand((), generator=g) < config.still_motion))
    if config.stage > 1:
        n = batch.motion.shape[1]
        motion = batch.motion[:, -1:].expand_as(batch.motion) if still else batch.motion
        # Zero motion maps (num_motion without motion latents) are what the first clip gets at inference.
        kwargs["motion_latents"] = encode(motion) if motion_kept else None
        kwargs["num_motion"] = n
        kwargs["audio_windows"] = batch.audio_windows.to(device)
        kwargs["audio_keep"] = audio_keep.to(device)
    if config.stage == 3:
        speed = batch.speed.clone()
        if still:
            speed[:, :n] = 0.0
        kwargs["speed"] = speed.to(device)
    return StepInputs(objective.add_noise(latents, noise, timesteps), timesteps,
                      objective.target(latents, noise, timesteps), kwargs,
                      mouth_weights(batch.mouth_mask, latents.shape[-2:], config.mouth_loss_weight))


def rotate_hues(batch: Batch, angles: torch.Tensor) -> Batch:
    """The batch with each sample's reference, motion and target frames (0..1, channels at -3) hue-turned alike."""
    matrices = hue_matrices(angles)

    def turn(pixels: torch.Tensor | None) -> torch.Tensor | None:
        return None if pixels is None else turn_hues(pixels, matrices)

    return dataclasses.replace(batch, reference=turn(batch.reference), motion=turn(batch.motion),
                               target=turn(batch.target))


def mouth_weights(mouth_mask: torch.Tensor, latent_size, weight: float) -> torch.Tensor | None:
    """1 + weight × (the share of each latent pixel that the mouth region covers), [B, F, 1, h, w].
    The mouth is a few latent pixels of the frame, so plain MSE barely rewards lip sync (Hallo weights
    lip and face regions for the same reason)."""
    if not weight:
        return None
    coverage = torch.nn.functional.interpolate(mouth_mask.flatten(0, 1), size=tuple(latent_size), mode="area")
    return 1.0 + weight * coverage.unflatten(0, mouth_mask.shape[:2])
