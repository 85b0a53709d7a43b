"""How much a trained EMO checkpoint relies on each of its conditions, measured on prepared data.

For a fixed set of video samples (drawn as stage 3 draws them: n motion frames, f target frames, a
reference frame from elsewhere in the clip, audio windows, head speed) and fixed noise, the model
predicts the clean latents x0 at a few noise levels t, once with every condition as given and once
with one condition removed or taken from another sample. The x0 mean squared error of each variant
says what that condition is worth to the model: a condition the model ignores costs nothing when it
is removed; one it uses costs error. Two copying baselines put the numbers in scale: x0 taken to be
the last motion frame (what a model that only continued the previous clip would score), or the
reference image.

This is the cheap, low-noise complement of the synthetic benchmark's generated-video ablations:
it needs no sampling and no measurement of generated frames, it shows at which noise levels a
condition acts (layout, pose and colour are decided at high t), and it works on any prepared
dataset, real or synthetic. "Another sample's" conditions are those of the next sample in the batch
(rolled by one), so they are real, well-formed conditions that simply do not match.

    python -m emo_model.train.reliance --checkpoint models/emo/emo-demo.safetensors --data runs/demo/data/train
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import torch

from ..checkpoint import load_emo_model, training_resolution
from ..cli import report
from ..vae import LatentCodec
from .data import FACE_MASK_SPANS, TrainData
from .objective import Objective
from .setup import load_any_vae

TIMESTEPS = (999, 900, 750, 500, 250)
VARIANTS = ("full", "no motion frames", "another sample's motion frames", "no audio", "no reference",
            "another sample's speed", "no speed")
BASELINES = ("copy last motion frame", "copy reference")


@dataclass
class Samples:
    target: torch.Tensor       # [B, F, C, h, w] clean latents
    motion: torch.Tensor       # [B, n, C, h, w]
    reference: torch.Tensor    # [B, C, h, w]
    audio_windows: torch.Tensor
    speed: torch.Tensor        # [B, n + F]
    face_mask: torch.Tensor


def draw_samples(data: TrainData, codec: LatentCodec, count: int, seed: int) -> Samples:
    batch = data.sample(count, torch.Generator().manual_seed(seed))

    def encode(pixels: torch.Tensor) -> torch.Tensor:
        return codec.encode(pixels.flatten(0, -4)).float().unflatten(0, pixels.shape[:-3])

    return Samples(encode(batch.target), encode(batch.motion), encode(batch.reference), batch.audio_windows,
                   batch.speed, batch.face_mask)


def variant_inputs(name: str, s: Samples) -> dict:
    """`EMOModel.forward` keyword arguments of one variant."""
    size = s.target.shape[0]
    other = torch.roll(torch.arange(size), 1)
    keep, drop = torch.ones(size, dtype=torch.bool), torch.zeros(size, dtype=torch.bool)
    kwargs = {"reference_latents": s.reference, "motion_latents": s.motion, "num_motion": s.motion.shape[1],
              "audio_windows": s.audio_windows, "audio_keep": keep, "reference_keep": keep, "speed": s.speed,
              "face_mask": s.face_mask}
    changes = {"full": {}, "no motion frames": {"motion_latents": None},  # zero maps, as the first clip gets
               "another sample's motion frames": {"motion_latents": s.motion[other]},
               "no audio": {"audio_keep": drop}, "no reference": {"reference_keep": drop},
               "another sample's speed": {"speed": s.speed[other]}, "no speed": {"speed": None}}
    kwargs.update(changes[name])
    return kwargs


@torch.no_grad()
def measure_reliance(model, samples: Samples, objective: Objective, timesteps=TIMESTEPS, seed: int = 0,
                     variants=VARIANTS) -> dict:
    """{"x0_mse": {t: {variant: mse}}, "baselines": {name: mse}} with one noise draw shared by all."""
    x0 = samples.target
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    table = {}
    for t in timesteps:
        ts = torch.full((x0.shape[0],), int(t))
        noisy = objective.add_noise(x0, noise, ts)
        table[int(t)] = {}
        for name in variants:
            prediction = model(noisy, ts, **variant_inputs(name, samples)).float()
            table[int(t)][name] = float((objective.predicted_x0(noisy, prediction, ts) - x0).pow(2).mean())
    baselines = {"copy last motion frame": float((samples.motion[:, -1:] - x0).pow(2).mean()),
                 "copy reference": float((samples.reference[:, None] - x0).pow(2).mean())}
    return {"x0_mse": table, "baselines": baselines}


def format_table(result: dict) -> str:
    variants = list(next(iter(result["x0_mse"].values())))
    lines = ["| t | " + " | ".join(variants) + " |", "|---" * (len(variants) + 1) + "|"]
    for t, row in result["x0_mse"].items():
        full = row["full"]
        cells = [f"{row[v]:.4f}" if v == "full" else f"{row[v]:.4f} ({row[v] / full:.2f}x)" for v in variants]
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    lines.append("x0 error of copying baselines: " + ", ".join(f"{k} {v:.4f}" for k, v in result["baselines"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emo_model.train.reliance", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="EMO checkpoint (.safetensors)")
    parser.add_argument("--data", required=True, action="append", help="prepared dataset folder (repeatable)")
    parser.add_argument("--vae", help="VAE (folder/file, or EMO checkpoint holding one); default: the checkpoint's")
    parser.add_argument("--resolution", type=int, default=None, help="default: the checkpoint's training resolution")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--timesteps", default=",".join(map(str, TIMESTEPS)))
    parser.add_argument("--face-mask-span", choices=FACE_MASK_SPANS, default="clip",
                        help="the Face Locator masks the samples get, as the model was trained (its face_mask_span)")
    parser.add_argument("--face-mask-widen", type=float, default=1.0,
                        help="... and its face_mask_widen (1 = off)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)
    if not args.face_mask_widen >= 1:
        parser.error(f"--face-mask-widen must be >= 1 (1 = off), got {args.face_mask_widen}")
    return report(lambda: run(args), format_table, args.json)


@torch.no_grad()  # scoped, not set_grad_enabled(False): callers in the same process keep autograd
def run(args) -> dict:
    model = load_emo_model(args.checkpoint).eval()
    vae = load_any_vae(args.vae or args.checkpoint)
    c = model.config
    resolution = args.resolution or training_resolution(model, "the reliance probe (or pass --resolution)")
    data = TrainData(args.data, stage=3, resolution=resolution, frames=c.frames_per_clip, motion_frames=c.motion_frames,
                     audio_window=c.audio_window, audio_shape=(c.audio_layers, c.audio_dim),
                     face_mask_span=args.face_mask_span, face_mask_widen=args.face_mask_widen)
    samples = draw_samples(data, LatentCodec(vae), args.samples, args.seed)
    timesteps = tuple(int(t) for t in args.timesteps.split(","))
    return measure_reliance(model, samples, Objective(c.noise), timesteps, args.seed)


if __name__ == "__main__":
    sys.exit(main())
