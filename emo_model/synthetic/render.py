"""Drawing one cartoon frame with Pillow (2x supersampled, then downscaled with a box filter).

Coordinates: x right, y down, in output pixels. The head (face, hair, eyes, mouth) is drawn on its
own layer and rotated in-plane by `roll_deg` (counter-clockwise as seen in the image) about the
centre of the face ellipse; the whole figure (head and shoulders) is shifted by (dx, dy) in fractions
of the frame side. Because the geometry is known, `render_face` also returns the exact face box (the
bounding box of the rotated face ellipse), the box a face detector gives for it, and the box the mouth
can occupy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from .identity import Identity

SUPERSAMPLE = 2
HEAD_Y = 0.46           # face centre, fraction of the frame height (before dy)
MOUTH_Y = 0.5           # mouth centre below the face centre, fraction of the face half-height
MOUTH_OPEN = 0.2        # mouth half-height when fully open, fraction of the face half-height
EYE_Y = -0.15           # eye line, fraction of the face half-height (negative: above the centre)
# The square box MediaPipe's face detector puts on these faces, as a function of the face ellipse's
# half-width a and half-height b: it sees the face under the fringe, so its box is lower than the
# ellipse's. Fit on 554 frames of the demo data (128 px, rolls within ±15°): rms 1.9 px on the side
# and 1.1 px on the centre (docs/demo-model/benchmark-face-region/DJ/).
DETECTOR_SIDE = (0.43, 1.31)    # side = 0.43 a + 1.31 b
DETECTOR_DROP = (0.03, 0.13)    # centre this far below the ellipse's, along the face's axis
FACE_BOXES = ("ellipse", "detector")  # the kinds of face box the generator can write
MOUTH_INTERIOR = (38, 10, 16)
DARK = (30, 22, 22)


@dataclass(frozen=True)
class Geometry:
    face_box: tuple[float, float, float, float]   # x0, y0, x1, y1 of the rotated face ellipse
    detector_box: tuple[float, float, float, float]  # a face detector's box for it (DETECTOR_SIDE/DROP)
    mouth_box: tuple[float, float, float, float]  # where the fully open mouth lies (rotated, axis-aligned)
    centre: tuple[float, float]                   # face centre


def face_geometry(identity: Identity, size: int, roll_deg: float = 0.0, dx: float = 0.0, dy: float = 0.0) -> Geometry:
    a = identity.face_width * size
    b = a * identity.face_aspect
    cx, cy = (0.5 + dx) * size, (HEAD_Y + dy) * size
    t = math.radians(roll_deg)
    c, s = math.cos(t), math.sin(t)
    hx, hy = math.sqrt((a * c) ** 2 + (b * s) ** 2), math.sqrt((a * s) ** 2 + (b * c) ** 2)
    # Mouth centre (0, MOUTH_Y * b) rotated counter-clockwise on screen: x' = x c + y s, y' = -x s + y c.
    my = MOUTH_Y * b
    mx_c, my_c = cx + my * s, cy + my * c
    mw, mh = identity.mouth_width * a, MOUTH_OPEN * b
    ex, ey = mw * abs(c) + mh * abs(s), mw * abs(s) + mh * abs(c)
    half = (DETECTOR_SIDE[0] * a + DETECTOR_SIDE[1] * b) / 2
    drop = DETECTOR_DROP[0] * a + DETECTOR_DROP[1] * b
    dcx, dcy = cx + drop * s, cy + drop * c
    return Geometry((cx - hx, cy - hy, cx + hx, cy + hy), (dcx - half, dcy - half, dcx + half, dcy + half),
                    (mx_c - ex, my_c - ey, mx_c + ex, my_c + ey), (cx, cy))


def box_of(geometry: Geometry, kind: str) -> tuple[float, float, float, float]:
    """The face box of a kind the generator writes: "ellipse" (exact) or "detector"."""
    if kind not in FACE_BOXES:
        raise ValueError(f"face box kind must be one of {FACE_BOXES}, got {kind!r}")
    return geometry.face_box if kind == "ellipse" else geometry.detector_box


def placement_from_box(identity: Identity, size: int, box, roll_deg: float, kind: str) -> tuple[float, float]:
    """(dx, dy) of a head whose face box of `kind` is `box` (pixels at `size`) at roll `roll_deg`: the
    inverse of face_geometry's placement, for reading a clip's pose back from its data."""
    g = face_geometry(identity, size, roll_deg)
    x0, y0, x1, y1 = box_of(g, kind)
    bx, by = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return (bx - (x0 + x1) / 2) / size, (by - (y0 + y1) / 2) / size


@lru_cache(maxsize=32)
def _background(top: tuple, bottom: tuple, size: int) -> np.ndarray:
    w = np.linspace(0.0, 1.0, size)[:, None, None]
    img = (1 - w) * np.array(top, np.float64) + w * np.array(bottom, np.float64)
    return np.broadcast_to(np.round(img).astype(np.uint8), (size, size, 3)).copy()


def _shade(colour, f: float) -> tuple[int, int, int]:
    return tuple(int(max(0, min(255, round(v * f)))) for v in colour)


def render_face(identity: Identity, size: int, mouth_open: float = 0.0, eyes_open: float = 1.0,
                roll_deg: float = 0.0, dx: float = 0.0, dy: float = 0.0, yaw_deg: float = 0.0
                ) -> tuple[np.ndarray, Geometry]:
    """One frame, uint8 [size, size, 3], and its Geometry.

    mouth_open, eyes_open: 0 (closed) .. 1 (fully open). yaw_deg (small, optional) only shifts the
    features sideways (a cartoon's turn); the generator keeps it at 0 so rotation labels are exact.
    """
    k = SUPERSAMPLE
    S = size * k
    mouth_open = float(min(max(mouth_open, 0.0), 1.0))
    eyes_open = float(min(max(eyes_open, 0.0), 1.0))
    a = identity.face_width * S
    b = a * identity.face_aspect
    cx, cy = (0.5 + dx) * S, (HEAD_Y + dy) * S

    base = Image.fromarray(_background(identity.background_top, identity.background_bottom, S))
    body = ImageDraw.Draw(base)
    # Neck and shoulders: they move with (dx, dy) but do not roll.
    neck_w = 0.45 * a
    body.rectangle([cx - neck_w, cy + 0.5 * b, cx + neck_w, cy + b + 0.18 * S], fill=_shade(identity.skin, 0.85))
    body.ellipse([cx - 0.36 * S, cy + b + 0.06 * S, cx + 0.36 * S, cy + b + 0.5 * S], fill=identity.shirt)

    layer = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    hair = identity.hair + (255,)
    style = identity.hair_style
    if style == "long":
        d.rounded_rectangle([cx - 1.22 * a, cy - 1.06 * b, cx + 1.22 * a, cy + 1.25 * b], radius=a, fill=hair)
    elif style == "bob":
        d.ellipse([cx - 1.2 * a, cy - 1.12 * b, cx + 1.2 * a, cy + 0.75 * b], fill=hair)
    elif style == "short":
        d.ellipse([cx - 1.08 * a, cy - 1.1 * b, cx + 1.08 * a, cy + 0.1 * b], fill=hair)
    # Ears, face.
    ear = _shade(identity.skin, 0.92) + (255,)
    for side in (-1, 1):
        d.ellipse([cx + side * a - 0.16 * a, cy - 0.22 * b, cx + side * a + 0.16 * a, cy + 0.12 * b], fill=ear)
    d.ellipse([cx - a, cy - b, cx + a, cy + b], fill=identity.skin + (255,))
    if style != "bald":  # the fringe over the top of the head
        d.chord([cx - 1.03 * a, cy - 1.06 * b, cx + 1.03 * a, cy - 0.1 * b], 180, 360, fill=hair)
    if style == "spiky":
        for i in range(-3, 4):
            x = cx + i * 0.3 * a
            top = cy - b * (1.25 + 0.05 * (i % 2))
            d.polygon([(x - 0.22 * a, cy - 0.85 * b), (x, top), (x + 0.22 * a, cy - 0.85 * b)], fill=hair)

    shift = math.sin(math.radians(yaw_deg)) * 0.35 * a
    # Eyes: white, iris, pupil; eyelids close vertically. Brows.
    ew = identity.eye_size * a
    eh = 0.75 * ew * eyes_open
    ey = cy + EYE_Y * b
    line = max(1.0, 0.035 * a)
    for side in (-1, 1):
        ex = cx + shift + side * identity.eye_spacing * a
        d.line([ex - 1.1 * ew, ey - 0.95 * ew - 0.25 * a, ex + 1.1 * ew, ey - 1.05 * ew - 0.25 * a - side * 0.05 * a],
               fill=_shade(identity.hair, 0.7) + (255,), width=max(1, round(0.07 * a)))
        if eh < 0.12 * ew:
            d.line([ex - ew, ey, ex + ew, ey], fill=DARK + (255,), width=max(1, round(line)))
            continue
        d.ellipse([ex - ew, ey - eh, ex + ew, ey + eh], fill=(250, 250, 250, 255), outline=DARK + (255,),
                  width=max(1, round(line)))
        r = min(0.55 * ew, eh * 0.95)
        d.ellipse([ex - r, ey - r, ex + r, ey + r], fill=identity.eye_colour + (255,))
        p = 0.5 * r
        d.ellipse([ex - p, ey - p, ex + p, ey + p], fill=(12, 12, 12, 255))
    # Nose.
    nx, ny = cx + 1.4 * shift, cy + 0.18 * b
    d.line([nx, ny - 0.1 * b, nx - 0.08 * a, ny + 0.06 * b, nx + 0.04 * a, ny + 0.08 * b],
           fill=_shade(identity.skin, 0.7) + (255,), width=max(1, round(line)))
    # Mouth: a dark opening whose height is mouth_open * MOUTH_OPEN * b, lips around it.
    mx, my = cx + shift, cy + MOUTH_Y * b
    mw = identity.mouth_width * a
    mh = mouth_open * MOUTH_OPEN * b
    lip = identity.lip + (255,)
    lip_w = max(1, round(1.6 * line))
    if mh < 0.6 * lip_w:
        d.line([mx - mw, my, mx + mw, my], fill=lip, width=lip_w)
    else:
        d.ellipse([mx - mw, my - mh, mx + mw, my + mh], fill=MOUTH_INTERIOR + (255,), outline=lip, width=lip_w)

    if roll_deg:
        layer = layer.rotate(roll_deg, resample=Image.BICUBIC, center=(cx, cy))
    base = base.convert("RGBA")
    base.alpha_composite(layer)
    frame = base.convert("RGB").resize((size, size), Image.BOX)
    return np.asarray(frame, dtype=np.uint8), face_geometry(identity, size, roll_deg, dx, dy)
