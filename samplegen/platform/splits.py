"""Train / validation / test assignment by a stable hash of the instrument group.

A split depends only on the group's name and the fractions, never on which other files exist, so
renders of one instrument never straddle splits and adding files never moves existing ones.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

from samplegen.errors import SamplegenError

SPLIT_NAMES: tuple[str, str, str] = ("train", "validation", "test")


class SplitError(SamplegenError, ValueError):
    """Split fractions that cannot be used."""


@dataclass(frozen=True)
class SplitFractions:
    """Fractions of instrument groups that go to train, validation and test (they sum to 1)."""

    train: float = 0.8
    validation: float = 0.1
    test: float = 0.1

    def __post_init__(self) -> None:
        values = (self.train, self.validation, self.test)
        # `not v >= 0`, not `v < 0`: NaN passes every comparison, and sent every group to test.
        if any(not v >= 0 or math.isinf(v) for v in values) or not self.train > 0:
            raise SplitError(f"splits: fractions must be >= 0 with train > 0, got {values}")
        if abs(sum(values) - 1.0) > 1e-6:
            raise SplitError(f"splits: fractions must sum to 1, got {values} (sum {sum(values):g})")

    @classmethod
    def parse(cls, spec: str | Sequence[float]) -> SplitFractions:
        """From ``"0.8,0.1,0.1"`` or a sequence of three numbers."""
        try:
            parts = [float(p) for p in (spec.split(",") if isinstance(spec, str) else spec)]
        except ValueError as exc:
            raise SplitError(f"splits: {spec!r} is not three comma-separated numbers") from exc
        if len(parts) != 3:
            raise SplitError(f"splits: expected train,validation,test fractions, got {spec!r}")
        return cls(*parts)

    def as_dict(self) -> dict[str, float]:
        """``{"train": ..., "validation": ..., "test": ...}``."""
        return {"train": self.train, "validation": self.validation, "test": self.test}


def group_position(group: str) -> float:
    """A uniform number in [0, 1) derived from the group's name alone (sha256)."""
    digest = hashlib.sha256(group.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_for_group(group: str, fractions: SplitFractions) -> str:
    """The split (``train``, ``validation`` or ``test``) that every sample of `group` belongs to."""
    u = group_position(group)
    if u < fractions.train:
        return "train"
    if u < fractions.train + fractions.validation:
        return "validation"
    return "test"
