"""The Gaussian of a model's training codes (samplegen.models.code_distribution)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from samplegen.models.code_distribution import (
    CODE_DISTRIBUTION_KEY,
    CodeDistributionError,
    fit_codes,
    fit_model_codes,
    stored_distribution,
)
from samplegen.models.registry import build_model


def _correlated(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mean = np.array([1.5, -2.0, 0.3])
    a = np.array([[1.0, 0.0, 0.0], [0.8, 0.5, 0.0], [-0.3, 0.2, 2.0]])
    return mean + rng.standard_normal((n, 3)) @ a.T, mean, a @ a.T


def test_fit_and_sample_keep_the_codes_mean_and_covariance() -> None:
    codes, mean, cov = _correlated(20_000)
    fitted = fit_codes(codes, "test codes")
    assert fitted.count == 20_000 and fitted.dim == 3 and fitted.source == "test codes"
    np.testing.assert_allclose(fitted.mean, mean, atol=0.05)
    np.testing.assert_allclose(fitted.cov, cov, atol=0.08)
    draws = fitted.sample(20_000, 1.0, np.random.default_rng(1))
    assert draws.dtype == np.float32 and draws.shape == (20_000, 3)
    np.testing.assert_allclose(draws.mean(0), mean, atol=0.06)
    # The off-diagonal terms matter: independent dimensions would lose the 0.8 correlation.
    np.testing.assert_allclose(np.cov(draws, rowvar=False), cov, atol=0.12)
    # Temperature scales the spread around the mean; 0 gives the mean itself.
    half = fitted.sample(20_000, 0.5, np.random.default_rng(1))
    np.testing.assert_allclose(half.std(0), 0.5 * draws.std(0), rtol=1e-5)
    np.testing.assert_allclose(fitted.sample(4, 0.0, np.random.default_rng(2)), [fitted.mean] * 4)


def test_fewer_codes_than_dimensions_still_sample_within_their_span() -> None:
    rng = np.random.default_rng(0)
    codes = rng.standard_normal((3, 6))  # covariance of rank 2
    fitted = fit_codes(codes, "three notes")
    draws = fitted.sample(50, 1.0, rng).astype(np.float64)
    assert np.isfinite(draws).all()
    # Every draw lies (up to the ridge) in the plane through the codes' mean.
    basis = np.linalg.svd(codes - codes.mean(0))[2][:2]
    off = (draws - fitted.mean) - (draws - fitted.mean) @ basis.T @ basis
    assert np.abs(off).max() < 1e-2 * np.abs(draws - fitted.mean).max()


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2, 40),
    dim=st.integers(1, 9),
    count=st.integers(1, 12),
    temperature=st.floats(0.0, 3.0),
    seed=st.integers(0, 2**16),
)
def test_any_fit_round_trips_through_json_and_samples_its_shape(
    n: int, dim: int, count: int, temperature: float, seed: int
) -> None:
    codes = np.random.default_rng(seed).normal(size=(n, dim)) * 3.0
    fitted = fit_codes(codes, "property")
    stored = json.loads(json.dumps({CODE_DISTRIBUTION_KEY: fitted.to_dict()}))
    back = stored_distribution(stored, dim)
    assert back is not None
    np.testing.assert_array_equal(back.mean, fitted.mean)
    np.testing.assert_array_equal(back.cov, fitted.cov)
    assert (back.count, back.source) == (n, "property")
    draws = back.sample(count, temperature, np.random.default_rng(seed))
    assert draws.shape == (count, dim) and np.isfinite(draws).all()


def test_bad_codes_and_bad_stored_distributions_are_refused_with_the_reason() -> None:
    with pytest.raises(CodeDistributionError, match="at least 2 notes, got 1"):
        fit_codes(np.zeros((1, 4)), "one")
    with pytest.raises(CodeDistributionError, match="not finite"):
        fit_codes(np.array([[0.0, np.nan], [1.0, 2.0]]), "nan")
    assert stored_distribution({}, 3) is None
    assert stored_distribution(None, 3) is None
    good = fit_codes(np.random.default_rng(0).normal(size=(10, 3)), "x").to_dict()
    with pytest.raises(CodeDistributionError, match=r"do not fit a model with 4 latents"):
        stored_distribution({CODE_DISTRIBUTION_KEY: good}, 4)
    with pytest.raises(CodeDistributionError, match="'mean' and 'cov'"):
        stored_distribution({CODE_DISTRIBUTION_KEY: {"mean": [0.0, 1.0, 2.0]}}, 3)
    with pytest.raises(CodeDistributionError, match="not finite"):
        stored_distribution({CODE_DISTRIBUTION_KEY: {**good, "mean": [0.0, float("inf"), 1.0]}}, 3)


def test_a_vae_is_fitted_on_its_encoder_means_and_a_vq_vae_is_not_fitted() -> None:
    torch.manual_seed(0)
    vae = build_model("vae", {"latent": 3, "depth": 2, "refine_steps": 5}, (12,))
    x = np.random.default_rng(0).normal(size=(30, 12)).astype(np.float32)
    vae.train()
    fitted = fit_model_codes(vae, x, "thirty")
    assert fitted is not None and fitted.dim == 3 and fitted.count == 30
    assert vae.training  # the model is left in the mode it was given in
    with torch.no_grad():
        mu = vae.posterior(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(fitted.mean, mu.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fitted.std, mu.std(0, ddof=1), rtol=1e-3)
    vq = build_model("vq_vae", {}, (12,))
    assert fit_model_codes(vq, x, "codebook") is None
