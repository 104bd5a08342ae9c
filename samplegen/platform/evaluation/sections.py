"""The per-split sections of metrics.json that need only losses, names and latents."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from samplegen.dsp.metrics import rms_percent
from samplegen.models.base import ACTIVE_UNIT_THRESHOLD, LatentStats
from samplegen.platform.evaluation.jsonsafe import NullReasons

LOSS_UNITS = "per-sample sum of squared errors in the encoded (mu-law) domain of the outer model"
# Per-dimension lists longer than this are summarised (an outer latent can have thousands of values).
MAX_LISTED_DIMS = 512


def loss_section(losses: np.ndarray, values_per_sample: int) -> dict[str, Any]:
    """The original's loss over a split: mean/median/min/max/std and RMS% of the mean."""
    a = np.asarray(losses, dtype=np.float64)
    out: dict[str, Any] = {
        "units": LOSS_UNITS,
        "values_per_sample": int(values_per_sample),
        "count": int(a.size),
    }
    if a.size == 0:
        return out | dict.fromkeys(("mean", "median", "min", "max", "std", "rms_percent"))
    mean = float(a.mean())
    return out | {
        "mean": mean,
        "median": float(np.median(a)),
        "min": float(a.min()),
        "max": float(a.max()),
        "std": float(a.std()),
        "rms_percent": float(rms_percent(mean, values_per_sample)),
    }


# Draws of the split's groups for the RMS% interval: enough that its ends move by under 0.01
# point between seeds on a test split of about ten instruments.
INTERVAL_RESAMPLES = 4000
INTERVAL_LEVEL = 0.95


def group_interval(
    losses: np.ndarray,
    groups: Sequence[str],
    values_per_sample: int,
    *,
    seed: int = 0,
    resamples: int = INTERVAL_RESAMPLES,
    level: float = INTERVAL_LEVEL,
) -> dict[str, Any] | None:
    """A bootstrap interval of the split's RMS% over its groups (instruments), or None under two.

    A split drawn by instrument is a sample of instruments, and its notes are not independent: the
    figure of a test split of ten instruments moves with which ten they are. So whole groups are
    drawn with replacement, each draw's RMS% is that of its pooled notes (as the point figure),
    and the interval is the middle `level` of the draws (percentile bootstrap).
    """
    a = np.asarray(losses, dtype=np.float64)
    keys = np.asarray([str(g) for g in groups], dtype=object)
    if keys.shape[0] != a.shape[0]:
        raise ValueError(f"group_interval: {keys.shape[0]} groups for {a.shape[0]} losses")
    names, index = np.unique(keys, return_inverse=True)
    if names.size < 2:
        return None
    sums = np.bincount(index, weights=a, minlength=names.size)
    counts = np.bincount(index, minlength=names.size).astype(np.float64)
    rng = np.random.default_rng(seed)
    drawn = rng.multinomial(names.size, np.full(names.size, 1.0 / names.size), size=resamples)
    rms = 100.0 * np.sqrt((drawn @ sums) / (drawn @ counts) / values_per_sample)
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(rms, [tail, 100.0 - tail])
    return {
        "level": level,
        "groups": int(names.size),
        "resamples": int(resamples),
        "seed": int(seed),
        "low": float(low),
        "high": float(high),
    }


def per_category(
    losses: np.ndarray, categories: Sequence[str], values_per_sample: int
) -> dict[str, dict[str, Any]]:
    """Count, mean loss and RMS% per category, largest mean loss first."""
    a = np.asarray(losses, dtype=np.float64)
    cats = np.asarray([str(c) for c in categories], dtype=object)
    if cats.shape[0] != a.shape[0]:
        raise ValueError(f"per_category: {cats.shape[0]} categories for {a.shape[0]} losses")
    rows = []
    for cat in sorted(set(cats.tolist())):
        sel = a[cats == cat]
        mean = float(sel.mean())
        rows.append(
            (
                cat,
                {
                    "count": int(sel.size),
                    "mean_loss": mean,
                    "rms_percent": float(rms_percent(mean, values_per_sample)),
                },
            )
        )
    rows.sort(key=lambda r: (-r[1]["mean_loss"], r[0]))
    return dict(rows)


def worst_samples(
    losses: np.ndarray,
    names: Sequence[str],
    categories: Sequence[str],
    values_per_sample: int,
    n: int = 10,
) -> list[dict[str, Any]]:
    """The `n` samples with the largest loss, largest first (ties by name)."""
    a = np.asarray(losses, dtype=np.float64)
    order = sorted(range(a.size), key=lambda i: (-a[i], str(names[i])))[:n]
    return [
        {
            "name": str(names[i]),
            "category": str(categories[i]),
            "loss": float(a[i]),
            "rms_percent": float(rms_percent(float(a[i]), values_per_sample)),
        }
        for i in order
    ]


