"""A dependency-free progress bar on stderr: one line redrawn in a terminal, a line per video otherwise."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, enabled: bool = True, width: int = 24):
        self.total, self.enabled, self.width = total, enabled, width
        self.done, self.clips, self.name = 0, 0, ""
        self.started = time.monotonic()
        self.tty = sys.stderr.isatty()

    def start(self, name: str) -> None:
        self.name = name
        self._draw()

    def clip(self, clips: int) -> None:
        self.clips = clips
        self._draw()

    def finish(self, clips: int) -> None:
        self.done, self.clips = self.done + 1, clips
        if self.enabled and not self.tty:  # logs get one line per video
            print(self._line(), file=sys.stderr, flush=True)
        self._draw()

    def close(self) -> None:
        if self.enabled and self.tty:
            print(file=sys.stderr, flush=True)

    def _line(self) -> str:
        filled = self.width * self.done // max(self.total, 1)
        elapsed = time.monotonic() - self.started
        return (f"[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} videos, "
                f"{self.clips} clips, {elapsed:.0f} s  {self.name[-40:]}")

    def _draw(self) -> None:
        if self.enabled and self.tty:
            print(f"\r\033[K{self._line()}", end="", file=sys.stderr, flush=True)
