"""Does the model continue a head turn it is shown? Initial motion frames: the truth turning at 1 °/frame
and arriving at the reference pose (or held still there); then 2 s generated at speed 1 (workflow settings).
Prints the measured roll (every 4th frame) and its mean speed.
Usage: python continue_motion.py CHECKPOINT   (run from the repository root, PYTHONPATH=.)"""
import sys

import numpy as np
import torch

import emo_model.synthetic.benchmark as bench
from emo_model.sampler import SamplerSettings
from emo_model.synthetic.measure import head_roll, head_speed

checkpoint = sys.argv[1]
model, vae = bench.load_emo_model(checkpoint), bench.load_checkpoint_vae(checkpoint)
pipeline = bench.EMOPipeline(model, vae, bench.load_audio_encoder(bench.packaged_whisper_tiny_dir()))
for clip in bench.load_eval_clips("runs/demo/data/eval", 64, 2, 2.0, model.config.fps):
    measures = bench.Measures(clip, 64)
    for label, step in (("turning 1/frame", 1.0), ("still", 0.0)):
        earlier = [bench.render_face(clip.identity, clip.source_size, mouth_open=0.0, roll_deg=clip.roll - k * step,
                                     dx=clip.dx, dy=clip.dy)[0] for k in (4, 3, 2, 1)]
        earlier = torch.from_numpy(bench._resize(np.stack(earlier), 64)).permute(0, 3, 1, 2).float() / 255
        settings = SamplerSettings(steps=20, audio_cfg=2.5, motion_cfg=0.5, overlap_frames=2, shared_noise=True, seed=0)
        video = pipeline(clip.reference, clip.waveform, fps=model.config.fps, height=64, width=64,
                         face_mask=clip.face_mask, speed=1.0, settings=settings, initial_motion_frames=earlier)
        frames = video.frames[:len(clip.mouth)].numpy()
        roll = head_roll(frames, clip.reference, measures.centre, measures.region)
        print(clip.clip_id, label, np.round(roll[::4], 1), "speed", round(head_speed(roll), 3), flush=True)
