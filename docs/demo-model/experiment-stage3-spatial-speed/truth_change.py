"""How much a turn at 1 deg/frame changes the ground-truth frames: |renders at speed 1 - at speed 0|
(0..255) for the first two eval clips, 2 s, 64x64.  Usage: python truth_change.py  (repo root, PYTHONPATH=.)"""
import numpy as np

import emo_model.synthetic.benchmark as bench

for clip in bench.load_eval_clips("runs/demo/data/eval", 64, 2, 2.0, 25.0):
    d = np.abs(bench.constant_speed_renders(clip, 0.0, 64).astype(float)
               - bench.constant_speed_renders(clip, 1.0, 64).astype(float)).mean(axis=(1, 2, 3))
    print(clip.clip_id, "frames 0-7 %.2f, 8-15 %.2f, all 50 %.2f" % (d[:8].mean(), d[8:16].mean(), d.mean()))
