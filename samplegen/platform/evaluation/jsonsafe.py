"""JSON values that are always finite: anything that is not becomes null with a recorded reason."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np


class NullReasons:
    """Collects why a value in metrics.json is null, keyed by its dotted path (``loss.mean``)."""

    def __init__(self) -> None:
        self.reasons: dict[str, str] = {}

    def add(self, path: str, reason: str) -> None:
        """Record that the value at `path` is null because of `reason` (the first reason wins)."""
        self.reasons.setdefault(path, reason)

    def as_dict(self) -> dict[str, str]:
        """The reasons, sorted by path."""
        return dict(sorted(self.reasons.items()))


def _join(path: str, key: str | int) -> str:
    return f"{path}.{key}" if path else str(key)


def sanitize(value: Any, nulls: NullReasons, path: str = "") -> Any:
    """Plain JSON types from numpy/torch-free values; NaN/inf become None with a reason in `nulls`.

    A None already present must have a reason recorded by whoever put it there; one without is
    recorded as "not available" so no null goes unexplained.
    """
    if isinstance(value, dict):
        return {str(k): sanitize(v, nulls, _join(path, str(k))) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [sanitize(v, nulls, _join(path, i)) for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        return sanitize(value.tolist(), nulls, path)
    if isinstance(value, np.generic):
        return sanitize(value.item(), nulls, path)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        nulls.add(path, f"not finite ({value})")
        return None
    if value is None:
        nulls.add(path, "not available")
        return None
    raise TypeError(f"metrics: {path} has a value of type {type(value).__name__}, not JSON")
