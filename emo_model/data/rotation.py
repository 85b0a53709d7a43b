"""Head rotation per frame and its speed (degrees per frame) from 3D face landmarks.

Speed, what the speed layers train on (paper §3.2): the angle of the rotation between consecutive
frames, fitted with Kabsch (least-squares rigid fit of the centred, scale-normalised landmark
clouds), so translation and zoom (the face moving, the crop) never count as rotation. Two choices
keep it a measure of the head and not of the face's other motion or of tracker noise:
- only landmarks on rigid parts take part (forehead, nose, eye corners, cheekbones): the mouth and
  jaw move with speech;
- the normalised clouds are averaged over ±2 frames first. MediaPipe's depth (z) jitters from frame
  to frame; unsmoothed, a still head reads ~0.6°/frame and the known 1°/2° per frame of the test
  video correlate at 0.77; smoothed, a still head reads ~0.1°/frame and the correlation is 0.95.
  The speed layers read a ±2-frame window anyway, so nothing they use is lost.

Rotation (yaw, pitch, roll): the head's own axes from the smoothed landmarks — x from the right to
the left outer eye corner, y from the forehead down to the chin, z their cross product — as angles
in the image frame. Zero means a frontal, upright face (up to the person's own face geometry), so
these serve statistics and filtering; speed never uses them.
"""
from __future__ import annotations

import numpy as np

# MediaPipe Face Mesh indices: outer eye corners (subject's right, left), chin, forehead.
_EYE_R, _EYE_L, _CHIN, _FOREHEAD = 33, 263, 152, 10
# Rigid landmarks: forehead line, nose bridge and tip, eye corners, cheekbones, temples.
RIGID = (10, 151, 9, 8, 168, 6, 197, 195, 5, 4, 1, 33, 133, 362, 263, 234, 454, 127, 356, 93, 323, 21, 251,
         54, 284, 103, 332, 67, 297, 109, 338, 116, 345, 123, 352)
SMOOTH = 2  # frames each side


def kabsch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rotation R (3x3) that best maps point cloud `a` onto `b` ([K, 3] each): b ≈ s R a + t."""
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    u, _, vt = np.linalg.svd(b.T @ a)
    d = np.sign(np.linalg.det(u @ vt))  # a reflection is never a head motion
    return u @ np.diag([1.0, 1.0, d]) @ vt


def rotation_angle(r: np.ndarray) -> float:
    """Angle of rotation matrix `r` in degrees."""
    return float(np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1.0, 1.0))))


def head_axes(points: np.ndarray) -> np.ndarray:
    """3x3 matrix whose columns are the head's x (towards its left eye), y (down to the chin) and z axes."""
    x = points[_EYE_L] - points[_EYE_R]
    y = points[_CHIN] - points[_FOREHEAD]
    x = x / np.linalg.norm(x)
    y = y - x * (x @ y)
    y = y / np.linalg.norm(y)
    return np.stack([x, y, np.cross(x, y)], axis=1)


def euler_degrees(r: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of R = Rz(roll) Ry(yaw) Rx(pitch), in image axes (x right, y down,
    z into the picture): roll > 0 is a head tilted clockwise as seen in the picture."""
    yaw = np.degrees(np.arcsin(np.clip(-r[2, 0], -1.0, 1.0)))
    pitch = np.degrees(np.arctan2(r[2, 1], r[2, 2]))
    roll = np.degrees(np.arctan2(r[1, 0], r[0, 0]))
    return float(yaw), float(pitch), float(roll)


def rotations_and_speed(points: list[np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame landmarks [K, 3] (None where none were found) → rotation float32 [T, 3], speed float32 [T].

    Missing frames take landmarks interpolated from their neighbours (nearest at the ends); the
    caller decides how many a clip may miss, at least one frame must have some. speed[t] is the
    rotation from frame t-1 to t; speed[0] repeats speed[1].
    """
    clouds = _smoothed(_normalised(_filled(points)))
    rotation = np.array([euler_degrees(head_axes(c)) for c in clouds])
    rigid = clouds[:, RIGID]
    speed = np.array([0.0] + [rotation_angle(kabsch(a, b)) for a, b in zip(rigid, rigid[1:])])
    if len(speed) > 1:
        speed[0] = speed[1]
    return rotation.astype(np.float32), speed.astype(np.float32)


def _filled(points: list[np.ndarray | None]) -> np.ndarray:
    have = np.array([p is not None for p in points])
    idx = np.nonzero(have)[0]
    near = idx[np.abs(np.arange(len(points))[:, None] - idx[None]).argmin(axis=1)]  # nearest found frame
    out = np.stack([np.asarray(points[j], np.float64) for j in near])
    for t in np.nonzero(~have)[0]:
        before, after = idx[idx < t], idx[idx > t]
        if len(before) and len(after):
            a, b = before[-1], after[0]
            w = (t - a) / (b - a)
            out[t] = (1 - w) * np.asarray(points[a], np.float64) + w * np.asarray(points[b], np.float64)
    return out


def _normalised(clouds: np.ndarray) -> np.ndarray:
    """Each frame's cloud centred and scaled to unit norm (position and zoom removed)."""
    c = clouds - clouds.mean(axis=1, keepdims=True)
    return c / np.linalg.norm(c, axis=(1, 2), keepdims=True)


def _smoothed(clouds: np.ndarray) -> np.ndarray:
    """Moving average over ±SMOOTH frames, edge frames repeated."""
    padded = np.concatenate([clouds[:1].repeat(SMOOTH, 0), clouds, clouds[-1:].repeat(SMOOTH, 0)])
    return np.stack([padded[t:t + 2 * SMOOTH + 1].mean(axis=0) for t in range(len(clouds))])
