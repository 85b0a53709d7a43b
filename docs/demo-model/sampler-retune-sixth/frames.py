# As run (from /tmp/diag): python frames.py CHECKPOINT EVAL_DIR CLIPS OUT.png AUDIO_CFG -- truth / ceiling / generated
# frames side by side, and each generated clip saved as /tmp/diag/<clip>_gen_a<AUDIO_CFG>.npy for mouth_gain.py.
import sys, numpy as np, torch
from PIL import Image
from emo_model.synthetic import benchmark as B
from emo_model.audio import load_audio_encoder, packaged_whisper_tiny_dir
from emo_model.checkpoint import load_checkpoint_vae, load_emo_model, training_resolution
from emo_model.pipeline import EMOPipeline
ckpt, data, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
model = load_emo_model(ckpt); vae = load_checkpoint_vae(ckpt)
pipe = EMOPipeline(model, vae, load_audio_encoder(packaged_whisper_tiny_dir()))
res = training_resolution(model, "diag"); fps = model.config.fps
clips = B.load_eval_clips(data, res, n, 2.0, fps)
runner = B.Runner(pipe, res, fps, 20, 0, float(sys.argv[5]), 1.0, 2, True, "video")
rows = []
for clip in clips:
    truth = B.still_renders(clip, res); gen = runner.generate(clip, speed=0.0)
    ceil = B.vae_reconstruction(pipe.codec, truth, clip, "video")
    idx = [0, 12, 25, 37, 49]
    rows.append(np.concatenate([np.concatenate([truth[i], ceil[i], gen[i]], 0) for i in idx], 1))
    np.save(f"/tmp/diag/{clip.clip_id}_gen_a{sys.argv[5]}.npy", gen)
img = np.concatenate(rows, 0)
Image.fromarray(img).resize((img.shape[1] * 3, img.shape[0] * 3), Image.NEAREST).save(sys.argv[4])
