"""Training-set augmentation: mixes of two different training samples in the audio domain."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from samplegen.errors import SamplegenError


class AugmentError(SamplegenError, ValueError):
    """Augmentation settings that cannot be used."""


@dataclass(frozen=True)
class MixPlan:
    """One augmented sample: ``a * wave[first] + (1 - a) * wave[second]``, then re-normalised."""

    first: int
    second: int
    amount: float


def parse_mix_range(spec: str | Sequence[float]) -> tuple[float, float]:
    """``"0.3,0.7"`` -> (0.3, 0.7), checked to lie in [0, 1] with lo <= hi."""
    try:
        parts = [float(p) for p in (spec.split(",") if isinstance(spec, str) else spec)]
    except ValueError as exc:
        raise AugmentError(f"mix range: {spec!r} is not two comma-separated numbers") from exc
    if len(parts) != 2 or not 0.0 <= parts[0] <= parts[1] <= 1.0:
        raise AugmentError(f"mix range: need lo,hi with 0 <= lo <= hi <= 1, got {spec!r}")
    return parts[0], parts[1]


def plan_mixes(
    groups: Sequence[str],
    notes: Sequence[int | None],
    count: int,
    mix_range: tuple[float, float],
    seed: int,
) -> list[MixPlan]:
    """Choose `count` pairs of different training samples (indices into `groups`/`notes`).

    The second sample is drawn from other instruments playing the same note when there are any
    (a mix of two notes is a chord, not a new instrument), else from any other instrument, else
    from any other sample. Deterministic for a given `seed`.
    """
    n = len(groups)
    if count < 0:
        raise AugmentError(f"augment mixes: count must be >= 0, got {count}")
    if count == 0:
        return []
    if n < 2:
        raise AugmentError(f"augment mixes: need at least 2 training samples to mix, have {n}")
    rng = np.random.default_rng(seed)
    group_arr = np.asarray(groups, dtype=object)
    note_arr = np.asarray([-1 if v is None else v for v in notes])
    plans: list[MixPlan] = []
    for _ in range(count):
        first = int(rng.integers(n))
        other_group = group_arr != group_arr[first]
        candidates = np.flatnonzero(other_group & (note_arr == note_arr[first]))
        if candidates.size == 0:
            candidates = np.flatnonzero(other_group)
        if candidates.size == 0:
            candidates = np.delete(np.arange(n), first)
        second = int(candidates[rng.integers(candidates.size)])
        amount = float(rng.uniform(mix_range[0], mix_range[1]))
        plans.append(MixPlan(first, second, amount))
    return plans


def mix_waves(first: np.ndarray, second: np.ndarray, amount: float) -> np.ndarray:
    """``amount * first + (1 - amount) * second``, divided by its peak |x| (float32)."""
    mixed = amount * first.astype(np.float64) + (1.0 - amount) * second.astype(np.float64)
    peak = float(np.max(np.abs(mixed)))
    if peak > 0:
        mixed /= peak
    return mixed.astype(np.float32)
