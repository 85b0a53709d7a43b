"""Fit MediaPipe's face box on the synthetic frames as a function of the renderer's geometry
(DECISION_RULE addendum 7; the fit became render.DETECTOR_SIDE / DETECTOR_DROP).

    python docs/demo-model/benchmark-face-region/DJ/fit_detector_box.py runs/demo/data

Every 25th frame of every clip of DATA/train and DATA/eval (an ellipse-box split at 128 px), MediaPipe
on the frame as stored. In the face's frame (rotated by its roll): the detected box's centre offset
from the ellipse's centre along the face's axis ("drop") and across it, and its side, least-squares in
the ellipse's half-axes a and b.
"""
import json
import sys

import numpy as np

from emo_model.data import load_index, read_clip, read_clip_frames
from emo_model.face import detect_face_box, make_detector

root = sys.argv[1]
detector = make_detector("mediapipe")
rows, missed = [], 0
for split in ("train", "eval"):
    folder = f"{root}/{split}"
    records = json.load(open(f"{folder}/synthetic.json"))["clips"]
    for clip in load_index(folder)["clips"]:
        tensors = read_clip(folder, clip["id"])
        identity = records[clip["id"]]["identity"]
        a = identity["face_width"] * 128
        b = a * identity["face_aspect"]
        for f in range(0, int(clip["num_frames"]), 25):
            found = detect_face_box(np.array(read_clip_frames(folder, clip["id"], f, 1)[0]), detector)
            if found is None:
                missed += 1
                continue
            x0, y0, x1, y1 = tensors["face_boxes"][f].float().tolist()
            t = np.radians(float(tensors["rotation"][f, 2]))
            ox, oy = (found.x0 + found.x1 - x0 - x1) / 2, (found.y0 + found.y1 - y0 - y1) / 2
            rows.append((a, b, ox * np.sin(t) + oy * np.cos(t), ox * np.cos(t) - oy * np.sin(t),
                         (found.width + found.height) / 2, found.width / found.height, identity["hair_style"]))
print(f"frames with a face: {len(rows)}, missed: {missed}")
ab = np.array([r[:2] for r in rows])
styles = np.array([r[6] for r in rows])
print(f"width / height of MediaPipe's box: median {np.median([r[5] for r in rows]):.3f}")
for name, col in (("side", 4), ("drop", 2)):
    y = np.array([r[col] for r in rows])
    coef = np.linalg.lstsq(ab, y, rcond=None)[0]
    resid = y - ab @ coef
    print(f"{name} = {coef[0]:.3f} a + {coef[1]:.3f} b   rms {np.sqrt(np.mean(resid ** 2)):.2f} px"
          f"   median {np.median(y):.2f} px")
    print("   residual median by hair style: " + ", ".join(
        f"{s} {np.median(resid[styles == s]):+.2f} (n {int((styles == s).sum())})" for s in sorted(set(styles))))
across = np.array([r[3] for r in rows])
print(f"across the face's axis: median {np.median(across):+.2f} px, rms {np.sqrt(np.mean(across ** 2)):.2f} px")
