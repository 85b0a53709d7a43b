"""How much of a clip's latent change a head turn makes: for stage-3 samples, the latent MSE between
the frame before the generated frames (first_clip_reference's reference) and each generated frame,
binned by the clip's speed label. A still head changes only by its mouth, blinks and encoder noise;
the excess of the moving bins is what knowing the turn could save an x0 prediction, at most.
Usage: python turn_share.py [BATCHES_OF_8] [TRAIN_DATA]   (repository root, PYTHONPATH=.)"""
import sys

import torch

from emo_model.checkpoint import load_checkpoint_vae
from emo_model.train.config import TrainConfig
from emo_model.train.data import TrainData
from emo_model.train.trainer import step_generator
from emo_model.vae import LatentCodec

config = TrainConfig.from_file("configs/demo/stage3.json")
emo = config.emo_config()
data = TrainData(sys.argv[2:3] or config.data, stage=3, resolution=64, frames=emo.frames_per_clip, motion_frames=emo.motion_frames,
                 audio_window=emo.audio_window, audio_shape=(emo.audio_layers, emo.audio_dim))
codec = LatentCodec(load_checkpoint_vae("models/emo/emo-demo.safetensors"))
rows = []
with torch.no_grad():
    for step in range(int(sys.argv[1]) if len(sys.argv) > 1 else 40):
        batch = data.sample(8, step_generator(0, step, 0, 0))
        before = codec.encode(batch.motion[:, -1]).float()                # [B, 4, h, w]
        target = codec.encode(batch.target.flatten(0, 1)).float().unflatten(0, batch.target.shape[:2])
        err = ((target - before[:, None]) ** 2).mean(dim=(2, 3, 4))        # [B, F] per frame
        for b in range(len(err)):
            rows.append((float(batch.speed[b, -8:].abs().mean()), err[b]))
bins = [(0.0, 0.05), (0.05, 0.4), (0.4, 0.7), (0.7, 1.01), (1.01, 1.6), (1.6, 2.5)]
print("| speed label (deg/frame) | samples | latent MSE to the frame before, frame 1 | frame 4 | frame 8 |")
print("|---|---|---|---|---|")
for lo, hi in bins:
    sel = [e for s, e in rows if lo <= s < hi]
    if sel:
        e = torch.stack(sel).mean(0)
        print(f"| {lo}-{hi} | {len(sel)} | {e[0]:.4f} | {e[3]:.4f} | {e[7]:.4f} |")
