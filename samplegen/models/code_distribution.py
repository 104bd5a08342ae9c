"""A Gaussian mixture fitted to a trained model's codes of its training notes, stored with the model.

Why: an 8-latent VAE trained with a small KL weight does not put its codes where its N(0, I) prior
is. On the quick preset's model the training codes' means sit up to 0.5 away from 0 with standard
deviations near 1.5, and on the waveform path's model (KL weight 10) near 2. Sounds drawn from
N(0, I) then land between the notes the decoder knows: too quiet, and on the waveform path far too
bright. Sampling a density fitted to the encoder's means of the training notes ("ex-post density
estimation", Ghosh et al. 2020) keeps random sounds near the data while they stay as varied as
real notes. One full-covariance Gaussian already helps; a mixture of a few follows the families of
instruments and brings the level and brightness of random sounds to those of decoded training
notes (benchmarks/RESULTS.md, "Random sounds from the training codes").

Stored in the model's config.json under `extra.code_distribution` (plain JSON: no pickle).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from samplegen.errors import SamplegenError

if TYPE_CHECKING:
    import torch

CODE_DISTRIBUTION_KEY = "code_distribution"
# A full covariance is D x D numbers in config.json; beyond this many latents it is not stored.
MAX_FITTED_DIM = 256
# At most this many mixture components, and at least this many codes per latent per component:
# a full covariance in D dimensions has D (D + 3) / 2 numbers to estimate.
COMPONENTS = 8
_CODES_PER_DIM = 5
# Ridge added to every covariance, relative to the codes' mean variance: it keeps a component
# with too few or collinear codes factorisable.
_RIDGE = 1e-3
_EM_ITERATIONS = 300
_EM_TOLERANCE = 1e-7


class CodeDistributionError(SamplegenError, ValueError):
    """Codes that cannot be fitted, or a stored distribution that does not fit the model."""


@dataclass(frozen=True)
class CodeDistribution:
    """A Gaussian mixture over flat latent codes: weights (K,), means (K, D), covs (K, D, D);
    count: how many codes were fitted; source: where they came from, in words."""

    weights: np.ndarray
    means: np.ndarray
    covs: np.ndarray
    count: int
    source: str

    @property
    def dim(self) -> int:
        """Latent dimensions."""
        return int(self.means.shape[1])

    @property
    def components(self) -> int:
        """Mixture components."""
        return int(self.weights.shape[0])

    @property
    def mean(self) -> np.ndarray:
        """The mixture's mean (D,)."""
        return self.weights @ self.means

    @property
    def cov(self) -> np.ndarray:
        """The mixture's covariance (D, D): within-component spread plus the spread of the means."""
        centred = self.means - self.mean[None, :]
        between = (self.weights[:, None] * centred).T @ centred
        return np.einsum("k,kij->ij", self.weights, self.covs) + between

    @property
    def std(self) -> np.ndarray:
        """Per-dimension standard deviation of the mixture (D,)."""
        return np.sqrt(np.clip(np.diag(self.cov), 0.0, None))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form kept in a model's config.json (the mixture's mean and covariance too, for
        readers that want one Gaussian)."""
        return {
            "weights": self.weights.tolist(),
            "means": self.means.tolist(),
            "covs": self.covs.tolist(),
            "mean": self.mean.tolist(),
            "cov": self.cov.tolist(),
            "count": int(self.count),
            "source": self.source,
        }

    def sample(self, n: int, temperature: float, rng: np.random.Generator) -> np.ndarray:
        """`n` codes (n, D) float32: a component k drawn by weight, then means[k] + temperature *
        L_k w with L_k L_k^T = covs[k] and w ~ N(0, I). Temperature scales the spread within each
        component: at 0 every code is a component's centre."""
        which = rng.choice(self.components, size=int(n), p=self.weights / self.weights.sum())
        w = rng.standard_normal((int(n), self.dim))
        z = self.means[which].copy()
        for k in range(self.components):
            rows = which == k
            if rows.any():
                z[rows] += float(temperature) * (w[rows] @ _factor(self.covs[k]).T)
        return z.astype(np.float32)


