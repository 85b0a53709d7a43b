"""The paired comparison of two benchmark JSONs: the statistics on results with known differences, the
pairing rules and the errors. (A real benchmark run through it: test_synthetic_benchmark.py.)"""
import json

import numpy as np
import pytest

from emo_model.errors import InputError
from emo_model.synthetic.compare import bootstrap_interval, compare, format_comparison, main

SETTINGS = {"data": "runs/demo/data/eval", "seconds": 2.0, "steps": 20, "audio_cfg": 5.0, "motion_cfg": 1.0,
            "overlap": 2, "shared_noise": True, "color_match": "video", "resolution": 64, "fps": 25.0}


def _result(checkpoint, psnr, ceiling, ids=None, **settings):
    ids = ids or [f"heldout{i:04d}_u00" for i in range(len(psnr))]
    n = len(psnr)
    return {"checkpoint": checkpoint, **SETTINGS, **settings, "per_clip": {
        "clip_ids": ids,
        "EMO (full)": {"psnr": list(psnr), "ssim": [0.7] * n, "lip_sync": [0.8] * n, "continuity": [1.2] * n},
        "no audio": {"psnr": [p - 0.1 for p in psnr]},
        "VAE reconstruction (ceiling)": {"psnr": list(ceiling), "ssim": [0.8] * n}}}


def _write(tmp_path, name, result):
    path = tmp_path / name
    path.write_text(json.dumps(result))
    return str(path)


def test_paired_differences_interval_and_wins(tmp_path):
    base_psnr = [20.0, 22.0, 18.0, 25.0, 21.0, 19.0]
    diffs = [0.5, 0.4, 0.6, -0.2, 0.5, 0.3]
    base = _write(tmp_path, "a.json", _result("a", base_psnr, [24.0] * 6))
    cand = _write(tmp_path, "b.json", _result("b", [p + d for p, d in zip(base_psnr, diffs)], [24.5] * 6))
    out = compare([base], [cand])
    psnr = out["measures"]["psnr"]
    assert psnr["clips"] == 6 and psnr["mean_difference"] == pytest.approx(np.mean(diffs))
    low, high = psnr["interval_95"]
    assert min(diffs) <= low < np.mean(diffs) < high <= max(diffs)
    assert (psnr["candidate_better"], psnr["candidate_worse"]) == (5, 1)
    assert psnr["worst_clip"] == "runs/demo/data/eval:heldout0003_u00"
    assert psnr["worst_difference"] == pytest.approx(-0.2)
    # the identity gap pairs each clip's own ceiling: +0.5 ceiling minus each clip's PSNR gain, lower is better
    gap = out["measures"]["identity_gap"]
    assert gap["mean_difference"] == pytest.approx(0.5 - np.mean(diffs))
    assert (gap["candidate_better"], gap["candidate_worse"]) == (1, 3)  # two ties (+0.5 on both sides): neither
    assert out["measures"]["ssim"]["wilcoxon_p"] == 1.0  # identical values: no difference at all
    table = format_comparison(out)
    assert "| psnr ↑ | 6 | 20.83 | 21.18 | +0.35 |" in table and "| identity_gap ↓ |" in table


def test_other_rows_and_pooled_splits_pair_by_split_and_clip(tmp_path):
    base = [_write(tmp_path, "a1.json", _result("a", [20.0, 21.0], [24.0, 24.0])),
            _write(tmp_path, "a2.json", _result("a", [19.0], [23.0], data="runs/val/eval"))]
    cand = [_write(tmp_path, "b1.json", _result("b", [21.0, 22.0], [24.0, 24.0])),
            _write(tmp_path, "b2.json", _result("b", [18.0], [23.0], data="runs/val/eval"))]
    psnr = compare(base, cand)["measures"]["psnr"]
    assert psnr["clips"] == 3 and psnr["mean_difference"] == pytest.approx(1 / 3)
    assert psnr["worst_clip"] == "runs/val/eval:heldout0000_u00"
    # another row; clips only one side measured are left out
    no_audio = compare([base[0]], [_write(tmp_path, "b3.json", _result("b", [22.0], [24.0]))], row="no audio")
    assert no_audio["measures"]["psnr"]["clips"] == 1
    assert no_audio["measures"]["psnr"]["mean_difference"] == pytest.approx(2.0)
    assert set(no_audio["measures"]) == {"psnr", "identity_gap"}


def test_bootstrap_interval_narrows_with_more_clips():
    rng = np.random.default_rng(1)
    few, many = rng.normal(0.3, 1.0, 8), rng.normal(0.3, 1.0, 128)
    (a, b), (c, d) = bootstrap_interval(few), bootstrap_interval(many)
    assert b - a > 2 * (d - c) and c < 0.3 < d
    assert bootstrap_interval(few) == (a, b)  # seeded


