"""Procedural cartoon talking-head videos in the EMO training-set format ("emo-dataset/1").

    python -m emo_model.synthetic.generate OUT_DIR [--identities 16] [--clips-per-identity 4]
        [--seconds 4] [--fps 25] [--resolution 128] [--seed 0] [--holdout-identities 2]
        [--max-speed 1.0] [--audio DIR] [--audio-encoder PATH] [--face-box ellipse|detector]

Writes OUT_DIR/train (and OUT_DIR/eval with held-out identities and sentences) with the same
writers as `emo_model.data.prepare`; clips carry two extra tensors, `mouth_open` [T] (the mouth rule
of `speech.mouth_curve`, ground truth for lip sync) and `eyes_open` [T]. OUT_DIR/<split>/synthetic.json
records each clip's identity, voice, text and motion settings.
"""
from .identity import HAIR_STYLES, Identity, identity_from_seed
from .motion import Motion, blinks, head_motion, roll_schedule
from .render import Geometry, face_geometry, render_face
from .speech import DEFAULT_VOICES, SENTENCES, mouth_curve, sentences_for, synthesize

__all__ = ["DEFAULT_VOICES", "Geometry", "HAIR_STYLES", "Identity", "Motion", "SENTENCES", "blinks",
           "face_geometry", "generate_dataset", "head_motion", "identity_from_seed", "mouth_curve",
           "render_face", "roll_schedule", "sentences_for", "synthesize"]


def __getattr__(name):
    if name in ("generate_dataset", "GenerateReport"):  # lazily: `python -m ...generate` must not import it twice
        from . import generate
        return getattr(generate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