def _per_dim(values: np.ndarray, path: str, nulls: NullReasons) -> list[float] | None:
    if values.size <= MAX_LISTED_DIMS:
        return [float(v) for v in values]
    nulls.add(path, f"{values.size} dimensions: more than {MAX_LISTED_DIMS}, see the summary")
    return None


def _spread(values: np.ndarray) -> dict[str, float]:
    return {
        "min": float(values.min()),
        "median": float(np.median(values)),
        "max": float(values.max()),
    }


def latent_section(
    latent: np.ndarray,
    latent_shape: Sequence[int],
    nulls: NullReasons,
    stats: LatentStats | None = None,
    path: str = "latent",
) -> dict[str, Any]:
    """Mean and std per latent dimension, KL per dimension and active units.

    `latent` is (N, dims): the codes the decoder receives (VAE: posterior means). `stats` is the
    model's own `latent_stats` when it has one (inner models); otherwise the figures are computed
    here with the same definitions (population std; active when the variance across samples
    exceeds ACTIVE_UNIT_THRESHOLD, after Burda et al. 2016).
    """
    z = np.asarray(latent, dtype=np.float64).reshape(latent.shape[0], -1)
    dims = int(z.shape[1])
    out: dict[str, Any] = {
        "shape": [int(d) for d in latent_shape],
        "dims": dims,
        "count": int(z.shape[0]),
        "active_unit_threshold": ACTIVE_UNIT_THRESHOLD,
    }
    if z.shape[0] == 0 or dims == 0:
        for key in ("mean", "std", "active_units", "kl_per_dim", "kl_total"):
            out[key] = None
            nulls.add(f"{path}.{key}", "no samples or no latent dimensions")
        return out
    if stats is not None:
        mean = stats.mean.detach().cpu().double().numpy().reshape(-1)
        std = stats.std.detach().cpu().double().numpy().reshape(-1)
        active = int(stats.active_units)
        kl = stats.kl_per_dim
    else:
        mean, std = z.mean(axis=0), z.std(axis=0)
        active = int((z.var(axis=0) > ACTIVE_UNIT_THRESHOLD).sum())
        kl = None
    out["mean"] = _per_dim(mean, f"{path}.mean", nulls)
    out["std"] = _per_dim(std, f"{path}.std", nulls)
    out["summary"] = {"mean": _spread(mean), "std": _spread(std)}
    out["active_units"] = active
    if kl is None:
        out["kl_per_dim"] = None
        out["kl_total"] = None
        reason = "not a variational model"
        nulls.add(f"{path}.kl_per_dim", reason)
        nulls.add(f"{path}.kl_total", reason)
    else:
        kl_np = kl.detach().cpu().double().numpy().reshape(-1)
        out["kl_per_dim"] = _per_dim(kl_np, f"{path}.kl_per_dim", nulls)
        out["kl_total"] = float(kl_np.sum())
    if stats is not None and stats.extra:
        out["extra"] = {str(k): float(v) for k, v in stats.extra.items()}
    return out


def inner_latent_stats(inner: Any, outer_latent: np.ndarray, device: str | torch.device) -> Any:
    """The inner model's own `latent_stats` on the outer encodings (N, D) of a split."""
    with torch.no_grad():
        return inner.latent_stats(torch.from_numpy(np.ascontiguousarray(outer_latent)).to(device))


def overfit_section(
    eval_mean: float | None,
    train_mean: float | None,
    split: str,
    nulls: NullReasons,
    path: str = "overfit",
    train_missing: str = "the dataset has no train samples",
) -> dict[str, Any]:
    """This split's mean loss divided by the train split's (the original's 'overfit')."""
    out: dict[str, Any] = {
        "split": split,
        "split_mean_loss": eval_mean,
        "train_mean_loss": train_mean,
        "ratio": None,
    }
    if train_mean is None:
        nulls.add(f"{path}.train_mean_loss", train_missing)
        nulls.add(f"{path}.ratio", train_missing)
    elif split == "train":
        nulls.add(f"{path}.ratio", "the evaluated split is the train split")
    elif eval_mean is None or train_mean <= 0:
        nulls.add(f"{path}.ratio", "the train mean loss is zero or the split is empty")
    else:
        out["ratio"] = float(eval_mean / train_mean)
    return out
