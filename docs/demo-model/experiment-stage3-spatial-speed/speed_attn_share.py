"""Size of each speed layer's output against the hidden state it is added to, and how much of it
changes with the label: for 8 stage-3 samples (as the trainer draws them, first clip from its reference
when the checkpoint's run used first_clip_reference) at t = 999 and 500, forward hooks on every
speed_attn. Prints per temporal block |out| / |h| and |out(label) - out(label + 1 deg/frame)| / |h|.
Usage: python speed_attn_share.py CHECKPOINT TRAIN_DATA   (repository root, PYTHONPATH=.)"""
import sys

import torch

from emo_model.checkpoint import load_checkpoint_vae, load_emo_model
from emo_model.train.config import TrainConfig
from emo_model.train.data import TrainData
from emo_model.train.trainer import step_generator
from emo_model.vae import LatentCodec

model = load_emo_model(sys.argv[1]).eval()
config = TrainConfig.from_file("configs/demo/stage3.json")
emo = config.emo_config()
data = TrainData([sys.argv[2]], stage=3, resolution=64, frames=emo.frames_per_clip, motion_frames=emo.motion_frames,
                 audio_window=emo.audio_window, audio_shape=(emo.audio_layers, emo.audio_dim))
codec = LatentCodec(load_checkpoint_vae(sys.argv[1]))
batch = data.sample(8, step_generator(0, 0, 0, 0))
outs, ins = {}, {}
blocks = [(name, m) for name, m in model.backbone.named_modules() if hasattr(m, "speed_attn")]
for name, block in blocks:
    block.speed_attn.register_forward_hook(lambda m, a, o, name=name: outs.setdefault(name, []).append(o.detach()))
    block.speed_norm.register_forward_hook(lambda m, a, o, name=name: ins.setdefault(name, []).append(a[0].detach()))
with torch.no_grad():
    reference = codec.encode(batch.motion[:, -1])
    target = codec.encode(batch.target.flatten(0, 1)).unflatten(0, batch.target.shape[:2])
    for t in (999, 500):
        noisy = torch.randn(target.shape, generator=torch.Generator().manual_seed(t))
        for speed in (batch.speed, batch.speed + 1.0):
            model(noisy, t, reference_latents=reference, num_motion=emo.motion_frames,
                  audio_windows=batch.audio_windows, speed=speed, face_mask=batch.face_mask)
        print(f"t={t}")
        for name, _ in blocks:
            h, (a, b) = ins[name][-2], outs[name][-2:]
            rows, frames, dim = h.shape
            a, b = a.reshape(rows, frames, dim), b.reshape(rows, frames, dim)
            print(f"  {name:45s} |out|/|h| {a.norm() / h.norm():.4f}   |out(v)-out(v+1)|/|h| {(a - b).norm() / h.norm():.4f}")
