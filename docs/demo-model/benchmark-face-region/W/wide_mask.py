"""Still heads with the still truth's box widened 1.2x about its centre (the example workflows' Face
Mask scale), for two checkpoints on the first N eval clips: PSNR against the still truth."""
import sys, numpy as np, torch
from emo_model.synthetic import benchmark as B
from emo_model.synthetic.measure import psnr
from emo_model.audio import load_audio_encoder, packaged_whisper_tiny_dir
from emo_model.checkpoint import load_checkpoint_vae, load_emo_model, training_resolution
from emo_model.pipeline import EMOPipeline
data, clips, ckpts = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
encoder = load_audio_encoder(packaged_whisper_tiny_dir())
def widened(mask, f):
    ys, xs = np.nonzero(mask.numpy()); x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2 * f, (y1 - y0) / 2 * f
    m = torch.zeros_like(mask)
    m[max(int(round(cy - hh)), 0):int(round(cy + hh)), max(int(round(cx - hw)), 0):int(round(cx + hw))] = 1
    return m
for ckpt in ckpts:
    model = load_emo_model(ckpt); pipe = EMOPipeline(model, load_checkpoint_vae(ckpt), encoder)
    res = training_resolution(model, "diag")
    runner = B.Runner(pipe, res, model.config.fps, 20, 0, 2.5, 0.5, 2, True, "video")
    values = []
    for clip in B.load_eval_clips(data, res, clips, 2.0, model.config.fps):
        truth = B.still_renders(clip, res)
        m = B.Measures(clip, res)
        gen = runner.generate(clip, widened(clip.still_mask, 1.2), speed=0.0)
        values.append((psnr(gen, truth), m.lip_sync(gen)))
        print(ckpt, clip.clip_id, "box x1.2: PSNR %.2f dB, lip sync %.3f" % values[-1], flush=True)
    print(ckpt, "mean PSNR %.2f, lip sync %.3f" % tuple(np.mean(values, axis=0)), flush=True)
