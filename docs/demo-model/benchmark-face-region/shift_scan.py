"""PSNR of saved generated still heads against the truth shifted by sub-pixel amounts (bilinear):
how far the generated head sits from where the truth is."""
import sys
import numpy as np, torch, torch.nn.functional as F
from emo_model.synthetic.measure import psnr
z = np.load(sys.argv[1]); key = sys.argv[2] if len(sys.argv) > 2 else "gen"
ids = sorted({k.split('/')[0] for k in z.files})
def shift(a, sx, sy):
    x = torch.from_numpy(a).permute(0, 3, 1, 2).float(); n, c, h, w = x.shape
    theta = torch.tensor([[1, 0, -2 * sx / w], [0, 1, -2 * sy / h]], dtype=torch.float32)[None].expand(n, -1, -1)
    g = F.affine_grid(theta, x.shape, align_corners=False)
    return F.grid_sample(x, g, mode='bilinear', padding_mode='border', align_corners=False).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
S = [-2, -1.5, -1, -.5, 0, .5, 1, 1.5, 2]
t0 = tb = 0
for i in ids:
    t, a = z[i + '/truth'], z[i + '/' + key]
    g = {(sx, sy): psnr(shift(t, sx, sy), a) for sx in S for sy in S}
    b = max(g, key=g.get); t0 += g[(0, 0)]; tb += g[b]
    print(key, i, 'unshifted %.2f' % g[(0, 0)], 'best shift (x, y px)', b, '%.2f' % g[b])
print(key, 'mean unshifted %.2f, at each clip\'s best shift %.2f' % (t0 / len(ids), tb / len(ids)))
