"""Benchmark: seconds per generated frame and peak memory of clip-by-clip sampling.

    python -m emo_model.benchmark --geometry tiny --resolution 64 --steps 4 --device cpu
    python -m emo_model.benchmark --geometry sd15 --resolution 512 --steps 40 --device cuda --dtype fp16

Weights are random (speed does not depend on them); the VAE is SD1.5's for `sd15` and a small
one for `tiny`. For each audio length it runs the full sampler (ReferenceNet, audio projection,
guidance batch, scheduler, VAE decode) and, separately, only the Backbone calls the sampler
makes, and prints the ratio (target: within 2x). Peak memory is the accelerator's peak
allocation (CUDA) or the process's peak RSS growth (CPU; each length runs in a fresh process so
the peaks compare). Repeats give medians.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _build(args):
    from diffusers import AutoencoderKL

    from .config import EMOConfig
    from .model import EMOModel
    from .weights import SD15_VAE_CONFIG

    torch.manual_seed(0)
    config = EMOConfig.sd15() if args.geometry == "sd15" else EMOConfig.tiny()
    with torch.device(args.device):
        model = EMOModel(config).to(DTYPES[args.dtype]).eval()
        vae_config = SD15_VAE_CONFIG if args.geometry == "sd15" else dict(
            block_out_channels=(32, 32, 64, 64), layers_per_block=1, norm_num_groups=8, latent_channels=4,
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
        vae = AutoencoderKL.from_config(vae_config).to(DTYPES[args.dtype]).eval()
    return config, model, vae


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _median_seconds(fn, args) -> float:
    times = []
    for _ in range(args.repeats):
        _sync(args.device)
        start = time.perf_counter()
        fn()
        _sync(args.device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _rss_mib() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(args) -> dict:
    """One audio length in this process: {'frames', 's_per_frame', 'backbone_s_per_frame', 'peak_mib'}."""
    from .sampler import SamplerSettings, guidance_branches, sample_clips
    from .vae import LatentCodec

    config, model, vae = _build(args)
    codec = LatentCodec(vae, config.latent_scaling)
    frames = round(args.seconds * args.fps)
    latent = args.resolution // config.vae_scale_factor
    settings = SamplerSettings(steps=args.steps, scheduler=args.scheduler)
    reference = torch.randn(1, 4, latent, latent)
    audio = torch.randn(frames, config.audio_layers, config.audio_dim)

    def full():
        for _ in sample_clips(model, codec.decode, reference_latents=reference, frame_audio=audio,
                              num_frames=frames, settings=settings, speed=0.8):
            pass

    f, n = config.frames_per_clip, config.motion_frames
    clips = -(-frames // f)
    batch = len(guidance_branches(settings.reference_cfg, settings.audio_cfg))

    @torch.inference_mode()
    def backbone_only():
        ref = model.reference_features(reference.to(model.device))
        cond = model.condition(f, reference=ref, reference_keep=torch.tensor([False, True, True][-batch:]),
                               audio_windows=torch.randn(f, 5, config.audio_layers, config.audio_dim),
                               audio_keep=torch.tensor([False, False, True][-batch:]), num_motion=n,
                               speed=torch.full((1, n + f), 0.8))
        noisy = torch.randn(batch, f, 4, latent, latent, device=model.device, dtype=model.dtype)
        for _ in range(clips * args.steps):
            model.denoise(noisy, 500, cond)

    base_rss = _rss_mib()
    if torch.device(args.device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    full_time = _median_seconds(full, args)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if torch.device(args.device).type == "cuda"
            else _rss_mib() - base_rss)
    backbone_time = _median_seconds(backbone_only, args)
    return {"seconds": args.seconds, "frames": frames, "clips": clips,
            "s_per_frame": full_time / frames, "backbone_s_per_frame": backbone_time / frames,
            "peak_mib": peak}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--geometry", choices=["tiny", "sd15"], default="tiny")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--scheduler", default="ddim")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--seconds", type=float, nargs="+", default=[1.0, 3.0],
                   help="audio lengths to compare (peak memory should not grow with them)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # internal: one length, JSON out
    args = p.parse_args(argv)
    if args.one:
        args.seconds = args.seconds[0]
        with torch.no_grad():  # scoped: main() is also called in-process (tests), never leak the mode
            print(json.dumps(measure(args)))
        return
    rows = []
    for seconds in args.seconds:  # a fresh process per length, so peak memory compares
        cmd = [sys.executable, "-m", "emo_model.benchmark", "--one", "--seconds", str(seconds)] + [
            f"--{k}={v}" for k, v in vars(args).items() if k not in ("seconds", "one")]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    print(f"geometry={args.geometry} resolution={args.resolution} steps={args.steps} scheduler={args.scheduler} "
          f"device={args.device} dtype={args.dtype} fps={args.fps:g} repeats={args.repeats} (medians)")
    print("| audio s | frames | clips | s/frame | backbone-only s/frame | ratio | peak MiB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['seconds']:g} | {r['frames']} | {r['clips']} | {r['s_per_frame']:.4f} | "
              f"{r['backbone_s_per_frame']:.4f} | {r['s_per_frame'] / r['backbone_s_per_frame']:.2f} | {r['peak_mib']:.0f} |")


if __name__ == "__main__":
    main()
