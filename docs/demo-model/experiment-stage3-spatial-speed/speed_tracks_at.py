"""Head roll per frame (every 4th) of generated 2 s clips at the given requests and without speed layers,
same seed, for the first two clips of DATA; and the mean |difference| of the frames (0..255) between the
first request and each other. Negative (signed) requests need the EMO_SIGNED_SPEED=1 worktree.
Usage: python speed_tracks_at.py CHECKPOINT DATA SPEED [SPEED ...]   (repository root, PYTHONPATH=.;
workflows' sampler settings: audio guidance 2.5, motion guidance 0.5, overlap 2, shared noise, colour match)"""
import sys

import numpy as np

import emo_model.synthetic.benchmark as bench
from emo_model.synthetic.measure import head_roll, head_speed

checkpoint, data, speeds = sys.argv[1], sys.argv[2], [float(s) for s in sys.argv[3:]]
model, vae = bench.load_emo_model(checkpoint), bench.load_checkpoint_vae(checkpoint)
pipeline = bench.EMOPipeline(model, vae, bench.load_audio_encoder(bench.packaged_whisper_tiny_dir()))
clips = bench.load_eval_clips(data, 64, 2, 2.0, model.config.fps)
runner = bench.Runner(pipeline, 64, model.config.fps, 20, 0, 2.5, 0.5, 2, True, "video")
for clip in clips:
    measures = bench.Measures(clip, 64)
    truth = bench.constant_speed_renders(clip, abs(speeds[0]), 64)
    print(clip.clip_id, f"truth@{abs(speeds[0])}",
          np.round(head_roll(truth, clip.reference, measures.centre, measures.region)[::4], 1))
    outs = {}
    for speed in speeds + [None]:
        frames = outs[speed] = runner.generate(clip, speed=speed, seed_offset=0)
        roll = head_roll(frames, clip.reference, measures.centre, measures.region)
        print(" speed", speed, "roll", np.round(roll[::4], 1), "speed", round(head_speed(roll), 3), flush=True)
    first = outs[speeds[0]].astype(float)
    print("", "  ".join(f"|out({speeds[0]:g})-out({s})| {np.abs(first - outs[s]).mean():.3f}" for s in speeds[1:] + [None]))
