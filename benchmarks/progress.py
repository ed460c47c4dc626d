"""Progress of a benchmark suite on stderr: one line per step, with the
step's number out of the total and the time since the suite started,

    [ 3/62    12.4 s] security: pico path-race

so a run of a minute or more is never silent.  ``quiet`` (the suites' -q)
prints nothing."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, stream: TextIO | None = sys.stderr, *, quiet: bool = False) -> None:
        self.total = max(0, total)
        self.done = 0
        self.stream = None if quiet else stream
        self.t0 = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def _prefix(self) -> str:
        width = len(str(self.total))
        return f"[{self.done:{width}d}/{self.total} {self.elapsed():7.1f} s]"

    def step(self, text: str) -> None:
        """A new step begins: counts it and says what it is."""
        self.done = min(self.done + 1, self.total) if self.total else self.done + 1
        self.note(text)

    def note(self, text: str) -> None:
        """A line within the current step (or before the first)."""
        if self.stream is not None:
            self.stream.write(f"{self._prefix()} {text}\n")
            self.stream.flush()
