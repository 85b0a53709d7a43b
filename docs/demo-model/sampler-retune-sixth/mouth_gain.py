# As run (from /tmp/diag): python mouth_gain.py EVAL_DIR AUDIO_CFG -- generated vs true mouth opening (the
# benchmark's mouth darkness) on the frames frames.py saved; slope = least-squares fit of generated on true.
import sys, numpy as np
from emo_model.synthetic import benchmark as B
from emo_model.synthetic.measure import mouth_opening
data, res = sys.argv[1], 64
clips = B.load_eval_clips(data, res, 4, 2.0, 25.0)
for clip in clips:
    truth = B.still_renders(clip, res); gen = np.load(f"/tmp/diag/{clip.clip_id}_gen_a{sys.argv[2]}.npy")
    m = B.Measures(clip, res)
    a, b = mouth_opening(gen, m.mouth_box), mouth_opening(truth, m.mouth_box)
    print(clip.clip_id, "gen mean %.2f max %.2f | truth mean %.2f max %.2f | slope %.2f" % (a.mean(), a.max(), b.mean(), b.max(), np.polyfit(b, a, 1)[0]))
