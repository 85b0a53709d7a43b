"""Head motion and blinks of a synthetic clip, all drawn from a seeded numpy Generator.

Roll (in-plane head rotation, degrees) moves at a controlled speed: the clip is cut into segments of
SEGMENT_SECONDS (random within the range); each segment draws a speed uniformly in
[0, max_speed] degrees per frame (a share STILL_SHARE of segments hold still, speed 0) and moves roll
by exactly that amount every frame, turning back before |roll| would pass max_roll. Hence
speed[t] = |roll[t] - roll[t-1]| is exact; speed[0] repeats speed[1] (as in the real-video labels).
Translation (dx, dy, fractions of the frame side) drifts smoothly: a sum of two slow sines per axis
with random phases, amplitude up to max_shift. It is not part of the rotation speed label.
Blinks: the first after 0.3-3 s, then every 2-5 s; a blink closes the eyes for about 4 frames at 25 fps
(0.16 s) with half-closed frames on both sides.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SEGMENT_SECONDS = (0.8, 2.0)
STILL_SHARE = 0.15


@dataclass
class Motion:
    roll: np.ndarray    # float64 [T] degrees
    speed: np.ndarray   # float64 [T] degrees per frame
    dx: np.ndarray      # float64 [T] fraction of the frame side
    dy: np.ndarray


def roll_schedule(num_frames: int, fps: float, rng: np.random.Generator, max_speed: float = 1.0,
                  max_roll: float = 15.0) -> tuple[np.ndarray, np.ndarray]:
    """(roll [T], speed [T]) per the module docstring."""
    roll = np.zeros(num_frames)
    roll[0] = rng.uniform(-0.5, 0.5) * max_roll
    direction = 1.0 if rng.random() < 0.5 else -1.0
    t = 1
    while t < num_frames:
        length = max(1, round(rng.uniform(*SEGMENT_SECONDS) * fps))
        speed = 0.0 if rng.random() < STILL_SHARE else rng.uniform(0.0, max_speed)
        if rng.random() < 0.3:
            direction = -direction
        for _ in range(length):
            if t >= num_frames:
                break
            if abs(roll[t - 1] + direction * speed) > max_roll:
                direction = -direction
            roll[t] = roll[t - 1] + direction * speed
            t += 1
    speed = np.abs(np.diff(roll, prepend=roll[:1]))
    if num_frames > 1:
        speed[0] = speed[1]
    return roll, speed


def drift(num_frames: int, fps: float, rng: np.random.Generator, max_shift: float = 0.04) -> np.ndarray:
    """Smooth translation [T] in -max_shift..max_shift."""
    t = np.arange(num_frames) / fps
    out = np.zeros(num_frames)
    for _ in range(2):
        period = rng.uniform(2.0, 6.0)
        out += 0.5 * max_shift * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
    return out


def head_motion(num_frames: int, fps: float, rng: np.random.Generator, max_speed: float = 1.0,
                max_roll: float = 15.0, max_shift: float = 0.04) -> Motion:
    roll, speed = roll_schedule(num_frames, fps, rng, max_speed, max_roll)
    return Motion(roll, speed, drift(num_frames, fps, rng, max_shift), drift(num_frames, fps, rng, max_shift))


def blinks(num_frames: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """eyes_open float64 [T] in 0..1."""
    eyes = np.ones(num_frames)
    closed = max(1, round(0.16 * fps))
    t = rng.uniform(0.3, 3.0)
    while True:
        start = round(t * fps)
        if start >= num_frames:
            break
        profile = [0.5] + [0.0] * closed + [0.5]
        for i, v in enumerate(profile):
            if start + i < num_frames:
                eyes[start + i] = min(eyes[start + i], v)
        t += rng.uniform(2.0, 5.0)
    return eyes
