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
    log_likelihood,
    stored_distribution,
)
from samplegen.models.registry import build_model
from samplegen.models.vae import VAE


def _correlated(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mean = np.array([1.5, -2.0, 0.3])
    a = np.array([[1.0, 0.0, 0.0], [0.8, 0.5, 0.0], [-0.3, 0.2, 2.0]])
    return mean + rng.standard_normal((n, 3)) @ a.T, mean, a @ a.T


def test_one_gaussian_keeps_the_codes_mean_and_covariance() -> None:
    codes, mean, cov = _correlated(20_000)
    fitted = fit_codes(codes, "test codes", components=1)
    assert fitted.count == 20_000 and fitted.dim == 3 and fitted.source == "test codes"
    assert fitted.components == 1
    np.testing.assert_allclose(fitted.mean, codes.mean(0), rtol=1e-9)
    np.testing.assert_allclose(fitted.cov, np.cov(codes, rowvar=False, bias=True), atol=5e-3)
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


def test_a_mixture_keeps_the_overall_moments_and_finds_separate_families() -> None:
    codes, mean, cov = _correlated(5_000)
    mixture = fit_codes(codes, "one family")
    assert mixture.components == 8  # 5,000 codes allow the default number
    # EM keeps the codes' first and second moments, whatever the components do.
    np.testing.assert_allclose(mixture.mean, codes.mean(0), atol=1e-6)
    np.testing.assert_allclose(mixture.cov, np.cov(codes, rowvar=False, bias=True), atol=0.01)

    rng = np.random.default_rng(3)
    centres = np.array([[-6.0, 0.0], [0.0, 6.0], [6.0, 0.0]])
    share = np.array([0.5, 0.3, 0.2])
    labels = rng.choice(3, size=900, p=share)
    clustered = centres[labels] + 0.5 * rng.standard_normal((900, 2))
    fitted = fit_codes(clustered, "three families", components=3)
    order = np.argsort(fitted.means[:, 0] + 0.01 * fitted.means[:, 1])
    np.testing.assert_allclose(fitted.means[order], centres, atol=0.15)
    np.testing.assert_allclose(fitted.weights[order], np.bincount(labels) / 900, atol=0.02)
    # Draws fall in the families, not between them as one Gaussian's do.
    one = fit_codes(clustered, "one gaussian", components=1)
    held_out = centres[rng.choice(3, size=300, p=share)] + 0.5 * rng.standard_normal((300, 2))
    assert log_likelihood(held_out, fitted) > log_likelihood(held_out, one) + 1.0

    def far(draws: np.ndarray) -> float:
        return float((np.linalg.norm(draws[:, None] - centres[None], axis=2).min(1) > 2).mean())

    assert far(fitted.sample(2_000, 1.0, rng)) < 0.01 < 0.3 < far(one.sample(2_000, 1.0, rng))
    # At temperature 0 every draw is a family's centre.
    centre_draws = fitted.sample(50, 0.0, rng).astype(np.float64)
    gaps = np.linalg.norm(centre_draws[:, None] - fitted.means[None], axis=2).min(1)
    assert gaps.max() < 1e-5
    # Deterministic for a seed.
    again = fit_codes(clustered, "three families", components=3)
    np.testing.assert_array_equal(again.means, fitted.means)


def test_fewer_codes_than_dimensions_still_sample_within_their_span() -> None:
    rng = np.random.default_rng(0)
    codes = rng.standard_normal((3, 6))  # covariance of rank 2
    fitted = fit_codes(codes, "three notes")
    draws = fitted.sample(50, 1.0, rng).astype(np.float64)
    assert np.isfinite(draws).all()
    # Every draw lies (up to the small ridge) in the plane through the codes' mean.
    basis = np.linalg.svd(codes - codes.mean(0))[2][:2]
    centred = draws - fitted.mean
    inside = centred @ basis.T
    off = centred - inside @ basis
    assert np.sqrt((off**2).mean()) < 0.1 * np.sqrt((inside**2).mean())


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
    np.testing.assert_allclose(back.weights, fitted.weights, rtol=1e-12)
    np.testing.assert_array_equal(back.means, fitted.means)
    np.testing.assert_array_equal(back.covs, fitted.covs)
    assert (back.count, back.source) == (n, "property")
    assert fitted.components == max(1, min(8, n // (5 * dim)))
    draws = back.sample(count, temperature, np.random.default_rng(seed))
    assert draws.shape == (count, dim) and np.isfinite(draws).all()


def test_bad_codes_and_bad_stored_distributions_are_refused_with_the_reason() -> None:
    with pytest.raises(CodeDistributionError, match="at least 2 notes, got 1"):
        fit_codes(np.zeros((1, 4)), "one")
    with pytest.raises(CodeDistributionError, match="not finite"):
        fit_codes(np.array([[0.0, np.nan], [1.0, 2.0]]), "nan")
    assert stored_distribution({}, 3) is None
    assert stored_distribution(None, 3) is None
    good = fit_codes(np.random.default_rng(0).normal(size=(200, 3)), "x", components=2).to_dict()
    with pytest.raises(CodeDistributionError, match=r"do not fit a model with 4 latents"):
        stored_distribution({CODE_DISTRIBUTION_KEY: good}, 4)
    with pytest.raises(CodeDistributionError, match="'means' and 'covs'"):
        stored_distribution({CODE_DISTRIBUTION_KEY: {"means": [[0.0, 1.0, 2.0]]}}, 3)
    with pytest.raises(CodeDistributionError, match="not finite"):
        stored_distribution({CODE_DISTRIBUTION_KEY: {**good, "weights": [0.5, float("nan")]}}, 3)
    with pytest.raises(CodeDistributionError, match="weights must be >= 0"):
        stored_distribution({CODE_DISTRIBUTION_KEY: {**good, "weights": [1.0, -0.5]}}, 3)
    # A single Gaussian written as mean and cov alone reads as one component.
    single = {"mean": good["mean"], "cov": good["cov"], "count": 200, "source": "x"}
    one = stored_distribution({CODE_DISTRIBUTION_KEY: single}, 3)
    assert one is not None and one.components == 1
    np.testing.assert_allclose(one.cov, np.asarray(good["cov"]))


def test_a_vae_is_fitted_on_its_encoder_means_and_a_vq_vae_is_not_fitted() -> None:
    torch.manual_seed(0)
    vae = build_model("vae", {"latent": 3, "depth": 2, "refine_steps": 5}, (12,))
    assert isinstance(vae, VAE)
    x = np.random.default_rng(0).normal(size=(30, 12)).astype(np.float32)
    vae.train()
    fitted = fit_model_codes(vae, x, "thirty")
    assert fitted is not None and fitted.dim == 3 and fitted.count == 30
    assert vae.training  # the model is left in the mode it was given in
    with torch.no_grad():
        mu = vae.posterior(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(fitted.mean, mu.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fitted.std, mu.std(0), rtol=1e-2)
    vq = build_model("vq_vae", {}, (12,))
    assert fit_model_codes(vq, x, "codebook") is None
