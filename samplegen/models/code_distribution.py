"""A Gaussian fitted to a trained model's codes of its training notes, stored with the model.

Why: an 8-latent VAE trained with a small KL weight does not put its codes where its N(0, I) prior
is. On the quick preset's model the training codes' means sit up to 0.5 away from 0 with standard
deviations near 1.5, and on the waveform path's model (KL weight 10) near 2. Sounds drawn from
N(0, I) then land between the notes the decoder knows: too quiet, and on the waveform path far too
bright (benchmarks/RESULTS.md, "Random sounds from the training codes"). Sampling a full-covariance
Gaussian fitted to the encoder's means of the training notes ("ex-post density estimation", Ghosh
et al. 2020) keeps random sounds near the data while they stay as varied as real notes.

Stored in the model's config.json under `extra.code_distribution` (plain JSON: no pickle).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from samplegen.errors import SamplegenError

CODE_DISTRIBUTION_KEY = "code_distribution"
# A full covariance is D x D numbers in config.json; beyond this many latents it is not stored.
MAX_FITTED_DIM = 256
# Relative ridge added to the covariance so that a dimension with no spread still factorises.
_RIDGE = 1e-6


class CodeDistributionError(SamplegenError, ValueError):
    """Codes that cannot be fitted, or a stored distribution that does not fit the model."""


@dataclass(frozen=True)
class CodeDistribution:
    """mean (D,), cov (D, D): a Gaussian over flat latent codes; count: how many codes were fitted;
    source: where they came from, in words."""

    mean: np.ndarray
    cov: np.ndarray
    count: int
    source: str

    @property
    def dim(self) -> int:
        """Latent dimensions."""
        return int(self.mean.shape[0])

    @property
    def std(self) -> np.ndarray:
        """Per-dimension standard deviation (D,)."""
        return np.sqrt(np.clip(np.diag(self.cov), 0.0, None))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form kept in a model's config.json."""
        return {
            "mean": [float(v) for v in self.mean],
            "cov": [[float(v) for v in row] for row in self.cov],
            "count": int(self.count),
            "source": self.source,
        }

    def sample(self, n: int, temperature: float, rng: np.random.Generator) -> np.ndarray:
        """`n` codes (n, D) float32: mean + temperature * L w, with L L^T = cov and w ~ N(0, I)."""
        w = rng.standard_normal((int(n), self.dim))
        z = self.mean[None, :] + float(temperature) * (w @ _factor(self.cov).T)
        return z.astype(np.float32)


def _factor(cov: np.ndarray) -> np.ndarray:
    """A square root of a symmetric positive semi-definite matrix (eigen-decomposition: it also
    holds for the singular covariance of fewer codes than dimensions, where Cholesky fails)."""
    vals, vecs = np.linalg.eigh(0.5 * (cov + cov.T))
    return vecs * np.sqrt(np.clip(vals, 0.0, None))[None, :]


def fit_codes(codes: np.ndarray, source: str) -> CodeDistribution:
    """The mean and covariance of codes (N, ...) flattened to (N, D); at least 2 finite codes."""
    z = np.asarray(codes, dtype=np.float64).reshape(len(codes), -1)
    if z.shape[0] < 2:
        raise CodeDistributionError(f"fitting codes needs at least 2 notes, got {z.shape[0]}")
    if not np.isfinite(z).all():
        raise CodeDistributionError("fitting codes: some codes are not finite (NaN or inf)")
    cov = np.atleast_2d(np.cov(z, rowvar=False))
    cov = cov + _RIDGE * max(float(np.trace(cov)) / cov.shape[0], 1e-12) * np.eye(cov.shape[0])
    return CodeDistribution(z.mean(axis=0), cov, int(z.shape[0]), source)


@torch.no_grad()
def encoder_means(
    encode: Callable[[torch.Tensor], torch.Tensor],
    x: np.ndarray,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 64,
) -> np.ndarray:
    """Codes (N, D) of inputs `x` (N, ...) from `encode` (an encoder's mean: no refinement, so a
    thousand notes take seconds), batch by batch on `device`."""
    out = []
    for i in range(0, len(x), batch_size):
        xb = torch.as_tensor(np.ascontiguousarray(x[i : i + batch_size])).to(device)
        z = encode(xb)
        out.append(z.reshape(z.shape[0], -1).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def fit_model_codes(
    model: Any, x: np.ndarray, source: str, *, device: str | torch.device = "cpu"
) -> CodeDistribution | None:
    """The distribution of `model.encode_amortized` over inputs `x`; None when the model has no
    amortised encoder, a discrete latent (a Gaussian between codebook entries means nothing) or
    more than MAX_FITTED_DIM latents."""
    encode = getattr(model, "encode_amortized", None)
    dim = math.prod(int(s) for s in getattr(model, "latent_shape", (MAX_FITTED_DIM + 1,)))
    discrete = getattr(getattr(model, "inner", model), "discrete_latent", False)
    if not callable(encode) or discrete or dim > MAX_FITTED_DIM:
        return None
    was_training = model.training
    model.eval()
    try:
        codes = encoder_means(encode, x, device=device)
    finally:
        model.train(was_training)
    return fit_codes(codes, source)


def stored_distribution(extra: Mapping[str, Any] | None, dim: int) -> CodeDistribution | None:
    """The distribution kept in a model's `extra`, or None when it has none.

    Raises CodeDistributionError when one is stored but does not fit a `dim`-latent model (a
    config.json edited by hand, or copied from another model): sampling it would be wrong.
    """
    data = (extra or {}).get(CODE_DISTRIBUTION_KEY)
    if data is None:
        return None
    try:
        mean = np.asarray(data["mean"], dtype=np.float64).reshape(-1)
        cov = np.asarray(data["cov"], dtype=np.float64)
        count, source = int(data.get("count", 0)), str(data.get("source", ""))
    except (KeyError, TypeError, ValueError) as exc:
        raise CodeDistributionError(
            f"{CODE_DISTRIBUTION_KEY}: needs 'mean' and 'cov' lists of numbers ({exc})"
        ) from exc
    if mean.shape != (dim,) or cov.shape != (dim, dim):
        raise CodeDistributionError(
            f"{CODE_DISTRIBUTION_KEY}: mean {mean.shape} and cov {cov.shape} do not fit a model "
            f"with {dim} latents"
        )
    if not (np.isfinite(mean).all() and np.isfinite(cov).all()):
        raise CodeDistributionError(f"{CODE_DISTRIBUTION_KEY}: holds values that are not finite")
    return CodeDistribution(mean, cov, count, source)