def test_comparison_errors_are_clear(tmp_path, capsys):
    base = _write(tmp_path, "a.json", _result("a", [20.0], [24.0]))
    with pytest.raises(InputError, match=r"differ in steps \(20 vs 40\), color_match \('video' vs None\)"):
        compare([base], [_write(tmp_path, "b.json", _result("b", [20.0], [24.0], steps=40, color_match=None))])
    with pytest.raises(InputError, match=r"differ in seed \(0 vs 1\)"):  # a JSON without a seed ran at 0
        compare([base], [_write(tmp_path, "s.json", _result("b", [20.0], [24.0], seed=1))])
    assert compare([base], [_write(tmp_path, "s0.json", _result("b", [21.0], [24.0], seed=0))])["measures"]
    old = _result("b", [20.0], [24.0])
    del old["per_clip"]
    with pytest.raises(InputError, match="no per-clip values"):
        compare([base], [_write(tmp_path, "old.json", old)])
    with pytest.raises(InputError, match="share no clip"):
        compare([base], [_write(tmp_path, "c.json", _result("b", [20.0], [24.0], ids=["other_u00"]))])
    with pytest.raises(InputError, match="in pairs"):
        compare([base], [base, base])
    with pytest.raises(InputError, match="no row 'no motion frames'"):
        compare([base], [base], row="no motion frames")
    empty = _result("b", [20.0], [24.0])
    empty["per_clip"]["no audio"] = {}  # what --no-ablations leaves
    with pytest.raises(InputError, match="holds no per-clip values"):
        compare([_write(tmp_path, "e.json", empty)], [_write(tmp_path, "e2.json", empty)], row="no audio")
    with pytest.raises(InputError, match="cannot read"):
        compare([str(tmp_path / "missing.json")], [base])
    assert main(["--base", base, "--candidate", str(tmp_path / "missing.json")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_sampler_settings_compare_only_when_asked_and_only_on_the_same_clips(tmp_path, capsys):
    base = _write(tmp_path, "a.json", _result("a", [20.0, 21.0], [24.0] * 2))
    other = _write(tmp_path, "b.json", _result("a", [20.5, 20.0], [24.0] * 2, shared_noise=False, seed=1))
    with pytest.raises(InputError, match=r"differ in seed \(0 vs 1\), shared_noise \(True vs False\).*"
                                         r"--settings-may-differ"):
        compare([base], [other])
    out = compare([base], [other], settings_may_differ=True)
    assert out["settings_differ"] == {"seed": [0, 1], "shared_noise": [True, False]}
    assert out["measures"]["psnr"]["mean_difference"] == pytest.approx(-0.25)
    assert compare([base], [base])["settings_differ"] == {}
    # the clips themselves must still be the same: another length is another clip
    with pytest.raises(InputError, match=r"differ in seconds \(2.0 vs 4.0\): the clips are not the same"):
        compare([base], [_write(tmp_path, "c.json", _result("a", [20.0, 21.0], [24.0] * 2, seconds=4.0))],
                settings_may_differ=True)
    # pooled splits must differ in the same way, or the pooled mean would mix two comparisons
    val = _write(tmp_path, "v.json", _result("a", [20.0], [24.0], data="runs/val/eval"))
    val_other = _write(tmp_path, "v2.json", _result("a", [20.0], [24.0], data="runs/val/eval", shared_noise=False))
    with pytest.raises(InputError, match="differ in their sampler settings in different ways"):
        compare([base, val], [other, val_other], settings_may_differ=True)
    assert main(["--base", base, "--candidate", other, "--settings-may-differ"]) == 0
    printed = capsys.readouterr().out
    assert "sampler settings (base → candidate): seed 0 → 1, shared_noise True → False" in printed
    assert "| psnr ↑ | 2 |" in printed


def test_command_prints_the_table_and_writes_the_json(tmp_path, capsys):
    base = _write(tmp_path, "a.json", _result("a", [20.0, 21.0, 22.0], [24.0] * 3))
    cand = _write(tmp_path, "b.json", _result("b", [20.5, 21.5, 21.0], [24.0] * 3))
    out = tmp_path / "cmp.json"
    assert main(["--base", base, "--candidate", cand, "--json", str(out)]) == 0
    assert "| psnr ↑ | 3 |" in capsys.readouterr().out
    written = json.loads(out.read_text())
    assert written["base"] == ["a"] and written["measures"]["psnr"]["per_clip"][
        "runs/demo/data/eval:heldout0002_u00"] == pytest.approx(-1.0)
