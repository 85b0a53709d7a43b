"""The benchmark's ceiling row for VAEs alone: how well each VAE keeps held-out faces and their mouths.

    python -m emo_model.synthetic.vae_ceiling --vae A.safetensors [B.safetensors ...] --data OUT/eval \
        [--clips 16] [--seconds 2] [--resolution R] [--color-match video] [--json ceiling.json]

Every EMO model is bounded by the VAE it is trained on: what the VAE loses (a mouth on a dark face,
an unseen palette) no model on its latents can show. This runs the benchmark's still-head ground
truth through each VAE (encode → decode, optionally through the same colour match) and measures
PSNR, SSIM and lip sync per clip, in seconds per VAE rather than the benchmark's minutes, so a VAE
can be chosen before any EMO stage is trained on it. Each VAE is a `vae.safetensors` of the VAE
trainer or an EMO checkpoint with its VAE; frames at `--resolution`, by default the VAEs' training
size (their `sample_size`, which the VAE trainer sets to its resolution).
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from ..checkpoint import load_checkpoint_vae
from ..cli import report
from ..color import COLOR_MATCH_MODES
from ..data import load_index
from ..errors import InputError
from ..vae import LatentCodec
from .benchmark import Measures, load_eval_clips, still_renders, vae_reconstruction
from .measure import psnr, ssim

TRUTH = "ground truth renders"


def run_vae_ceiling(vaes, data, *, clips: int = 16, seconds: float = 2.0, resolution: int | None = None,
                    color_match: str | None = None) -> dict:
    if color_match is not None and color_match not in COLOR_MATCH_MODES:
        raise InputError(f"color_match must be one of {COLOR_MATCH_MODES} or None, got {color_match!r}")
    codecs = {}
    for path in vaes:
        vae = load_checkpoint_vae(path)
        if vae is None:
            raise InputError(f"{path} holds no VAE")
        codecs[str(path)] = LatentCodec(vae)
    if resolution is None:
        sizes = {int(codec.vae.config.sample_size) for codec in codecs.values()}
        if len(sizes) != 1:
            raise InputError(f"the VAEs were trained at different sizes {sorted(sizes)}: give --resolution")
        resolution = sizes.pop()
    fps = float(load_index(data)["options"]["fps"])
    eval_clips = load_eval_clips(data, resolution, clips, seconds, fps)
    per_clip = {"clip_ids": [clip.clip_id for clip in eval_clips], TRUTH: {"lip_sync": []},
                **{name: {"psnr": [], "ssim": [], "lip_sync": []} for name in codecs}}
    for clip in eval_clips:
        truth, measures = still_renders(clip, resolution), Measures(clip, resolution)
        per_clip[TRUTH]["lip_sync"].append(measures.lip_sync(truth))
        for name, codec in codecs.items():
            frames = vae_reconstruction(codec, truth, clip, color_match)
            row = per_clip[name]
            row["psnr"].append(psnr(frames, truth))
            row["ssim"].append(ssim(frames, truth))
            row["lip_sync"].append(measures.lip_sync(frames))
    rows = {name: {key: float(np.mean(values)) for key, values in row.items()}
            for name, row in per_clip.items() if name != "clip_ids"}
    return {"data": str(data), "clips": len(eval_clips), "seconds": seconds, "resolution": resolution, "fps": fps,
            "color_match": color_match, "rows": rows, "per_clip": per_clip}


def format_table(result: dict) -> str:
    ids = result["per_clip"]["clip_ids"]
    lines = ["| VAE | PSNR dB ↑ | SSIM ↑ | lip sync r ↑ | worst clip's lip sync |", "|---|---|---|---|---|"]
    for name, row in result["rows"].items():
        values = result["per_clip"][name]["lip_sync"]
        worst = int(np.argmin(values))
        psnr_cell, ssim_cell = (f"{row['psnr']:.2f}", f"{row['ssim']:.3f}") if "psnr" in row else ("–", "–")
        lines.append(f"| {name} | {psnr_cell} | {ssim_cell} | {row['lip_sync']:.3f} | "
                     f"{values[worst]:.3f} ({ids[worst]}) |")
    matched = f", colour match ({result['color_match']})" if result["color_match"] else ""
    lines += ["", f"{result['clips']} held-out clips × {result['seconds']:g} s of still-head ground truth at "
                  f"{result['resolution']}², encode → decode{matched}."]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emo_model.synthetic.vae_ceiling",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--vae", nargs="+", required=True, help="VAE files (or EMO checkpoints with their VAE)")
    parser.add_argument("--data", required=True, help="eval split of a synthetic dataset (OUT/eval)")
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--resolution", type=int, default=None, help="frame size (default: the VAEs' sample_size)")
    parser.add_argument("--color-match", choices=COLOR_MATCH_MODES, default=None,
                        help="put the reconstructions through the workflows' colour match, as the benchmark does")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    return report(lambda: run_vae_ceiling(args.vae, args.data, clips=args.clips, seconds=args.seconds,
                                          resolution=args.resolution, color_match=args.color_match),
                  format_table, args.json)


if __name__ == "__main__":
    sys.exit(main())
