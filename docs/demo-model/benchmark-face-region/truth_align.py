import numpy as np, torch
from emo_model.synthetic import benchmark as B
from emo_model.synthetic.measure import psnr
from emo_model.synthetic.render import render_face
from emo_model.data import read_clip
import sys
data = sys.argv[1]; res = 64
for clip in B.load_eval_clips(data, res, 8, 2.0, 25):
    t = read_clip(data, clip.clip_id)
    def rend(sx, sy, mo):
        return B._resize(render_face(clip.identity, clip.source_size, mouth_open=mo, roll_deg=clip.roll,
                          dx=clip.dx + sx / res, dy=clip.dy + sy / res)[0][None], res)
    mo0 = float(t["mouth_open"][0])
    grid = {(sx, sy): psnr(clip.reference[None], rend(sx, sy, mo0)) for sx in (-1, -.5, 0, .5, 1) for sy in (-1, -.5, 0, .5, 1)}
    best = max(grid, key=grid.get)
    print(clip.clip_id, 'rot', [round(float(v),2) for v in t['rotation'][0]], 'box', [round(float(v),1) for v in t['face_boxes'][0]],
          'dx %.4f dy %.4f' % (clip.dx, clip.dy), 'psnr0 %.2f best %s %.2f' % (grid[(0,0)], best, grid[best]))
print({k: t[k].shape if hasattr(t[k], 'shape') else t[k] for k in t})
