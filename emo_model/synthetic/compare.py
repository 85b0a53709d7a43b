"""Paired comparison of two checkpoints from their benchmark JSONs (the per-clip still-head values).

    python -m emo_model.synthetic.compare --base shipped_eval.json shipped_val.json \\
        --candidate new_eval.json new_val.json [--row "EMO (full)"] [--json cmp.json]

With a handful of clips, a difference of means of a few tenths of a dB is often one clip's doing.
Pairing each clip with itself (same portrait, speech, seed and sampler settings) removes what the
clips differ by, and the resampled interval says how far the mean difference could move with other
clips of the same kind. Several JSONs per side pool their clips (e.g. a split's eval and a
validation split); each candidate JSON must match its base JSON's split and settings, and clips are
paired by id. `--settings-may-differ` pairs runs whose sampler settings differ (the same checkpoint
under two settings, or two checkpoints each under its own): the clips must still be the same clips
(data, length, resolution, fps), and the settings that differ are printed above the table.
Per measure it prints the paired mean difference (candidate - base), a 95% bootstrap interval of it
(10,000 resamples of the clips, seeded), the clips the candidate wins and loses, the worst clip for
the candidate, and the Wilcoxon signed-rank p. The identity gap (ceiling - EMO
PSNR) is paired too: the ceiling is the VAE's and moves when the checkpoint's VAE does.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import wilcoxon

from ..cli import report
from ..errors import InputError

# What makes two values the same clip, and the sampler settings that must also agree unless the
# comparison is of settings (--settings-may-differ); the checkpoint may always differ.
CLIP_SETTINGS = ("data", "seconds", "resolution", "fps")
SAMPLER_SETTINGS = ("steps", "seed", "audio_cfg", "motion_cfg", "overlap", "shared_noise", "color_match")
# JSONs written before the benchmark recorded its seed ran at the default.
SETTING_DEFAULTS = {"seed": 0}
CEILING = "VAE reconstruction (ceiling)"
# measure → (higher is better, format)
MEASURES = {"psnr": (True, "{:+.2f}"), "ssim": (True, "{:+.3f}"), "lip_sync": (True, "{:+.3f}"),
            "continuity": (False, "{:+.3f}"), "identity_gap": (False, "{:+.2f}")}


def load_per_clip(path) -> dict:
    try:
        result = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read benchmark JSON {path}: {e}") from e
    if "per_clip" not in result:
        raise InputError(f"{path} has no per-clip values (per_clip); it was written before they were kept: "
                         "rerun python -m emo_model.synthetic.benchmark with --json")
    return result


def clip_values(result: dict, row: str) -> dict[str, dict[str, float]]:
    """clip id → measure → value for one row of a benchmark result (identity_gap from the ceiling row)."""
    per_clip = result["per_clip"]
    if row not in per_clip:
        raise InputError(f"no row {row!r} in {result.get('checkpoint')}'s per-clip values; rows: "
                         f"{', '.join(k for k in per_clip if k != 'clip_ids')}")
    values = {cid: {} for cid in per_clip["clip_ids"]}
    for measure, items in per_clip[row].items():
        for cid, v in zip(per_clip["clip_ids"], items):
            values[cid][measure] = v
    ceiling = per_clip.get(CEILING, {}).get("psnr")
    if ceiling is not None and "psnr" in per_clip[row]:
        for cid, c, v in zip(per_clip["clip_ids"], ceiling, per_clip[row]["psnr"]):
            values[cid]["identity_gap"] = c - v
    return values


def _setting(result: dict, key: str):
    return result.get(key, SETTING_DEFAULTS.get(key))


def _differences(base: dict, cand: dict, keys) -> dict[str, list]:
    return {k: [_setting(base, k), _setting(cand, k)] for k in keys if _setting(base, k) != _setting(cand, k)}


def pair_results(bases: list[dict], candidates: list[dict], row: str, settings_may_differ: bool = False
                 ) -> tuple[dict[str, tuple[list, list, list]], dict[str, list]]:
    """measure → (clip keys, base values, candidate values) over the clips both sides measured, and the
    sampler settings that differ (setting → [base, candidate]; the same for every pooled split)."""
    if len(bases) != len(candidates):
        raise InputError(f"{len(bases)} base JSONs but {len(candidates)} candidate JSONs: give them in pairs, "
                         "the same splits in the same order")
    paired: dict[str, tuple[list, list, list]] = {}
    settings = None
    for base, cand in zip(bases, candidates):
        differ = _differences(base, cand, CLIP_SETTINGS + (() if settings_may_differ else SAMPLER_SETTINGS))
        if differ:
            hint = ("the clips are not the same: run both on the same data, length, resolution and fps"
                    if settings_may_differ else "run the benchmark on both checkpoints with the same data and settings "
                    "(or pass --settings-may-differ to compare sampler settings)")
            found = ", ".join(f"{k} ({b!r} vs {c!r})" for k, (b, c) in differ.items())
            raise InputError(f"the two runs differ in {found}: {hint}")
        split_settings = _differences(base, cand, SAMPLER_SETTINGS)
        if settings is not None and split_settings != settings:  # a pooled mean must compare one thing
            raise InputError(f"the pooled splits differ in their sampler settings in different ways ({settings} "
                             f"vs {split_settings} on {base.get('data')}): compare them one split at a time")
        settings = split_settings
        b, c = clip_values(base, row), clip_values(cand, row)
        common = [cid for cid in b if cid in c]
        if not common:
            raise InputError(f"{base.get('checkpoint')} and {cand.get('checkpoint')} share no clip "
                             f"on {base.get('data')}")
        for measure in MEASURES:
            keys, bv, cv = paired.setdefault(measure, ([], [], []))
            for cid in common:
                if measure in b[cid] and measure in c[cid]:
                    keys.append(f"{base.get('data')}:{cid}")
                    bv.append(b[cid][measure])
                    cv.append(c[cid][measure])
    paired = {m: v for m, v in paired.items() if v[0]}
    if not paired:  # e.g. an ablation row of runs made with --no-ablations
        raise InputError(f"row {row!r} holds no per-clip values in these runs (were they made with --no-ablations?)")
    return paired, settings


def bootstrap_interval(diffs: np.ndarray, resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean of `diffs`, resampling the clips with replacement."""
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, len(diffs), size=(resamples, len(diffs)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def compare(base_paths, candidate_paths, row: str = "EMO (full)", settings_may_differ: bool = False) -> dict:
    bases = [load_per_clip(p) for p in base_paths]
    candidates = [load_per_clip(p) for p in candidate_paths]
    paired, settings = pair_results(bases, candidates, row, settings_may_differ)
    out = {"base": sorted({r["checkpoint"] for r in bases}), "candidate": sorted({r["checkpoint"] for r in candidates}),
           "row": row, "settings_differ": settings, "measures": {}}
    for measure, (keys, bv, cv) in paired.items():
        higher_better, _ = MEASURES[measure]
        base, cand = np.array(bv), np.array(cv)
        diffs = cand - base
        better = diffs > 0 if higher_better else diffs < 0
        worse = diffs < 0 if higher_better else diffs > 0
        worst = int(np.argmin(diffs) if higher_better else np.argmax(diffs))
        # Wilcoxon needs some non-zero difference; identical runs get p = 1.
        p = float(wilcoxon(diffs).pvalue) if np.any(diffs != 0) else 1.0
        low, high = bootstrap_interval(diffs)
        out["measures"][measure] = {
            "clips": len(diffs), "base_mean": float(base.mean()), "candidate_mean": float(cand.mean()),
            "mean_difference": float(diffs.mean()), "interval_95": [low, high],
            "candidate_better": int(better.sum()), "candidate_worse": int(worse.sum()),
            "worst_clip": keys[worst], "worst_difference": float(diffs[worst]), "wilcoxon_p": p,
            "per_clip": dict(zip(keys, diffs.tolist()))}
    return out


def format_comparison(result: dict) -> str:
    lines = [f"candidate {', '.join(result['candidate'])} against base {', '.join(result['base'])}, "
             f"row {result['row']!r}; difference = candidate − base"]
    if result.get("settings_differ"):
        lines.append("sampler settings (base → candidate): " + ", ".join(
            f"{k} {b!r} → {c!r}" for k, (b, c) in result["settings_differ"].items()))
    lines += ["", "| measure | clips | base | candidate | difference | 95% interval | better / worse | worst clip "
                  "| Wilcoxon p |",
              "|---|---|---|---|---|---|---|---|---|"]
    for measure, m in result["measures"].items():
        higher_better, fmt = MEASURES[measure]
        plain = fmt.replace("+", "")
        low, high = m["interval_95"]
        arrow = "↑" if higher_better else "↓"
        lines.append(f"| {measure} {arrow} | {m['clips']} | {plain.format(m['base_mean'])} | "
                     f"{plain.format(m['candidate_mean'])} | {fmt.format(m['mean_difference'])} | "
                     f"{fmt.format(low)} … {fmt.format(high)} | {m['candidate_better']} / {m['candidate_worse']} | "
                     f"{m['worst_clip']} ({fmt.format(m['worst_difference'])}) | {m['wilcoxon_p']:.3f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emo_model.synthetic.compare",
                                     description="Paired per-clip comparison of two checkpoints' benchmark JSONs.")
    parser.add_argument("--base", nargs="+", required=True, help="benchmark JSONs of the base checkpoint")
    parser.add_argument("--candidate", nargs="+", required=True,
                        help="benchmark JSONs of the candidate, one per base JSON: same splits and settings, "
                             "same order")
    parser.add_argument("--row", default="EMO (full)", help="which still-head row to compare (default: EMO (full))")
    parser.add_argument("--settings-may-differ", action="store_true",
                        help="pair runs made with different sampler settings (steps, seed, guidance, overlap, "
                             "shared noise, colour match); the clips must still be the same")
    parser.add_argument("--json", default=None, help="also write the comparison here")
    args = parser.parse_args(argv)
    return report(lambda: compare(args.base, args.candidate, args.row, args.settings_may_differ),
                  format_comparison, args.json)


if __name__ == "__main__":
    sys.exit(main())
