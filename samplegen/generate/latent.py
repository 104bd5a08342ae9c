"""A flat view of any trained model's latent space: encode to vectors, decode from vectors, sample.

Generation works on flat float32 vectors `(D,)` whatever the model: the combined model's inner latent,
an inner model's latent, or a plain outer auto-encoder's code flattened. `LatentSpace` hides the
difference (reshape, batching, device, variational or not).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from samplegen.errors import SamplegenError
from samplegen.models.base import SampleModel
from samplegen.models.code_distribution import (
    CodeDistribution,
    CodeDistributionError,
    stored_distribution,
)


class GenerationError(SamplegenError, ValueError):
    """A generation request the model or the settings cannot satisfy; the message says why."""


@dataclass(frozen=True)
class LatentStats:
    """Per-dimension mean and standard deviation of the latent distribution, and where they came from.

    `samples` holds the reference latents `(N, D)` when the statistics are empirical, so random
    sounds can follow their covariance instead of treating dimensions as independent.
    """

    mean: np.ndarray
    std: np.ndarray
    source: str
    samples: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (without the reference samples)."""
        return {
            "source": self.source,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "count": None if self.samples is None else int(self.samples.shape[0]),
        }


def _prod(shape: tuple[int, ...]) -> int:
    return int(math.prod(int(s) for s in shape))


