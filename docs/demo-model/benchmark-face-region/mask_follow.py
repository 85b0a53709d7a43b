"""Does the model place the head by its Face Locator mask? Still heads for a few eval clips with the
still truth's box moved by -2, 0, +2 px in x (at 64²); where does the generated head sit (best
whole-frame shift of the truth, first 16 frames)?"""
import sys
import numpy as np, torch, torch.nn.functional as F
from emo_model.synthetic import benchmark as B
from emo_model.synthetic.measure import psnr
from emo_model.audio import load_audio_encoder, packaged_whisper_tiny_dir
from emo_model.checkpoint import load_checkpoint_vae, load_emo_model, training_resolution
from emo_model.pipeline import EMOPipeline
ckpt, data, clips = sys.argv[1], sys.argv[2], int(sys.argv[3])
model = load_emo_model(ckpt); vae = load_checkpoint_vae(ckpt)
pipe = EMOPipeline(model, vae, load_audio_encoder(packaged_whisper_tiny_dir()))
res = training_resolution(model, "diag")
runner = B.Runner(pipe, res, model.config.fps, 20, 0, 2.5, 0.5, 2, True, "video")
def shift(a, sx, sy):
    x = torch.from_numpy(a).permute(0, 3, 1, 2).float(); n = len(x); h, w = x.shape[-2:]
    theta = torch.tensor([[1, 0, -2 * sx / w], [0, 1, -2 * sy / h]], dtype=torch.float32)[None].expand(n, -1, -1)
    g = F.affine_grid(theta, x.shape, align_corners=False)
    return F.grid_sample(x, g, mode='bilinear', padding_mode='border', align_corners=False).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
S = [x / 2 for x in range(-8, 9)]
for clip in B.load_eval_clips(data, res, clips, 0.64, model.config.fps):
    truth = B.still_renders(clip, res)
    cells = []
    for move in (-2, 0, 2):
        mask = torch.roll(clip.still_mask, move, dims=1)
        gen = runner.generate(clip, mask, speed=0.0)
        g = {(sx, sy): psnr(shift(truth, sx, sy), gen) for sx in S for sy in (-1, -0.5, 0, 0.5, 1)}
        b = max(g, key=g.get)
        cells.append(f"mask {move:+d} px: head at ({b[0]:+.1f}, {b[1]:+.1f})")
    print(clip.clip_id, " | ".join(cells), flush=True)
