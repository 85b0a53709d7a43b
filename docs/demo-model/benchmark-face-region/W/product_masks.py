"""Still heads with the masks users' workflows give the Face Locator (addendum 3 of DECISION_RULE):
P1 fallback: the no-face fallback region times the Face Mask scale (a fresh machine: no MediaPipe);
P2 detected: MediaPipe's box on the reference frame times the scale. Prints PSNR against the still
truth and lip sync per clip, and means.
Usage: product_masks.py DATA CLIPS SCALE CKPT... [--only P1|P2] [--raise-p2 PX]
P1 uses emo_model.face.fallback_face_box as the checkout defines it (see ../fallback/)."""
import sys, numpy as np, torch, torch.nn.functional as F
from emo_model.synthetic import benchmark as B
from emo_model.synthetic.measure import psnr
from emo_model.audio import load_audio_encoder, packaged_whisper_tiny_dir
from emo_model.checkpoint import load_checkpoint_vae, load_emo_model, training_resolution
from emo_model.pipeline import EMOPipeline
from emo_model.face import make_detector, detect_face_box, fallback_face_box, face_region_mask

args = sys.argv[1:]
only = args[args.index("--only") + 1] if "--only" in args else None
# --raise-p2 PX: a diagnostic, not a product mask: P2's box moved up by PX pixels at 128 (boxfit.log's
# median offset between MediaPipe's and the renderer's box centres is 4.3)
raise_p2 = float(args[args.index("--raise-p2") + 1]) if "--raise-p2" in args else 0.0
# --fallback-centre-y F: a diagnostic (DECISION_RULE addendum 8): P1's fallback box centred at F of the
# height instead of the product's FALLBACK_CENTER_Y (0.45), its size unchanged
centre_y = float(args[args.index("--fallback-centre-y") + 1]) if "--fallback-centre-y" in args else None
FLAGS = ("--only", "--raise-p2", "--fallback-centre-y")
args = [a for i, a in enumerate(args) if a not in FLAGS and (i == 0 or args[i - 1] not in FLAGS)]
data, clips, scale, ckpts = args[0], int(args[1]), float(args[2]), args[3:]
encoder = load_audio_encoder(packaged_whisper_tiny_dir())
detector = make_detector("mediapipe")


def detected_box(reference: np.ndarray):
    up = 256  # the bundled portrait's size (MediaPipe also finds these faces at 128 px; not compared box by box)
    x = torch.from_numpy(reference).permute(2, 0, 1)[None].float()
    big = F.interpolate(x, size=(up, up), mode="bilinear", align_corners=False).clamp(0, 255).round()
    box = detect_face_box(big[0].permute(1, 2, 0).byte().numpy(), detector)
    if box is None:  # no face found: the Face Mask node uses its fallback, and so does P2
        print("no face detected: P2 is the fallback", flush=True)
        return fallback_box(reference.shape[0])
    k, dy = reference.shape[0] / up, raise_p2 * reference.shape[0] / 128
    return type(box)(box.x0 * k, box.y0 * k - dy, box.x1 * k, box.y1 * k - dy, box.score)


def fallback_box(res: int):
    box = fallback_face_box(res, res)
    if centre_y is None:
        return box
    dy = centre_y * res - (box.y0 + box.y1) / 2
    return type(box)(box.x0, box.y0 + dy, box.x1, box.y1 + dy, box.score)


for ckpt in ckpts:
    model = load_emo_model(ckpt)
    pipe = EMOPipeline(model, load_checkpoint_vae(ckpt), encoder)
    res = training_resolution(model, "diag")
    runner = B.Runner(pipe, res, model.config.fps, 20, 0, 2.5, 0.5, 2, True, "video")
    values = {k: [] for k in ("P1", "P2") if only in (None, k)}
    for clip in B.load_eval_clips(data, res, clips, 2.0, model.config.fps):
        truth = B.still_renders(clip, res)
        m = B.Measures(clip, res)
        masks = {"P1": lambda: fallback_box(res), "P2": lambda: detected_box(clip.reference)}
        for kind in values:
            mask = torch.from_numpy(face_region_mask(res, res, masks[kind](), scale))
            gen = runner.generate(clip, mask, speed=0.0)
            values[kind].append((psnr(gen, truth), m.lip_sync(gen)))
            print(ckpt, clip.clip_id, kind, "x%.2f" % scale, "PSNR %.2f dB, lip sync %.3f" % values[kind][-1],
                  flush=True)
    for kind, v in values.items():
        print(ckpt, kind, "x%.2f" % scale, "mean PSNR %.2f, lip sync %.3f" % tuple(np.mean(v, axis=0)), flush=True)