def _factor(cov: np.ndarray) -> np.ndarray:
    """A square root of a symmetric positive semi-definite matrix (eigen-decomposition: it also
    holds for a singular covariance, where Cholesky fails)."""
    vals, vecs = np.linalg.eigh(0.5 * (cov + cov.T))
    return vecs * np.sqrt(np.clip(vals, 0.0, None))[None, :]


def _log_densities(z: np.ndarray, fit: CodeDistribution) -> np.ndarray:
    """log(weight_k N(z_i | mean_k, cov_k)) for every code and component (N, K)."""
    n, d = z.shape
    out = np.empty((n, fit.components))
    for k in range(fit.components):
        chol = np.linalg.cholesky(fit.covs[k])
        sol = np.linalg.solve(chol, (z - fit.means[k]).T)
        logdet = 2.0 * np.log(np.diag(chol)).sum()
        out[:, k] = -0.5 * ((sol**2).sum(0) + logdet + d * math.log(2 * math.pi))
    return out + np.log(np.maximum(fit.weights, 1e-300))[None, :]


def _log_normaliser(logp: np.ndarray) -> np.ndarray:
    """log sum_k exp(logp[:, k]) of every row, without overflow: each code's log-density (N,)."""
    top = logp.max(1, keepdims=True)
    return top[:, 0] + np.log(np.exp(logp - top).sum(1))


def _m_step(
    z: np.ndarray, resp: np.ndarray, ridge: float, count: int, source: str
) -> CodeDistribution:
    """Weights, means and covariances from responsibilities (N, K)."""
    nk = resp.sum(0) + 1e-12
    means = (resp.T @ z) / nk[:, None]
    covs = np.empty((resp.shape[1], z.shape[1], z.shape[1]))
    for k in range(resp.shape[1]):
        c = z - means[k]
        covs[k] = (resp[:, k, None] * c).T @ c / nk[k] + ridge * np.eye(z.shape[1])
    return CodeDistribution(nk / nk.sum(), means, covs, count, source)


