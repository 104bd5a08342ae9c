"""A small representative subset for quick searches (the original project's "diverse subset")."""

from __future__ import annotations

import numpy as np


def diverse_subset(x: np.ndarray, k: int) -> np.ndarray:
    """Indices of `k` diverse samples of `x` (N, ...), in the order they were chosen.

    Starts from the sample nearest (L2) the mean of all samples, then repeatedly adds the sample
    farthest from the mean of the subset chosen so far. Ties go to the lowest index, so the result
    is deterministic. Distances use ||x - m||^2 = ||x||^2 - 2 x.m + ||m||^2, one matrix-vector
    product per step, so `x` is never copied.
    """
    n = int(x.shape[0])
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    k = min(k, n)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    flat = x.reshape(n, -1)
    sq_norms = np.einsum("ij,ij->i", flat, flat, dtype=np.float64)
    mean = flat.mean(axis=0, dtype=np.float64)
    first = int(np.argmin(sq_norms - 2.0 * (flat @ mean.astype(flat.dtype)) + mean @ mean))
    chosen = [first]
    taken = np.zeros(n, dtype=bool)
    taken[first] = True
    subset_sum = flat[first].astype(np.float64)
    while len(chosen) < k:
        m = subset_sum / len(chosen)
        dist = sq_norms - 2.0 * (flat @ m.astype(flat.dtype)) + m @ m
        dist[taken] = -np.inf
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        taken[nxt] = True
        subset_sum += flat[nxt]
    return np.asarray(chosen, dtype=np.int64)
