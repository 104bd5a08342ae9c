"""Metrics: the original loss and RMS%, spectral measures, multi-resolution STFT distance."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from samplegen.dsp.config import CodecConfig
from samplegen.dsp.metrics import (
    log_spectral_distance_db,
    multi_resolution_stft_distance,
    rms_percent,
    sample_loss,
    spectral_convergence_db,
)


def test_sample_loss_is_per_sample_sse() -> None:
    target = np.zeros((3, 4, 5), dtype=np.float32)
    pred = target.copy()
    pred[0] += 0.1
    pred[2, 0, 0] = 2.0
    loss = sample_loss(pred, target)
    assert loss.shape == (3,)
    np.testing.assert_allclose(loss, [20 * 0.01, 0.0, 4.0], rtol=1e-5)
    t = sample_loss(torch.from_numpy(pred).requires_grad_(), torch.from_numpy(target))
    assert isinstance(t, torch.Tensor) and t.requires_grad
    np.testing.assert_allclose(t.detach().numpy(), loss, rtol=1e-6)
    with pytest.raises(ValueError, match="shapes differ"):
        sample_loss(pred, target[:2])


def test_rms_percent_matches_reference_numbers() -> None:
    # The reference study: 85,000 values, losses 45.4 / 16.4 / 10 -> 2.3% / 1.39% / 1.08%.
    assert rms_percent(45.4, 85_000) == pytest.approx(2.31, abs=0.01)
    assert rms_percent(16.4, 85_000) == pytest.approx(1.39, abs=0.01)
    assert rms_percent(10.0, 85_000) == pytest.approx(1.08, abs=0.01)
    arr = rms_percent(np.array([45.4, 10.0]), 85_000)
    ten = rms_percent(torch.tensor([45.4, 10.0]), 85_000)
    np.testing.assert_allclose(arr, ten.numpy(), rtol=1e-6)
    # A constant 1% error everywhere gives exactly 1%.
    cfg = CodecConfig()
    n = cfg.values_per_sample
    loss = sample_loss(np.full((1, *cfg.shape), 0.01), np.zeros((1, *cfg.shape)))
    assert rms_percent(loss[0], n) == pytest.approx(1.0)


def test_spectral_convergence() -> None:
    rng = np.random.default_rng(0)
    ref = rng.random((2, 33, 10))
    assert spectral_convergence_db(ref * 1.1, ref) == pytest.approx([-20.0, -20.0], abs=1e-6)
    assert spectral_convergence_db(ref[0] * 1.01, ref[0]) == pytest.approx(-40.0, abs=1e-6)
    assert spectral_convergence_db(np.zeros_like(ref[0]), ref[0]) == pytest.approx(0.0, abs=1e-6)
    t = spectral_convergence_db(torch.from_numpy(ref * 1.1), torch.from_numpy(ref))
    np.testing.assert_allclose(t.numpy(), -20.0, atol=1e-6)
    assert spectral_convergence_db(ref[0], ref[0]) < -200


def test_log_spectral_distance() -> None:
    rng = np.random.default_rng(1)
    ref = rng.random((17, 8)) + 0.5
    assert log_spectral_distance_db(ref, ref) == pytest.approx(0.0, abs=1e-9)
    # A uniform gain of 2 is 6.02 dB in every bin.
    assert log_spectral_distance_db(2 * ref, ref) == pytest.approx(20 * math.log10(2), abs=1e-6)
    # Bins below the floor on both sides do not count.
    quiet = ref.copy()
    quiet[:4] = 1e-9
    other = quiet.copy()
    other[:4] = 1e-11
    assert log_spectral_distance_db(other, quiet) == pytest.approx(0.0, abs=1e-9)


def test_multi_resolution_stft_distance() -> None:
    sr = 16_000
    t = np.arange(sr // 2) / sr
    a = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    b = np.sin(2 * np.pi * 466 * t).astype(np.float32)
    assert multi_resolution_stft_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    near = multi_resolution_stft_distance(a + 0.001 * b, a)
    far = multi_resolution_stft_distance(b, a)
    assert 0 < near < far
    batch = multi_resolution_stft_distance(np.stack([a, b]), np.stack([a, a]))
    assert batch.shape == (2,)
    assert batch[1] == pytest.approx(far, rel=1e-5)
    x = torch.from_numpy(b).requires_grad_()
    d = multi_resolution_stft_distance(x, torch.from_numpy(a), fft_sizes=(256, 512))
    d.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
