"""How far a long stage has come, said now and then: a dataset build's scan and encoding, an
evaluation's notes."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

# How often a long stage says how far it has come.
REPORT_EVERY_S = 30.0


@dataclass
class Counter:
    """Counts the items of a stage as they finish and says how far it has come, at most every
    `every_s` seconds (a build of a few thousand files says nothing more)."""

    total: int
    what: str
    say: Callable[[str], None]
    every_s: float | None = None  # None: REPORT_EVERY_S
    done: int = 0
    last: float = field(default_factory=time.monotonic)

    def add(self, n: int) -> None:
        """`n` more items are done."""
        self.done += n
        now = time.monotonic()
        every = REPORT_EVERY_S if self.every_s is None else self.every_s
        if now - self.last >= every and self.done < self.total:
            self.last = now
            self.say(f"{self.what} {self.done:,} of {self.total:,}")
