"""Train a small VAE (diffusers `AutoencoderKL`) for a small EMO model on prepared datasets.

    python -m emo_model.train.vae --config configs/demo/vae.json [--set key=value ...]

SD1.5's VAE is 84 M parameters and not available offline; a model trained on one narrow domain
(the synthetic cartoons) needs far less. This trains one with SD's 4 latent channels and a
down-sampling factor of 2^(len(block_out_channels) - 1) (SD: 8; the EMO geometry's
`vae_scale_factor` must match it) on the frames of the training clips: L1 + MSE reconstruction plus
a small KL term, no adversarial loss; optionally each frame's mouth region weighs more
(`mouth_loss_weight`, as in the EMO trainer). At the end the latents' standard deviation over the training
frames sets `scaling_factor` (SD's 0.18215 was found the same way), so the diffusion model sees
unit-variance latents, unless the config fixes `scaling_factor`.

Output folder: vae.safetensors (the layout EMO checkpoints embed: load with
`emo_model.checkpoint.load_checkpoint_vae`, or give it as the EMO trainer's `vae`), loss.jsonl,
loss.png, train_config.json. Every step's batch and posterior noise come from a generator seeded by
(seed, step), so a run is reproducible on the same hardware.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from ..checkpoint import load_checkpoint_vae, save_vae_file
from ..data import load_index, read_clip, read_clip_frames
from ..errors import EMOError
from .config import ConfigError, apply_overrides, lr_schedule_problem
from .data import face_region_mask, mouth_box
from .hue import hue_angles, hue_matrices, turn_hues
from .loss_log import LossLog, plot_losses
from .trainer import learning_rate, step_generator

log = logging.getLogger("emo_model.train.vae")
FINAL = "vae.safetensors"


@dataclass
class VAETrainConfig:
    data: list[str]
    output_dir: str
    resolution: int = 128
    block_out_channels: list[int] = dataclasses.field(default_factory=lambda: [32, 64, 128, 128])
    layers_per_block: int = 1
    norm_num_groups: int = 16
    latent_channels: int = 4
    batch_size: int = 16
    max_steps: int = 2000
    lr: float = 1e-3
    lr_warmup_steps: int = 50
    lr_schedule: str = "constant"  # constant | cosine (as TrainConfig)
    kl_weight: float = 1e-6
    # Share of frames turned to a random hue (see hue.py): a VAE trained on few identities otherwise
    # learns their palettes and pulls an unseen portrait's colours towards them.
    hue_augment: float = 0.0
    # Extra reconstruction weight w on each frame's mouth region (the EMO trainer's MOUTH_REGION of its
    # face box): pixels weigh 1 + w there, not renormalised. The mouth is a few pixels of a frame, and a
    # VAE that blurs it on unseen faces caps the lip sync of every model trained on its latents.
    mouth_loss_weight: float = 0.0
    log_every: int = 25
    threads: int | None = None  # torch intra-op threads; None = torch's default
    # Fine-tuning: start from this VAE file (vae.safetensors or an EMO checkpoint with a VAE); with
    # decoder_only the encoder and its latent scaling stay exactly as they are, so an EMO model
    # trained on its latents stays valid while the decoder gets better (the demo model's last step).
    init_vae: str | None = None  # (its geometry is used; the block fields above are then ignored)
    decoder_only: bool = False
    # Latent scaling: None = 1 / std of the trained encoder's latents (as SD found 0.18215); a number
    # fixes it. Kept as is when decoder_only.
    scaling_factor: float | None = None
    seed: int = 0

    @classmethod
    def from_file(cls, path, overrides=()) -> "VAETrainConfig":
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read VAE training config {path}: {e}") from e
        if isinstance(raw, dict):
            apply_overrides(raw, overrides)
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(raw, dict) or set(raw) - names or not {"data", "output_dir"} <= set(raw):
            raise ConfigError(f"VAE training config {path} must be an object with 'data' and 'output_dir' and only "
                              f"the keys {sorted(names)}")
        if isinstance(raw["data"], str):
            raw["data"] = [raw["data"]]
        config = cls(**raw)
        factor = 2 ** (len(config.block_out_channels) - 1)
        if len(config.block_out_channels) < 2 or config.resolution % max(factor, 8):
            raise ConfigError(f"block_out_channels needs at least 2 widths (down-sampling 2^(widths - 1), here "
                              f"{factor}) and resolution a multiple of 8 and of that; got {config.block_out_channels}, "
                              f"{config.resolution}")
        if config.mouth_loss_weight < 0:
            raise ConfigError(f"mouth_loss_weight must be >= 0, got {config.mouth_loss_weight}")
        if not 0.0 <= config.hue_augment <= 1.0:
            raise ConfigError(f"hue_augment must be in 0..1, got {config.hue_augment}")
        if config.decoder_only and not config.init_vae:
            raise ConfigError("decoder_only fine-tunes a trained VAE: set init_vae")
        if any(c % config.norm_num_groups for c in config.block_out_channels):
            raise ConfigError(f"every block width must be a multiple of norm_num_groups={config.norm_num_groups}")
        schedule_problem = lr_schedule_problem(config.lr_schedule, config.lr_warmup_steps, config.max_steps)
        if schedule_problem:
            raise ConfigError(schedule_problem)
        return config

    def vae_config(self) -> dict:
        return {"in_channels": 3, "out_channels": 3, "latent_channels": self.latent_channels,
                "block_out_channels": tuple(self.block_out_channels), "layers_per_block": self.layers_per_block,
                "norm_num_groups": self.norm_num_groups, "sample_size": self.resolution,
                "down_block_types": ("DownEncoderBlock2D",) * len(self.block_out_channels),
                "up_block_types": ("UpDecoderBlock2D",) * len(self.block_out_channels)}


def load_frames(folders: list[str], resolution: int) -> torch.Tensor:
    """Every frame of every clip, uint8 [N, 3, R, R] (the synthetic demo set is ~0.6 GB at 128²)."""
    out = []
    for folder in folders:
        for clip in load_index(folder)["clips"]:
            frames = torch.from_numpy(read_clip_frames(folder, clip["id"], 0, int(clip["num_frames"])))
            frames = frames.permute(0, 3, 1, 2)
            if frames.shape[-2:] != (resolution, resolution):
                frames = F.interpolate(frames.float(), size=(resolution, resolution), mode="bilinear",
                                       antialias=True).round().clamp(0, 255).to(torch.uint8)
            out.append(frames)
    return torch.cat(out)


def load_mouth_masks(folders: list[str], resolution: int) -> torch.Tensor:
    """Each frame's mouth region (the EMO trainer's, from its face box) in the order of `load_frames`,
    bool [N, 1, R, R]."""
    out = []
    for folder in folders:
        for clip in load_index(folder)["clips"]:
            tensors = read_clip(folder, clip["id"])
            height, width = (int(v) for v in tensors["metadata"]["resolution"].split("x"))
            boxes = tensors["face_boxes"].float()[:int(clip["num_frames"])]
            out += [face_region_mask(mouth_box(box), height, width, resolution).bool() for box in boxes]
    return torch.stack(out)


def train_vae(config: VAETrainConfig) -> Path:
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(json.dumps(dataclasses.asdict(config), indent=1))
    frames = load_frames(config.data, config.resolution)
    log.info("%d frames of %d²", len(frames), config.resolution)
    mouths = load_mouth_masks(config.data, config.resolution) if config.mouth_loss_weight else None
    torch.manual_seed(config.seed)
    if config.init_vae:
        vae = load_checkpoint_vae(config.init_vae)
        if vae is None:
            raise ConfigError(f"{config.init_vae} holds no VAE")
        vae.train()
    else:
        vae = AutoencoderKL.from_config(config.vae_config()).train()
    if config.decoder_only:
        vae.encoder.requires_grad_(False)
        vae.quant_conv.requires_grad_(False)
    trained = [p for p in vae.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=config.lr, weight_decay=0.0)
    losses = LossLog(out / "loss.jsonl")
    losses.truncate_after(0)
    started, running = time.monotonic(), []
    with torch.enable_grad():
        for step in range(config.max_steps):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, step)
            g = step_generator(config.seed, step, 0, 0)
            pixels, weights = training_batch(frames, config, g, mouths)
            with torch.set_grad_enabled(not config.decoder_only):
                posterior = vae.encode(pixels).latent_dist
            # decoder_only: the mode, as EMO's latents are (LatentCodec.encode)
            noise = torch.randn(posterior.mean.shape, generator=g)
            latents = posterior.mean if config.decoder_only else posterior.mean + posterior.std * noise
            decoded = vae.decode(latents).sample
            if weights is None:
                reconstruction = F.l1_loss(decoded, pixels) + F.mse_loss(decoded, pixels)
            else:  # the same L1 + MSE, each pixel weighted
                reconstruction = (((decoded - pixels).abs() + (decoded - pixels).pow(2)) * weights).mean()
            loss = reconstruction if config.decoder_only else reconstruction + config.kl_weight * posterior.kl().mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trained, 1.0)
            optimizer.step()
            running.append(reconstruction.item())
            if (step + 1) % config.log_every == 0 or step + 1 == config.max_steps:
                record = {"step": step + 1, "loss": sum(running) / len(running), "lr": learning_rate(config, step),
                          "seconds": round(time.monotonic() - started, 3)}
                running = []
                losses.append(record)
                log.info("step %d/%d  reconstruction %.4f", step + 1, config.max_steps, record["loss"])
    vae.eval()
    if not config.decoder_only:
        vae.register_to_config(scaling_factor=config.scaling_factor or
                               1.0 / latent_std(vae, frames, torch.Generator().manual_seed(config.seed)))
    scale = float(vae.config.scaling_factor)
    psnr = reconstruction_psnr(vae, frames[:: max(1, len(frames) // 256)])
    log.info("scaling_factor %.4f, reconstruction PSNR %.2f dB", scale, psnr)
    final = out / FINAL
    save_vae_file(vae, final, metadata={"training_steps": str(config.max_steps),
                                        "reconstruction_psnr_db": f"{psnr:.2f}"})
    plot_losses(losses.read(), out / "loss.png")
    return final


def training_batch(frames: torch.Tensor, config: VAETrainConfig, g: torch.Generator,
                   mouths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`batch_size` frames drawn from uint8 `frames` [N, 3, H, W], a `hue_augment` share of them hue-turned,
    in -1..1, and their per-pixel loss weights [B, 1, H, W] (1 + mouth_loss_weight in the mouth region of
    `mouths`, bool [N, 1, H, W]; None without a mouth weight)."""
    index = torch.randint(len(frames), (config.batch_size,), generator=g)
    picked = frames[index]
    weights = None
    if config.mouth_loss_weight:
        weights = 1.0 + config.mouth_loss_weight * mouths[index].float()
    if config.hue_augment > 0:  # drawn only when on, so runs without it keep every draw they had
        turns = hue_matrices(hue_angles(config.batch_size, config.hue_augment, g))
        return turn_hues(picked.float() / 255, turns) * 2 - 1, weights
    return picked.float() / 127.5 - 1, weights


