"""Cartoon identities: every look parameter drawn from one seed (`identity_from_seed`)."""
from __future__ import annotations

import colorsys
from dataclasses import asdict, dataclass

import numpy as np

HAIR_STYLES = ("bald", "short", "long", "bob", "spiky")

Colour = tuple[int, int, int]


def _hsv(h: float, s: float, v: float) -> Colour:
    return tuple(int(round(c * 255)) for c in colorsys.hsv_to_rgb(h % 1.0, s, v))


@dataclass(frozen=True)
class Identity:
    """Geometry is in fractions of the frame side (the renderer scales it to any resolution)."""
    seed: int
    face_width: float      # half-width of the face ellipse
    face_aspect: float     # half-height / half-width
    skin: Colour
    hair: Colour
    hair_style: str
    eye_colour: Colour
    eye_size: float        # half-width of an eye, fraction of face half-width
    eye_spacing: float     # eye centre offset from the midline, fraction of face half-width
    mouth_width: float     # half-width of the mouth, fraction of face half-width
    lip: Colour
    shirt: Colour
    background_top: Colour
    background_bottom: Colour

    def to_dict(self) -> dict:
        return asdict(self)


def identity_from_seed(seed: int) -> Identity:
    """A deterministic identity for `seed` (any int >= 0)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x1D]))
    skin_v = rng.uniform(0.35, 0.97)
    skin = _hsv(rng.uniform(0.03, 0.10), rng.uniform(0.25, 0.6), skin_v)
    hair = _hsv(rng.uniform(0.0, 1.0) if rng.random() < 0.2 else rng.uniform(0.02, 0.12),
                rng.uniform(0.3, 0.9), rng.uniform(0.1, 0.9))
    bg_h = rng.uniform(0, 1)
    return Identity(
        seed=int(seed),
        face_width=float(rng.uniform(0.17, 0.22)),
        face_aspect=float(rng.uniform(1.12, 1.4)),
        skin=skin,
        hair=hair,
        hair_style=HAIR_STYLES[int(rng.integers(len(HAIR_STYLES)))],
        eye_colour=_hsv(rng.uniform(0, 1), rng.uniform(0.4, 0.9), rng.uniform(0.3, 0.8)),
        eye_size=float(rng.uniform(0.16, 0.24)),
        eye_spacing=float(rng.uniform(0.36, 0.46)),
        mouth_width=float(rng.uniform(0.28, 0.42)),
        lip=_hsv(rng.uniform(0.95, 1.02), rng.uniform(0.35, 0.6), rng.uniform(0.55, 0.8)),
        shirt=_hsv(rng.uniform(0, 1), rng.uniform(0.3, 0.8), rng.uniform(0.3, 0.9)),
        background_top=_hsv(bg_h, rng.uniform(0.1, 0.5), rng.uniform(0.55, 0.95)),
        background_bottom=_hsv(bg_h + rng.uniform(-0.15, 0.15), rng.uniform(0.1, 0.6), rng.uniform(0.35, 0.85)),
    )
