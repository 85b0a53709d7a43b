"""Where does the identity gap live? Pose drift vs. region errors, on the README benchmark's clips."""
import json, sys
import numpy as np, torch
from emo_model.synthetic import benchmark as B
from emo_model.synthetic.measure import head_roll, psnr
from emo_model.synthetic.render import render_face, face_geometry
from emo_model.audio import load_audio_encoder, packaged_whisper_tiny_dir
from emo_model.checkpoint import load_checkpoint_vae, load_emo_model, training_resolution
from emo_model.pipeline import EMOPipeline

ckpt, data, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
model = load_emo_model(ckpt); vae = load_checkpoint_vae(ckpt)
pipe = EMOPipeline(model, vae, load_audio_encoder(packaged_whisper_tiny_dir()))
res = training_resolution(model, "diag"); fps = model.config.fps
clips = B.load_eval_clips(data, res, n, 2.0, fps)
runner = B.Runner(pipe, res, fps, 20, 0, 5.0, 1.0, 2, True, "video")
def mse_map(a, b): return ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean(axis=3)  # [N,H,W]
out = []
for clip in clips:
    truth = B.still_renders(clip, res)
    gen = runner.generate(clip, speed=0.0)
    ceil = B.vae_reconstruction(pipe.codec, truth, clip, "video")
    m = B.Measures(clip, res)
    roll = head_roll(gen, clip.reference, m.centre, m.region)
    # GT rendered at the generated frames' roll (try both sign conventions, keep the better)
    best = None
    for sign in (1, -1):
        posed = B._resize(np.stack([render_face(clip.identity, clip.source_size, mouth_open=float(mo),
                        roll_deg=clip.roll + sign * r, dx=clip.dx, dy=clip.dy)[0] for mo, r in zip(clip.mouth, roll)]), res)
        p = psnr(gen, posed)
        if best is None or p > best[0]: best = (p, sign, posed)
    posed = best[2]
    ceil_posed = B.vae_reconstruction(pipe.codec, posed, clip, "video")
    # regions: face box (+pad, as Measures.region) vs the rest; mouth box; eye band
    H = res; yy, xx = np.mgrid[:H, :H]
    x0, y0, x1, y1 = m.region
    face = (xx >= x0) & (xx < x1) & (yy >= y0) & (yy < y1)
    mx0, my0, mx1, my1 = m.mouth_box
    mouth = (xx >= mx0 - 1) & (xx < mx1 + 1) & (yy >= my0 - 1) & (yy < my1 + 1)
    g = face_geometry(clip.identity, res, clip.roll, clip.dx, clip.dy)
    fx0, fy0, fx1, fy1 = g.face_box
    eyes = (xx >= fx0) & (xx < fx1) & (yy >= fy0 + 0.2 * (fy1 - fy0)) & (yy < fy0 + 0.5 * (fy1 - fy0))
    eg, ec = mse_map(gen, truth), mse_map(ceil, truth)
    def share(e, mask): return float(e[:, mask].sum() / e.size)  # contribution to the frame MSE
    T = len(gen); third = T // 3
    rec = dict(clip=clip.clip_id, psnr_gen=psnr(gen, truth), psnr_ceil=psnr(ceil, truth),
               psnr_gen_vs_posed_truth=best[0], psnr_ceil_posed=psnr(ceil_posed, posed), sign=best[1],
               mean_abs_roll=float(np.abs(roll).mean()), last10_abs_roll=float(np.abs(roll[-10:]).mean()),
               psnr_gen_first_third=psnr(gen[:third], truth[:third]), psnr_gen_last_third=psnr(gen[-third:], truth[-third:]),
               mse_gen=float(eg.mean()), mse_ceil=float(ec.mean()),
               gen_face=share(eg, face), gen_out=share(eg, ~face), gen_mouth=share(eg, mouth), gen_eyes=share(eg, eyes & ~mouth),
               ceil_face=share(ec, face), ceil_out=share(ec, ~face), ceil_mouth=share(ec, mouth), ceil_eyes=share(ec, eyes & ~mouth),
               face_frac=float(face.mean()))
    print(json.dumps(rec), flush=True); out.append(rec)
keys = [k for k in out[0] if k not in ("clip", "sign")]
print("MEAN", json.dumps({k: round(float(np.mean([r[k] for r in out])), 3) for k in keys}))
