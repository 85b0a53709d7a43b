"""Still heads with the still truth's face region (the benchmark's mask since this change) and, for
information, with that box scaled 1.17 about its centre; frames saved for the shift analysis."""
import sys, numpy as np, torch
from emo_model.synthetic import benchmark as B
from emo_model.audio import load_audio_encoder, packaged_whisper_tiny_dir
from emo_model.checkpoint import load_checkpoint_vae, load_emo_model, training_resolution
from emo_model.pipeline import EMOPipeline
from emo_model.synthetic.measure import psnr
ckpt, data, clips, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
model = load_emo_model(ckpt); vae = load_checkpoint_vae(ckpt)
pipe = EMOPipeline(model, vae, load_audio_encoder(packaged_whisper_tiny_dir()))
res = training_resolution(model, "diag")
runner = B.Runner(pipe, res, model.config.fps, 20, 0, 2.5, 0.5, 2, True, "video")
saved = {}
def scaled(mask, f):
    ys, xs = np.nonzero(mask.numpy()); x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2 * f, (y1 - y0) / 2 * f
    m = torch.zeros_like(mask); m[max(int(round(cy - hh)), 0):int(round(cy + hh)), max(int(round(cx - hw)), 0):int(round(cx + hw))] = 1
    return m
for clip in B.load_eval_clips(data, res, clips, 2.0, model.config.fps):
    truth = B.still_renders(clip, res)
    a = runner.generate(clip, clip.still_mask, speed=0.0)
    b = runner.generate(clip, scaled(clip.still_mask, 1.17), speed=0.0)
    saved.update({clip.clip_id + "/gen": a, clip.clip_id + "/gen117": b, clip.clip_id + "/truth": truth})
    print(clip.clip_id, "still box %.2f dB, box x1.17 %.2f dB" % (psnr(a, truth), psnr(b, truth)), flush=True)
np.savez_compressed(out, **saved)
