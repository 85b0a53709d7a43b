"""The loss log (OUT/loss.jsonl: one {"step", "loss", "lr", "seconds"} per line) and its curve (loss.png).

A resumed run first drops the lines after its checkpoint's step (written by the killed run after its
last save), so the log of a killed-and-resumed run equals that of an uninterrupted one.
The curve is drawn with Pillow (matplotlib is no dependency): raw losses in grey, a moving average
in blue, step on x, loss on y (log scale when the losses span more than a decade).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from PIL import Image, ImageDraw

from ..atomic import atomic_path, write_text_atomic


class LossLog:
    def __init__(self, path):
        self.path = Path(path)

    def truncate_after(self, step: int) -> None:
        kept = [r for r in self.read() if r["step"] <= step]
        self._rewrite(kept)

    def append(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def read(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def _rewrite(self, records: list[dict]) -> None:
        write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in records))


def plot_losses(records: list[dict], path, size: tuple[int, int] = (800, 450)) -> None:
    """Draw the loss curve to `path` (PNG), written atomically."""
    width, height = size
    left, right, top, bottom = 70, 20, 20, 40
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    points = [(r["step"], r["loss"]) for r in records if math.isfinite(r["loss"])]
    if points:
        steps = [s for s, _ in points]
        losses = [v for _, v in points]
        use_log = min(losses) > 0 and max(losses) / min(losses) > 10
        y = [math.log10(v) for v in losses] if use_log else losses
        x0, x1 = min(steps), max(steps) if max(steps) > min(steps) else min(steps) + 1
        y0, y1 = min(y), max(y) if max(y) > min(y) else min(y) + 1

        def xy(step, value):
            return (left + (step - x0) / (x1 - x0) * (width - left - right),
                    height - bottom - (value - y0) / (y1 - y0) * (height - top - bottom))

        if len(points) > 1:
            draw.line([xy(s, v) for s, v in zip(steps, y)], fill=(170, 170, 170), width=1)
            span = max(1, len(y) // 20)
            smooth = [sum(y[max(0, i - span + 1):i + 1]) / len(y[max(0, i - span + 1):i + 1]) for i in range(len(y))]
            draw.line([xy(s, v) for s, v in zip(steps, smooth)], fill=(30, 90, 200), width=2)
        label = (lambda v: f"{10 ** v:.3g}") if use_log else (lambda v: f"{v:.3g}")
        draw.text((5, top), label(y1), fill="black")
        draw.text((5, height - bottom - 10), label(y0), fill="black")
        draw.text((left, height - bottom + 8), f"step {x0}", fill="black")
        draw.text((width - right - 90, height - bottom + 8), f"step {max(steps)}", fill="black")
    draw.text((left + 10, top + 5), "training loss" + (" (log scale)" if points and use_log else ""), fill="black")
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
