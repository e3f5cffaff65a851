"""``baton eval``'s progress line on stderr: redrawn in place on a terminal, sparse in a log.

A CI log that gets a line per case for 600 runs is unreadable, and one that gets nothing
for ten minutes looks hung; so without a terminal a line is written per tenth of an arm.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from baton.evals.records import Arm

WIDTH = 24
"""Characters of the bar."""


class ProgressLine:
    """Call with ``(arm, finished, total)`` as an arm advances (a :data:`~baton.evals.runner.Progress`)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._started: dict[Arm, tuple[float, int]] = {}
        self._shown: dict[Arm, int] = {}

    def __call__(self, arm: Arm, done: int, total: int) -> None:
        now = time.monotonic()
        began, resumed = self._started.setdefault(arm, (now, done))  # resumed cases are not this run's pace
        tenth = 10 * done // total if total else 10
        if not self._tty and self._shown.get(arm) == tenth:
            return
        self._shown[arm] = tenth
        filled = WIDTH * done // total if total else WIDTH
        rate = (done - resumed) / (now - began) if now > began else 0.0
        line = f"{arm:<9} {done}/{total} [{'#' * filled}{'.' * (WIDTH - filled)}] {rate:.1f} cases/s"
        if self._tty:
            end = "\n" if done >= total else ""
            self._stream.write(f"\r\x1b[2K{line}{end}")
        else:
            self._stream.write(line + "\n")
        self._stream.flush()

    def close(self) -> None:
        """End an unfinished line in place (an interrupted arm), so what follows starts clean."""
        if self._tty and any(0 < self._shown.get(arm, 10) < 10 for arm in self._shown):
            self._stream.write("\n")
            self._stream.flush()