@torch.inference_mode()
def latent_std(vae: AutoencoderKL, frames: torch.Tensor, g: torch.Generator, count: int = 512) -> float:
    pick = frames[torch.randint(len(frames), (min(count, len(frames)),), generator=g)]
    latents = torch.cat([vae.encode(part.float() / 127.5 - 1).latent_dist.mode() for part in pick.split(32)])
    return float(latents.std())


@torch.inference_mode()
def reconstruction_psnr(vae: AutoencoderKL, frames: torch.Tensor) -> float:
    """Mean PSNR (dB, 8-bit) of encode → decode over `frames` uint8 [N, 3, H, W]."""
    values = []
    for part in frames.split(32):
        pixels = part.float() / 127.5 - 1
        decoded = ((vae.decode(vae.encode(pixels).latent_dist.mode()).sample + 1) * 127.5).round().clamp(0, 255)
        mse = (decoded - part.float()).pow(2).flatten(1).mean(1).clamp(min=1e-10)
        values.append(10 * torch.log10(255.0 ** 2 / mse))
    return float(torch.cat(values).mean())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emo_model.train.vae", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="VAE training config JSON (configs/demo/vae.json)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config entry; VALUE is JSON (else a string). Repeatable.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        final = train_vae(VAETrainConfig.from_file(args.config, args.set))
    except EMOError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"trained VAE: {final}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
