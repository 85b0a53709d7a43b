"""Best whole-frame shift of the generated still heads against the truth, per 8-frame window: is the
head off its place from the first clip on, or does it drift there clip by clip?"""
import sys
import numpy as np, torch, torch.nn.functional as F
from emo_model.synthetic.measure import psnr
z = np.load(sys.argv[1]); key = sys.argv[2] if len(sys.argv) > 2 else "gen"
ids = sorted({k.split('/')[0] for k in z.files})
def shift(a, sx, sy):
    x = torch.from_numpy(a).permute(0, 3, 1, 2).float(); n = len(x); h, w = x.shape[-2:]
    theta = torch.tensor([[1, 0, -2 * sx / w], [0, 1, -2 * sy / h]], dtype=torch.float32)[None].expand(n, -1, -1)
    g = F.affine_grid(theta, x.shape, align_corners=False)
    return F.grid_sample(x, g, mode='bilinear', padding_mode='border', align_corners=False).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
S = [-2, -1.5, -1, -.5, 0, .5, 1, 1.5, 2]
for i in ids:
    t, a = z[i + '/truth'], z[i + '/' + key]
    cells = []
    for start in range(0, len(t), 8):
        tt, aa = t[start:start + 8], a[start:start + 8]
        g = {(sx, sy): psnr(shift(tt, sx, sy), aa) for sx in S for sy in S}
        b = max(g, key=g.get)
        cells.append(f"{start:2d}: ({b[0]:+.1f},{b[1]:+.1f}) +{g[b] - g[(0, 0)]:.2f}")
    print(i, " | ".join(cells))
