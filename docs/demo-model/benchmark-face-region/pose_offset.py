"""Is the -3 deg roll read on generated still heads real pose or registration? For each eval clip:
generate the still head (README settings), read roll on truth and generated frames, and score the
generated frames (PSNR) against truth rendered at roll offsets and pixel shifts."""
import json, sys
import numpy as np, torch
from emo_model.synthetic import benchmark as B
from emo_model.synthetic.measure import head_roll, psnr
from emo_model.synthetic.render import render_face
from emo_model.audio import load_audio_encoder, packaged_whisper_tiny_dir
from emo_model.checkpoint import load_checkpoint_vae, load_emo_model, training_resolution
from emo_model.pipeline import EMOPipeline

ckpt, data, clips = sys.argv[1], sys.argv[2], int(sys.argv[3])
model = load_emo_model(ckpt); vae = load_checkpoint_vae(ckpt)
pipe = EMOPipeline(model, vae, load_audio_encoder(packaged_whisper_tiny_dir()))
res = training_resolution(model, "diag")
runner = B.Runner(pipe, res, model.config.fps, 20, 0, 2.5, 0.5, 2, True, "video")
out = []
for clip in B.load_eval_clips(data, res, clips, 2.0, model.config.fps):
    m = B.Measures(clip, res)
    truth = B.still_renders(clip, res)
    gen = runner.generate(clip, speed=0.0)
    ceil = B.vae_reconstruction(pipe.codec, truth, clip, "video")
    r_truth = head_roll(truth, clip.reference, m.centre, m.region)
    r_gen = head_roll(gen, clip.reference, m.centre, m.region)
    r_ceil = head_roll(ceil, clip.reference, m.centre, m.region)
    def shifted(d_roll, sx, sy):
        fr = [render_face(clip.identity, clip.source_size, mouth_open=float(mo), roll_deg=clip.roll + d_roll,
                          dx=clip.dx + sx / res, dy=clip.dy + sy / res)[0] for mo in clip.mouth]
        return B._resize(np.stack(fr), res)
    grid = {}
    for d in (-5, -4, -3, -2, -1, 0, 1, 2):
        for sx in (-1, 0, 1):
            for sy in (-1, 0, 1):
                grid[(d, sx, sy)] = psnr(gen, shifted(d, sx, sy))
    best = max(grid, key=grid.get)
    rec = dict(clip=clip.clip_id, roll_truth=float(np.median(r_truth)), roll_gen=float(np.median(r_gen)),
               roll_ceil=float(np.median(r_ceil)), gen_roll_track=[round(float(v), 1) for v in r_gen],
               psnr0=grid[(0, 0, 0)], best=best, psnr_best=grid[best],
               psnr_by_roll={d: max(v for k, v in grid.items() if k[0] == d) for d in range(-5, 3)})
    print(json.dumps(rec), flush=True); out.append(rec)
