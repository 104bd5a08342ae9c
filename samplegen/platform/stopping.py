"""When a trial stops on its own: the original's moving-average stall rule and an overfit limit.

Pure functions over loss histories, so the same rule serves Ray trials and plain training runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from samplegen.errors import SamplegenError


@dataclass(frozen=True)
class StallRule:
    """Stop when both losses stop moving, or when validation loss runs away from training loss.

    The stall test needs `2 * window` epochs: old = mean(L[-2w:-w]), new = mean(L[-w:]), and the
    losses have stalled when |new / old - 1| < min_change for *both* train and validation (the
    original used L[-w:-1] for `new`, dropping the latest epoch: fixed here). `overfit_limit`
    (val / train) is checked from the same epoch on; None turns either test off.
    """

    window: int | None = 5
    min_change: float = 0.005
    overfit_limit: float | None = 1.4

    def __post_init__(self) -> None:
        if self.window is not None and self.window < 1:
            raise SamplegenError(f"stall window: must be >= 1 epoch (or off), got {self.window}")
        if not 0 <= self.min_change < 1:
            raise SamplegenError(f"stall min change: must be in [0, 1), got {self.min_change}")
        if self.overfit_limit is not None and self.overfit_limit <= 0:
            raise SamplegenError(f"overfit limit: must be positive, got {self.overfit_limit}")

    @property
    def min_epochs(self) -> int:
        """Epochs before either test may fire."""
        return 2 * self.window if self.window else 1

    def check(self, train: Sequence[float], val: Sequence[float]) -> tuple[str, str] | None:
        """(status, reason) when the run should stop after the last epoch in the histories, else None."""
        if len(train) < self.min_epochs or len(val) < self.min_epochs:
            return None
        if self.overfit_limit is not None:
            ratio = overfit_ratio(train[-1], val[-1])
            if ratio > self.overfit_limit:
                return (
                    "overfit",
                    f"overfit ratio val/train {ratio:.3f} > limit {self.overfit_limit}",
                )
        if self.window:
            changes = [relative_change(h, self.window) for h in (train, val)]
            if all(c is not None and abs(c) < self.min_change for c in changes):
                return (
                    "stalled",
                    f"losses stalled: moving-average change train {changes[0]:+.4%}, "
                    f"val {changes[1]:+.4%} over {self.window} epochs < {self.min_change:.2%}",
                )
        return None


def overfit_ratio(train_loss: float, val_loss: float) -> float:
    """val / train; inf when the training loss is zero."""
    return val_loss / train_loss if train_loss > 0 else math.inf


def relative_change(losses: Sequence[float], window: int) -> float | None:
    """mean(L[-w:]) / mean(L[-2w:-w]) - 1, or None with fewer than 2w values."""
    if window < 1 or len(losses) < 2 * window:
        return None
    old = sum(losses[-2 * window : -window]) / window
    new = sum(losses[-window:]) / window
    if old == 0:
        return 0.0 if new == 0 else math.inf
    return new / old - 1.0
