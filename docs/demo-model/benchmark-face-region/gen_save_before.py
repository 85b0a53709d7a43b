import sys, numpy as np
from emo_model.synthetic import benchmark as B
from emo_model.audio import load_audio_encoder, packaged_whisper_tiny_dir
from emo_model.checkpoint import load_checkpoint_vae, load_emo_model, training_resolution
from emo_model.pipeline import EMOPipeline
ckpt, data, clips, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
cm = None if len(sys.argv) > 5 and sys.argv[5] == "none" else "video"
model = load_emo_model(ckpt); vae = load_checkpoint_vae(ckpt)
pipe = EMOPipeline(model, vae, load_audio_encoder(packaged_whisper_tiny_dir()))
res = training_resolution(model, "diag")
runner = B.Runner(pipe, res, model.config.fps, 20, 0, 2.5, 0.5, 2, True, cm)
saved = {}
for clip in B.load_eval_clips(data, res, clips, 2.0, model.config.fps):
    truth = B.still_renders(clip, res)
    saved[clip.clip_id + "/gen"] = runner.generate(clip, speed=0.0)
    saved[clip.clip_id + "/truth"] = truth
    saved[clip.clip_id + "/ceil"] = B.vae_reconstruction(pipe.codec, truth, clip, cm)
    saved[clip.clip_id + "/ref"] = clip.reference
    print(clip.clip_id, flush=True)
np.savez_compressed(out, **saved)
