"""Make the bundled example inputs, input/emo_portrait.png and input/emo_speech.wav.

The portrait is a cartoon identity the demo model never saw (from the generator's held-out seed
stream, past the eight identities of the eval split), drawn at 256² with the mouth closed; the
speech is a held-out English sentence from espeak-ng (about 5 s), normalised like the training
audio. Both files are committed; this script documents and reproduces them:

    python scripts/make_demo_inputs.py
"""
from __future__ import annotations

import sys
import wave
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emo_model.atomic import atomic_path  # noqa: E402
from emo_model.synthetic import identity_from_seed, render_face  # noqa: E402
from emo_model.synthetic.generate import SPLITS, _seed  # noqa: E402
from emo_model.synthetic.speech import SAMPLE_RATE, normalise, sentences_for, synthesize  # noqa: E402


def main() -> None:
    out = ROOT / "input"
    out.mkdir(exist_ok=True)
    identity = identity_from_seed(_seed(0, 1, SPLITS["eval"], 8))
    frame, _ = render_face(identity, 256, mouth_open=0.0)
    with atomic_path(out / "emo_portrait.png") as tmp:
        Image.fromarray(frame).save(tmp, format="PNG")
    sentence = sentences_for("en", held_out=True)[0]
    pause = torch.zeros(int(0.3 * SAMPLE_RATE))
    speech = normalise(torch.cat([pause, synthesize(sentence, "en-us", 150, 50), pause]))
    pcm = (speech.clamp(-1, 1).numpy() * 32767).round().astype(np.int16)
    with atomic_path(out / "emo_speech.wav") as tmp:
        with wave.open(str(tmp), "wb") as f:
            f.setnchannels(1)
            f.setsampwidth(2)
            f.setframerate(SAMPLE_RATE)
            f.writeframes(pcm.tobytes())
    print(f"{out / 'emo_portrait.png'}; {out / 'emo_speech.wav'}: {len(pcm) / SAMPLE_RATE:.2f} s")


if __name__ == "__main__":
    main()
