"""The linear reference: PCA of encodings, so a learned latent space can be compared with a linear fit.

A PCA with k components is the best rank-k linear auto-encoder of its training data (in squared
error), so a VAE with k latent variables that does not beat it on held-out data has learned nothing a
linear projection would not give. Losses use the project's units: per-sample sum of squared errors,
RMS% = 100 * sqrt(mean loss / values per sample).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from samplegen.dsp.metrics import rms_percent, sample_loss

# Rows are projected in chunks so a large evaluation split never holds two float64 copies at once.
_CHUNK = 256

Decoder = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class PcaFit:
    """A centred PCA: `mean` (D,), `components` (k, D) orthonormal rows, `singular_values` (k,)."""

    mean: np.ndarray
    components: np.ndarray
    singular_values: np.ndarray
    explained_variance_ratio: float
    n_train: int

    @property
    def n_components(self) -> int:
        """Number of components kept."""
        return int(self.components.shape[0])

    def project(self, x: np.ndarray) -> np.ndarray:
        """Reconstruct each row of `x` (N, D) from its first k principal coordinates (float64)."""
        flat = _flatten(x, self.mean.shape[0])
        out = np.empty(flat.shape, dtype=np.float64)
        for start in range(0, flat.shape[0], _CHUNK):
            centred = flat[start : start + _CHUNK].astype(np.float64) - self.mean
            coords = centred @ self.components.T
            out[start : start + _CHUNK] = coords @ self.components + self.mean
        return out


def _flatten(x: np.ndarray, dims: int | None = None) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim < 2:
        raise ValueError(f"pca: expected a batch (N, ...) of samples, got shape {a.shape}")
    flat = a.reshape(a.shape[0], -1)
    if dims is not None and flat.shape[1] != dims:
        raise ValueError(
            f"pca: samples have {flat.shape[1]} values, the fit was made on {dims} values"
        )
    return flat


def fit_pca(train_x: np.ndarray, n_components: int) -> PcaFit:
    """Fit a centred PCA (numpy SVD, float64) to the flattened rows of `train_x` (N, ...).

    At most ``min(N - 1, D)`` components carry variance; asking for more keeps only those.
    """
    if n_components < 1:
        raise ValueError(f"pca: n_components must be >= 1, got {n_components}")
    flat = _flatten(train_x)
    if flat.shape[0] < 2:
        raise ValueError(f"pca: need at least 2 training samples, got {flat.shape[0]}")
    data = flat.astype(np.float64)
    mean = data.mean(axis=0)
    data -= mean
    _, s, vt = np.linalg.svd(data, full_matrices=False)
    k = min(n_components, flat.shape[0] - 1, flat.shape[1])
    total = float(np.sum(s**2))
    ratio = float(np.sum(s[:k] ** 2) / total) if total > 0 else 1.0
    return PcaFit(
        mean=mean,
        components=vt[:k].copy(),
        singular_values=s[:k].copy(),
        explained_variance_ratio=ratio,
        n_train=int(flat.shape[0]),
    )


def loss_summary(losses: np.ndarray, values_per_sample: int) -> dict[str, Any]:
    """Mean/median/min/max of per-sample losses and the RMS% of the mean, as plain floats."""
    a = np.asarray(losses, dtype=np.float64)
    if a.size == 0:
        return {"count": 0, "mean_loss": None, "median_loss": None, "min_loss": None,
                "max_loss": None, "rms_percent": None}  # fmt: skip
    mean = float(a.mean())
    return {
        "count": int(a.size),
        "mean_loss": mean,
        "median_loss": float(np.median(a)),
        "min_loss": float(a.min()),
        "max_loss": float(a.max()),
        "rms_percent": float(rms_percent(mean, values_per_sample)),
    }


def _sse(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    n = target.shape[0]
    p = np.asarray(pred, dtype=np.float64).reshape(n, -1)
    return np.atleast_1d(sample_loss(p, np.asarray(target, dtype=np.float64).reshape(n, -1)))


def projection_losses(fit: PcaFit, x: np.ndarray) -> np.ndarray:
    """Per-sample sum of squared errors of reconstructing `x` from the PCA (float64, (N,))."""
    flat = _flatten(x, fit.mean.shape[0])
    return _sse(fit.project(flat), flat)


def pca_reference(train_x: np.ndarray, eval_x: np.ndarray, n_components: int) -> dict[str, Any]:
    """Loss and RMS% of projecting train and eval samples onto a PCA fitted on the train samples.

    Everything is measured in the domain of the inputs (the encoded domain): `train_x` and `eval_x`
    are (N, ...) arrays, flattened per sample. Returns ``n_components`` (asked), ``n_components_used``
    (at most N_train - 1), ``explained_variance_ratio`` (of the training data), ``values_per_sample``
    and ``train`` / ``eval`` loss summaries (count, mean/median/min/max loss, rms_percent).
    """
    fit = fit_pca(train_x, n_components)
    dims = int(fit.mean.shape[0])
    return {
        "n_components": int(n_components),
        "n_components_used": fit.n_components,
        "explained_variance_ratio": fit.explained_variance_ratio,
        "values_per_sample": dims,
        "train": loss_summary(projection_losses(fit, train_x), dims),
        "eval": loss_summary(projection_losses(fit, eval_x), dims),
    }


def decoded_losses(
    fit: PcaFit,
    z: np.ndarray,
    target: np.ndarray,
    decode: Decoder,
    batch_size: int = 32,
) -> np.ndarray:
    """Per-sample SSE between `decode(PCA projection of z)` and `target`, in `target`'s units.

    `z` (N, ...) are encodings in the shape `decode` expects; `decode` maps a batch of them to a
    batch shaped like `target`'s rows (e.g. a frozen outer model's decoder).
    """
    zs = np.asarray(z)
    if zs.shape[0] != np.asarray(target).shape[0]:
        raise ValueError(f"pca: {zs.shape[0]} encodings for {np.asarray(target).shape[0]} targets")
    losses = np.empty(zs.shape[0], dtype=np.float64)
    for start in range(0, zs.shape[0], batch_size):
        chunk = zs[start : start + batch_size]
        projected = fit.project(chunk).reshape(chunk.shape).astype(np.float32)
        pred = np.asarray(decode(projected))
        losses[start : start + batch_size] = _sse(
            pred, np.asarray(target[start : start + batch_size])
        )
    return losses


def pca_reference_decoded(
    train_z: np.ndarray,
    eval_z: np.ndarray,
    train_target: np.ndarray,
    eval_target: np.ndarray,
    n_components: int,
    decode: Decoder,
    batch_size: int = 32,
) -> dict[str, Any]:
    """The PCA reference measured end to end through a frozen decoder.

    Fits a PCA on `train_z` (the outer model's encodings of the training split), projects train and
    eval encodings onto it, decodes them with `decode` (the frozen outer decoder) and compares with
    the targets (the original inputs of the outer model), so the figures are in the outer
    representation's units, like a combined model's end-to-end loss. The result has the keys of
    `pca_reference` for the encoded domain under ``encoded`` and the end-to-end summaries under
    ``end_to_end`` (``train``, ``eval``, ``values_per_sample``).
    """
    fit = fit_pca(train_z, n_components)
    dims = int(fit.mean.shape[0])
    target_dims = int(np.prod(np.asarray(train_target).shape[1:]))
    return {
        "n_components": int(n_components),
        "n_components_used": fit.n_components,
        "explained_variance_ratio": fit.explained_variance_ratio,
        "encoded": {
            "values_per_sample": dims,
            "train": loss_summary(projection_losses(fit, train_z), dims),
            "eval": loss_summary(projection_losses(fit, eval_z), dims),
        },
        "end_to_end": {
            "values_per_sample": target_dims,
            "train": loss_summary(
                decoded_losses(fit, train_z, train_target, decode, batch_size), target_dims
            ),
            "eval": loss_summary(
                decoded_losses(fit, eval_z, eval_target, decode, batch_size), target_dims
            ),
        },
    }