def _initial_responsibilities(z: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Hard assignments to k centres chosen k-means++ style (far-apart codes are likelier)."""
    centres = [z[rng.integers(len(z))]]
    for _ in range(1, k):
        d2 = np.min([((z - c) ** 2).sum(1) for c in centres], axis=0)
        total = d2.sum()
        pick = rng.integers(len(z)) if total <= 0 else rng.choice(len(z), p=d2 / total)
        centres.append(z[pick])
    dist = np.stack([((z - c) ** 2).sum(1) for c in centres], axis=1)
    resp = np.zeros((len(z), k))
    resp[np.arange(len(z)), dist.argmin(1)] = 1.0
    return resp


def fit_codes(
    codes: np.ndarray, source: str, *, components: int = COMPONENTS, seed: int = 0
) -> CodeDistribution:
    """A Gaussian mixture fitted by expectation-maximisation to codes (N, ...) flattened to (N, D).

    Uses at most `components` components and at most one per `_CODES_PER_DIM * D` codes (so a
    few codes get a single Gaussian: their mean and covariance). Needs at least 2 finite codes.
    Deterministic for a given `seed`.
    """
    z = np.asarray(codes, dtype=np.float64).reshape(len(codes), -1)
    if z.shape[0] < 2:
        raise CodeDistributionError(f"fitting codes needs at least 2 notes, got {z.shape[0]}")
    if not np.isfinite(z).all():
        raise CodeDistributionError("fitting codes: some codes are not finite (NaN or inf)")
    if components < 1:
        raise CodeDistributionError(f"fitting codes: components must be >= 1, got {components}")
    n, d = z.shape
    ridge = _RIDGE * max(float(z.var(axis=0).mean()), 1e-12)
    k = max(1, min(int(components), n // (_CODES_PER_DIM * d)))
    fit = _m_step(z, np.ones((n, 1)), ridge, n, source)
    if k == 1:
        return fit
    fit = _m_step(z, _initial_responsibilities(z, k, np.random.default_rng(seed)), ridge, n, source)
    previous = -math.inf
    for _ in range(_EM_ITERATIONS):
        logp = _log_densities(z, fit)
        norm = _log_normaliser(logp)
        mean_ll = float(norm.mean())
        fit = _m_step(z, np.exp(logp - norm[:, None]), ridge, n, source)
        if mean_ll - previous < _EM_TOLERANCE:
            break
        previous = mean_ll
    return fit


def log_likelihood(codes: np.ndarray, fit: CodeDistribution) -> float:
    """Mean log-density of codes (N, D) under the mixture (nats per code)."""
    z = np.asarray(codes, dtype=np.float64).reshape(len(codes), -1)
    return float(_log_normaliser(_log_densities(z, fit)).mean())


def encoder_means(
    encode: Callable[[torch.Tensor], torch.Tensor],
    x: np.ndarray,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 64,
) -> np.ndarray:
    """Codes (N, D) of inputs `x` (N, ...) from `encode` (an encoder's mean: no refinement, so a
    thousand notes take seconds), batch by batch on `device`."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = torch.as_tensor(np.ascontiguousarray(x[i : i + batch_size])).to(device)
            z = encode(xb)
            out.append(z.reshape(z.shape[0], -1).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def fit_model_codes(
    model: Any,
    x: np.ndarray,
    source: str,
    *,
    device: str | torch.device = "cpu",
    components: int = COMPONENTS,
) -> CodeDistribution | None:
    """The distribution of `model.encode_amortized` over inputs `x`; None when the model has a
    discrete latent (a Gaussian between codebook entries means nothing) or more than
    MAX_FITTED_DIM latents."""
    discrete = getattr(getattr(model, "inner", model), "discrete_latent", False)
    if discrete or math.prod(model.latent_shape) > MAX_FITTED_DIM:
        return None
    was_training = model.training
    model.eval()
    try:
        codes = encoder_means(model.encode_amortized, x, device=device)
    finally:
        model.train(was_training)
    return fit_codes(codes, source, components=components)


def fitted_extra(model: Any, x: np.ndarray, source: str) -> dict[str, Any]:
    """`{CODE_DISTRIBUTION_KEY: ...}` for a model's `extra`, fitted on inputs `x` (the training
    notes), or {} when there is nothing to fit (fewer than 2 notes, or see `fit_model_codes`)."""
    fitted = fit_model_codes(model, x, source) if len(x) >= 2 else None
    return {} if fitted is None else {CODE_DISTRIBUTION_KEY: fitted.to_dict()}


def stored_distribution(extra: Mapping[str, Any] | None, dim: int) -> CodeDistribution | None:
    """The distribution kept in a model's `extra`, or None when it has none.

    Raises CodeDistributionError when one is stored but does not fit a `dim`-latent model (a
    config.json edited by hand, or copied from another model): sampling it would be wrong. A single
    Gaussian stored as `mean` and `cov` alone reads as a one-component mixture.
    """
    data = (extra or {}).get(CODE_DISTRIBUTION_KEY)
    if data is None:
        return None
    try:
        if "means" in data:
            weights = np.asarray(data["weights"], dtype=np.float64).reshape(-1)
            means = np.asarray(data["means"], dtype=np.float64)
            covs = np.asarray(data["covs"], dtype=np.float64)
        else:
            weights = np.ones(1)
            means = np.asarray(data["mean"], dtype=np.float64).reshape(1, -1)
            covs = np.asarray(data["cov"], dtype=np.float64)[None]
        count, source = int(data.get("count", 0)), str(data.get("source", ""))
    except (KeyError, TypeError, ValueError) as exc:
        raise CodeDistributionError(
            f"{CODE_DISTRIBUTION_KEY}: needs 'weights', 'means' and 'covs' (or 'mean' and 'cov') "
            f"lists of numbers ({exc})"
        ) from exc
    k = weights.shape[0]
    if means.shape != (k, dim) or covs.shape != (k, dim, dim):
        raise CodeDistributionError(
            f"{CODE_DISTRIBUTION_KEY}: means {means.shape} and covs {covs.shape} do not fit a "
            f"model with {dim} latents and {k} component(s)"
        )
    if not (np.isfinite(weights).all() and np.isfinite(means).all() and np.isfinite(covs).all()):
        raise CodeDistributionError(f"{CODE_DISTRIBUTION_KEY}: holds values that are not finite")
    if (weights < 0).any() or weights.sum() <= 0:
        raise CodeDistributionError(f"{CODE_DISTRIBUTION_KEY}: weights must be >= 0, not all 0")
    return CodeDistribution(weights / weights.sum(), means, covs, count, source)