class LatentSpace:
    """Encode/decode/sample any `SampleModel` through flat latent vectors (numpy in, numpy out)."""

    def __init__(
        self,
        model: SampleModel,
        codec: Any,
        meta: Any = None,
        *,
        device: str | torch.device = "cpu",
        batch_size: int = 16,
    ) -> None:
        self.model = model.to(device).eval()
        self.codec = codec
        self.meta = _meta_dict(meta)
        self.device = torch.device(device)
        self.batch_size = max(1, int(batch_size))
        self.input_shape = tuple(int(s) for s in model.input_shape)
        self.latent_shape = tuple(int(s) for s in model.latent_shape)
        self.dim = _prod(self.latent_shape)
        self._has_prior: bool | None = None
        self._variational: bool | None = None
        self._fitted: tuple[CodeDistribution | None] | None = None

    @classmethod
    def from_loaded(cls, loaded: Any, *, device: str | torch.device = "cpu") -> LatentSpace:
        """Wrap a `LoadedModel(model, codec, meta)` from `samplegen.models.artifact.load_model`."""
        return cls(loaded.model, loaded.codec, getattr(loaded, "meta", None), device=device)

    # --- properties -------------------------------------------------------------------------
    @property
    def has_prior(self) -> bool:
        """True when the model can sample its own prior (VAE, bounded AE, VQ-VAE, combined)."""
        if self._has_prior is None:
            fn = self._prior_fn()
            ok = fn is not None
            if ok:
                try:
                    with torch.no_grad():
                        fn(
                            1,
                            temperature=1.0,
                            generator=torch.Generator(device="cpu").manual_seed(0),
                        )
                except NotImplementedError:
                    ok = False
            self._has_prior = ok
        return self._has_prior

    def _prior_fn(self) -> Any:
        """The model's `sample_prior`, or its inner model's (the combined model keeps it there)."""
        for owner in (self.model, getattr(self.model, "inner", None)):
            fn = getattr(owner, "sample_prior", None)
            if callable(fn):
                return fn
        return None

    @property
    def fitted(self) -> CodeDistribution | None:
        """The Gaussian mixture of the training notes' codes stored with the model, or None
        (samplegen.models.code_distribution); GenerationError when the stored one does not fit."""
        if self._fitted is None:
            try:
                self._fitted = (stored_distribution(self.meta.get("extra"), self.dim),)
            except CodeDistributionError as exc:
                raise GenerationError(f"model {self.meta.get('directory', '')}: {exc}") from exc
        return self._fitted[0]

    @property
    def is_variational(self) -> bool:
        """True when `forward` gives a posterior (mu, logvar): a Gaussian VAE with prior N(0, I)."""
        if self._variational is None:
            with torch.no_grad():
                x = torch.zeros((1, *self.input_shape), device=self.device)
                out = self.model(x)
            self._variational = getattr(out, "mu", None) is not None and (
                getattr(out, "logvar", None) is not None
            )
        return self._variational

    @property
    def value_range(self) -> tuple[float, float]:
        """The valid range of model inputs/outputs: [0, 1] for STFT, [-1, 1] for waveforms."""
        return (0.0, 1.0) if self.codec.representation == "stft" else (-1.0, 1.0)

    def describe(self) -> dict[str, Any]:
        """JSON-able description of the model for manifests."""
        hp = getattr(self.model, "hparams", None)
        if hp is not None and hasattr(hp, "__dataclass_fields__"):
            import dataclasses

            hp = dataclasses.asdict(hp)
        return {
            "name": getattr(self.model, "name", type(self.model).__name__),
            "hparams": hp,
            "input_shape": list(self.input_shape),
            "latent_shape": list(self.latent_shape),
            "latent_dim": self.dim,
            "variational": self.is_variational,
            "has_prior": self.has_prior,
            "fitted_codes": None if self.fitted is None else self.fitted.source,
        }

    # --- core maps --------------------------------------------------------------------------
    def _check_inputs(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.shape[1:] != self.input_shape:
            raise GenerationError(
                f"input shape {tuple(x.shape[1:])} does not match the model's input shape "
                f"{self.input_shape} (different codec settings?)"
            )
        return x

    @torch.no_grad()
    def encode(self, x: np.ndarray) -> np.ndarray:
        """The codes `(N, D)` the model reconstructs samples `(N, *input_shape)` from: a VAE's
        posterior means, refined through the decoders where the model refines its codes (see
        `posterior` for the unrefined means)."""
        x = self._check_inputs(x)
        out = []
        for i in range(0, x.shape[0], self.batch_size):
            xb = torch.from_numpy(x[i : i + self.batch_size]).to(self.device)
            z = self.model.encode(xb)
            out.append(z.reshape(z.shape[0], -1).float().cpu().numpy())
        return np.concatenate(out, axis=0) if out else np.zeros((0, self.dim), np.float32)

    @torch.no_grad()
    def posterior(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Posterior mean and standard deviation `(N, D)`; std is None for deterministic models."""
        x = self._check_inputs(x)
        if not self.is_variational:
            return self.encode(x), None
        mus, stds = [], []
        for i in range(0, x.shape[0], self.batch_size):
            xb = torch.from_numpy(x[i : i + self.batch_size]).to(self.device)
            out = self.model(xb)
            mu, logvar = getattr(out, "mu", None), getattr(out, "logvar", None)
            if mu is None or logvar is None:
                return self.encode(x), None
            mus.append(mu.reshape(mu.shape[0], -1).float().cpu().numpy())
            stds.append(torch.exp(0.5 * logvar).reshape(mu.shape[0], -1).float().cpu().numpy())
        return np.concatenate(mus), np.concatenate(stds)

    @torch.no_grad()
    def decode(self, z: np.ndarray) -> np.ndarray:
        """Model outputs `(N, *input_shape)` for latent vectors `(N, D)`, clamped to the valid range."""
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise GenerationError(f"latent vectors must have shape (N, {self.dim}), got {z.shape}")
        lo, hi = self.value_range
        out = []
        for i in range(0, z.shape[0], self.batch_size):
            zb = torch.from_numpy(z[i : i + self.batch_size]).to(self.device)
            y = self.model.decode(zb.reshape(zb.shape[0], *self.latent_shape))
            out.append(y.clamp(lo, hi).float().cpu().numpy())
        if not out:
            return np.zeros((0, *self.input_shape), np.float32)
        return np.concatenate(out, axis=0)

    @torch.no_grad()
    def sample_prior(self, n: int, temperature: float, seed: int) -> np.ndarray:
        """`n` latent vectors from the model's own prior, scaled by `temperature`."""
        if not self.has_prior:
            from samplegen.models.code_distribution import MAX_FITTED_DIM

            # fit-codes refuses a code too large to fit (an outer model's): suggest it only
            # where it works.
            fits = math.prod(self.latent_shape) <= MAX_FITTED_DIM and not getattr(
                getattr(self.model, "inner", self.model), "discrete_latent", False
            )
            raise GenerationError(
                f"model {self.describe()['name']!r} is not variational and has no prior: "
                "give reference sounds (--reference) to sample their empirical latent "
                "distribution"
                + (", or store its training codes with `samplegen fit-codes`" if fits else "")
            )
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        z = self._prior_fn()(int(n), temperature=float(temperature), generator=gen)
        return z.reshape(int(n), -1).float().cpu().numpy()

    # --- statistics -------------------------------------------------------------------------
    def stats(self, reference: np.ndarray | None = None) -> LatentStats:
        """Latent statistics: from reference samples when given, else the model's, else the prior.

        Order: reference encodings (empirical); the mixture of the training codes stored with the
        model; `latent_stats` stored in the model's metadata; the standard normal prior for
        Gaussian VAEs; 4096 draws of any other prior (seed 0). Raises `GenerationError` when none
        of these exists.
        """
        if reference is not None and len(reference):
            z = self.encode(reference).astype(np.float64)
            std = z.std(axis=0, ddof=1) if z.shape[0] > 1 else np.zeros(self.dim)
            return LatentStats(
                z.mean(axis=0).astype(np.float32), std.astype(np.float32), "reference", z
            )
        fitted = self.fitted
        if fitted is not None:
            return LatentStats(
                fitted.mean.astype(np.float32),
                fitted.std.astype(np.float32),
                f"training codes ({fitted.source})",
            )
        stored = _stored_stats(self.meta, self.dim)
        if stored is not None:
            return stored
        if self.is_variational:
            return LatentStats(
                np.zeros(self.dim, np.float32), np.ones(self.dim, np.float32), "prior N(0, 1)"
            )
        if self.has_prior:
            z = self.sample_prior(4096, 1.0, 0).astype(np.float64)
            return LatentStats(
                z.mean(axis=0).astype(np.float32),
                z.std(axis=0).astype(np.float32),
                "prior (4096 draws)",
            )
        raise GenerationError(
            f"model {self.describe()['name']!r} is not variational and its metadata holds no latent "
            "statistics: give reference sounds (--reference) to measure them"
        )


def _meta_dict(meta: Any) -> dict[str, Any]:
    """Model metadata as a plain dict (accepts the artifact's ModelMeta dataclass or a mapping)."""
    import dataclasses

    if meta is None:
        return {}
    if dataclasses.is_dataclass(meta) and not isinstance(meta, type):
        data = {f.name: getattr(meta, f.name) for f in dataclasses.fields(meta)}
    else:
        data = dict(meta)
    return {k: (str(v) if k == "directory" else v) for k, v in data.items()}


def _stored_stats(meta: Mapping[str, Any], dim: int) -> LatentStats | None:
    """Latent mean/std saved with the model (meta['latent_stats'] or meta['extra']['latent_stats'])."""
    candidates = [meta.get("latent_stats")]
    extra = meta.get("extra")
    if isinstance(extra, Mapping):
        candidates.append(extra.get("latent_stats"))
    for c in candidates:
        if isinstance(c, Mapping) and "mean" in c and "std" in c:
            mean = np.asarray(c["mean"], dtype=np.float32).reshape(-1)
            std = np.asarray(c["std"], dtype=np.float32).reshape(-1)
            if mean.shape == (dim,) and std.shape == (dim,):
                return LatentStats(mean, std, "model metadata")
    return None


def sample_empirical(
    stats: LatentStats, n: int, temperature: float, rng: np.random.Generator
) -> np.ndarray:
    """Gaussian samples with the reference latents' mean and covariance, scaled by `temperature`.

    With reference latents Z (N, D), z = mean + T * Zc^T w / sqrt(N - 1), w ~ N(0, I_N), has exactly
    the empirical covariance without forming a D x D matrix (D can be large for outer codes).
    Without reference latents, dimensions are taken as independent with the stored std.
    """
    if stats.samples is not None and stats.samples.shape[0] > 1:
        zc = stats.samples - stats.samples.mean(axis=0, keepdims=True)
        w = rng.standard_normal((n, zc.shape[0]))
        z = stats.mean[None, :] + temperature * (w @ zc) / math.sqrt(zc.shape[0] - 1)
    else:
        eps = rng.standard_normal((n, stats.mean.shape[0]))
        z = stats.mean[None, :] + temperature * eps * stats.std[None, :]
    return z.astype(np.float32)


def load_space(model_dir: Any, *, device: str | torch.device = "cpu") -> LatentSpace:
    """Load a trained model directory (`config.json` + `weights.safetensors`) as a `LatentSpace`."""
    from pathlib import Path

    from samplegen.models.artifact import load_model

    path = Path(model_dir)
    if not path.is_dir():
        raise GenerationError(f"{path}: not a model directory (expected config.json + weights)")
    return LatentSpace.from_loaded(load_model(path, device=str(device)), device=device)
