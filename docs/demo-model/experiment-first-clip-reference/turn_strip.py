"""A picture of continue_motion.py's first case: top row the truth turning at 1 °/frame from the first eval
clip's reference pose (the motion frames given are its 4 frames before), bottom row what the model makes
at speed 1 with the workflows' settings (no colour match); frames 0, 8, 16, 24, 32, 40, 49, 3× enlarged.
Usage: python turn_strip.py CHECKPOINT OUT.png   (repository root, PYTHONPATH=.)"""
import sys

import numpy as np
import torch
from PIL import Image

import emo_model.synthetic.benchmark as bench
from emo_model.sampler import SamplerSettings

checkpoint, out = sys.argv[1], sys.argv[2]
model, vae = bench.load_emo_model(checkpoint), bench.load_checkpoint_vae(checkpoint)
pipeline = bench.EMOPipeline(model, vae, bench.load_audio_encoder(bench.packaged_whisper_tiny_dir()))
clip = bench.load_eval_clips("runs/demo/data/eval", 64, 1, 2.0, model.config.fps)[0]


def render(roll, mouth=0.0):
    return bench.render_face(clip.identity, clip.source_size, mouth_open=mouth, roll_deg=roll, dx=clip.dx, dy=clip.dy)[0]


earlier = bench._resize(np.stack([render(clip.roll - k) for k in (4, 3, 2, 1)]), 64)
settings = SamplerSettings(steps=20, audio_cfg=2.5, motion_cfg=0.5, overlap_frames=2, shared_noise=True, seed=0)
video = pipeline(clip.reference, clip.waveform, fps=25, height=64, width=64, face_mask=clip.face_mask, speed=1.0,
                 settings=settings, initial_motion_frames=torch.from_numpy(earlier).permute(0, 3, 1, 2).float() / 255)
generated = video.frames[:50].numpy()
truth = bench._resize(np.stack([render(clip.roll + i, float(clip.mouth[i])) for i in range(50)]), 64)
shown = [0, 8, 16, 24, 32, 40, 49]
image = np.concatenate([np.concatenate([rows[i] for i in shown], 1) for rows in (truth, generated)], 0)
Image.fromarray(image).resize((image.shape[1] * 3, image.shape[0] * 3), Image.NEAREST).save(out)
