"""Head roll per frame (every 4th) of generated 2 s clips at signed speed +1, 0, -1 and without speed layers (EMO_SIGNED_SPEED=1 worktree), same seed,
for the first two eval clips; and the mean |difference| of the frames (0..255) that the speed makes.
Usage: python speed_tracks.py CHECKPOINT [MOTION_CFG]   (run from the repository root, PYTHONPATH=.)"""
import sys

import numpy as np

import emo_model.synthetic.benchmark as bench
from emo_model.synthetic.measure import head_roll, head_speed

checkpoint, motion_cfg = sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
model, vae = bench.load_emo_model(checkpoint), bench.load_checkpoint_vae(checkpoint)
pipeline = bench.EMOPipeline(model, vae, bench.load_audio_encoder(bench.packaged_whisper_tiny_dir()))
clips = bench.load_eval_clips("runs/demo/data/eval", 64, 2, 2.0, model.config.fps)
runner = bench.Runner(pipeline, 64, model.config.fps, 20, 0, 2.5, motion_cfg, 2, True, "video")
for clip in clips:
    measures = bench.Measures(clip, 64)
    truth = bench.constant_speed_renders(clip, 1.0, 64)
    print(clip.clip_id, "truth@1", np.round(head_roll(truth, clip.reference, measures.centre, measures.region)[::4], 1))
    outs = {}
    for speed in (1.0, 0.0, -1.0, None):
        frames = outs[speed] = runner.generate(clip, speed=speed, seed_offset=0)
        roll = head_roll(frames, clip.reference, measures.centre, measures.region)
        print(" speed", speed, "roll", np.round(roll[::4], 1), "speed", round(head_speed(roll), 3))
    print(" |out(0)-out(1)|", np.abs(outs[0.0].astype(float) - outs[1.0]).mean(), " |out(1)-out(-1)|", np.abs(outs[1.0].astype(float) - outs[-1.0]).mean(),
          " |out(0)-out(None)|", np.abs(outs[0.0].astype(float) - outs[None]).mean())
