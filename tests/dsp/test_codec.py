"""The mu-law and STFT codecs: exact values, shapes, ranges, round trips (with hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from samplegen.dsp.codec import (
    decode,
    decode_batch,
    encode,
    encode_batch,
    inverse_mu_law,
    magnitude,
    mu_law,
)
from samplegen.dsp.config import CodecConfig
from samplegen.dsp.griffin_lim import stft

CONFIG = CodecConfig()
# Small settings keep the property tests fast: 0.1 s notes, 256-point STFT.
SMALL = CodecConfig(duration=0.1, n_fft=256, hop=128, fade_s=0.01)
SMALL_WAVE = SMALL.replace(representation="wave")

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=32)


def harmonic_note(config: CodecConfig, f0: float = 261.63) -> np.ndarray:
    t = np.arange(config.num_samples) / config.sample_rate
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 9)) * np.exp(-2 * t)
    return (x / np.max(np.abs(x))).astype(np.float32)


# --- mu-law --------------------------------------------------------------------------------------


def test_mu_law_reference_values() -> None:
    # The reference study's examples for mu = 8.
    y = mu_law(np.array([0.01, 0.1, 0.5, 1.0, -0.5, 0.0]), 8.0)
    np.testing.assert_allclose(y, [0.035, 0.268, 0.732, 1.0, -0.732, 0.0], atol=1e-3)


def test_mu_law_numpy_and_torch_agree() -> None:
    x = np.linspace(-1, 1, 101, dtype=np.float32)
    a = mu_law(x, 8.0)
    b = mu_law(torch.from_numpy(x), 8.0)
    assert isinstance(b, torch.Tensor) and a.dtype == np.float32 and b.dtype == torch.float32
    np.testing.assert_allclose(a, b.numpy(), atol=1e-6)
    np.testing.assert_allclose(inverse_mu_law(a, 8.0), inverse_mu_law(b, 8.0).numpy(), atol=1e-6)


@settings(max_examples=50, deadline=None)
@given(x=arrays(np.float64, st.integers(1, 64), elements=finite), mu=st.floats(0.5, 255.0))
def test_mu_law_round_trip_and_range(x: np.ndarray, mu: float) -> None:
    y = mu_law(x, mu)
    assert np.all(np.abs(y) <= 1.0)
    np.testing.assert_allclose(inverse_mu_law(y, mu), np.clip(x, -1, 1), atol=1e-9)
    t = mu_law(torch.from_numpy(x), mu)
    np.testing.assert_allclose(
        inverse_mu_law(t, mu).numpy(), np.clip(x, -1, 1), atol=1e-9, rtol=1e-9
    )


@settings(max_examples=50, deadline=None)
@given(x=arrays(np.float32, st.integers(1, 64), elements=st.floats(0, 1, width=32)))
def test_mu_law_magnitudes_stay_in_unit_interval(x: np.ndarray) -> None:
    y = mu_law(x, 8.0)
    assert np.all((y >= 0) & (y <= 1))
    # Monotonic: a louder bin is never encoded lower.
    order = np.argsort(x, kind="stable")
    assert np.all(np.diff(y[order]) >= 0)
    np.testing.assert_allclose(inverse_mu_law(y, 8.0), x, atol=1e-6)


# --- STFT codec ----------------------------------------------------------------------------------


def test_encode_shape_range_and_definition() -> None:
    wave = harmonic_note(CONFIG)
    enc = encode(wave, CONFIG)
    assert enc.shape == CONFIG.shape == (1025, 87) and enc.dtype == np.float32
    assert enc.min() >= 0 and enc.max() == pytest.approx(1.0)
    # Recompute the definition directly: peak-normalised |STFT|, -70 dB floor, mu-law.
    mag = stft(torch.from_numpy(wave), CONFIG).abs().numpy()
    mag /= mag.max()
    mag[mag < 10 ** (-70 / 20)] = 0
    want = mu_law(mag, 8.0)
    # Two float32 STFTs of one wave can differ in their last bits: on two threads, MKL's FFT gives
    # results that vary from call to call in some processes (by up to 2e-5 of the peak: RESULTS.md
    # "Two STFTs of one wave, on one thread and on two"), and a value at the -70 dB floor may fall
    # on either side of it (mu-law there is 1.15e-3). A wrong floor, mu or peak moves values more.
    np.testing.assert_allclose(enc, want, atol=2e-3)
    assert np.mean(np.abs(enc - want) > 1e-4) < 1e-3
    assert np.any(enc == 0) and np.any((enc > 0) & (enc < 0.1))


def test_encode_torch_matches_numpy_and_batch_matches_single() -> None:
    waves = np.stack([harmonic_note(CONFIG, f) for f in (130.81, 261.63, 523.25)])
    batch = encode_batch(waves, CONFIG)
    tb = encode_batch(torch.from_numpy(waves), CONFIG)
    assert batch.shape == (3, *CONFIG.shape) and isinstance(tb, torch.Tensor)
    np.testing.assert_allclose(batch, tb.numpy(), atol=1e-6)
    np.testing.assert_allclose(batch[1], encode(waves[1], CONFIG), atol=1e-6)


def test_encode_is_level_independent() -> None:
    wave = harmonic_note(SMALL)
    np.testing.assert_allclose(encode(wave, SMALL), encode(0.1 * wave, SMALL), atol=1e-5)


def test_encode_rejects_wrong_length() -> None:
    with pytest.raises(ValueError, match="prepare_wave"):
        encode(np.zeros(1000, dtype=np.float32), CONFIG)


def test_silent_wave_encodes_to_zeros() -> None:
    enc = encode(np.zeros(SMALL.num_samples, dtype=np.float32), SMALL)
    assert np.all(enc == 0)


def test_magnitude_inverts_encode() -> None:
    wave = harmonic_note(CONFIG)
    mag = stft(torch.from_numpy(wave), CONFIG).abs().numpy()
    mag /= mag.max()
    lin = magnitude(encode(wave, CONFIG), CONFIG)
    kept = mag >= CONFIG.floor_amplitude
    np.testing.assert_allclose(lin[kept], mag[kept], rtol=1e-4, atol=1e-7)
    assert np.all(lin[~kept] == 0) and lin.max() == pytest.approx(1.0)
    # Out-of-range model outputs are clamped, small ones are floored.
    odd = magnitude(np.array([-0.3, 1e-5, 1.7], dtype=np.float32), CONFIG)
    np.testing.assert_allclose(odd, [0.0, 0.0, 1.0])
    t = magnitude(torch.from_numpy(encode(wave, CONFIG)), CONFIG)
    np.testing.assert_allclose(t.numpy(), lin, atol=1e-6)


def test_magnitude_refuses_wave_codec() -> None:
    with pytest.raises(ValueError, match="stft"):
        magnitude(np.zeros(SMALL_WAVE.shape), SMALL_WAVE)


@settings(max_examples=30, deadline=None)
@given(
    x=arrays(
        np.float32,
        SMALL.num_samples,
        elements=st.floats(-1, 1, width=32, allow_subnormal=False),
    )
)
def test_stft_encode_properties(x: np.ndarray) -> None:
    enc = encode(x, SMALL)
    assert enc.shape == SMALL.shape and enc.dtype == np.float32
    assert np.isfinite(enc).all() and enc.min() >= 0 and enc.max() <= 1
    if np.any(x != 0):
        assert enc.max() == pytest.approx(1.0, abs=1e-6)
    # encode -> magnitude gives the floored, peak-normalised |STFT|.
    mag = stft(torch.from_numpy(x), SMALL).abs().numpy()
    if mag.max() > 0:
        mag = mag / mag.max()
    lin = magnitude(enc, SMALL)
    np.testing.assert_allclose(
        lin[mag >= SMALL.floor_amplitude * 1.001],
        mag[mag >= SMALL.floor_amplitude * 1.001],
        rtol=1e-3,
        atol=1e-6,
    )
    assert np.all(lin[mag < SMALL.floor_amplitude * 0.999] == 0)


# --- wave codec ----------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    x=arrays(
        np.float32,
        SMALL_WAVE.num_samples,
        elements=st.floats(-1, 1, width=32, allow_subnormal=False),
    )
)
def test_wave_codec_round_trip(x: np.ndarray) -> None:
    enc = encode(x, SMALL_WAVE)
    assert enc.shape == SMALL_WAVE.shape and np.all(np.abs(enc) <= 1)
    back = decode(enc, SMALL_WAVE)
    peak = np.max(np.abs(x))
    expected = x / peak if peak > 0 else x
    np.testing.assert_allclose(back, expected, atol=1e-5)


# --- decode --------------------------------------------------------------------------------------


def test_decode_stft_recovers_the_note() -> None:
    wave = harmonic_note(CONFIG)
    enc = encode(wave, CONFIG)
    out = decode(enc, CONFIG, n_iter=32, seed=3)
    assert out.shape == (CONFIG.num_samples,) and out.dtype == np.float32
    assert np.max(np.abs(out)) == pytest.approx(1.0)
    # Re-encoding the decoded audio gives nearly the same model input.
    assert np.sqrt(np.mean((encode(out, CONFIG) - enc) ** 2)) < 0.05


def test_decode_is_seeded_and_batch_consistent() -> None:
    waves = np.stack([harmonic_note(SMALL, f) for f in (200.0, 400.0, 800.0)])
    enc = encode_batch(waves, SMALL)
    a = decode_batch(enc, SMALL, n_iter=8, seed=5)
    b = decode_batch(enc, SMALL, n_iter=8, seed=5, batch_size=2)
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(decode(enc[0], SMALL, n_iter=8, seed=5), a[0], atol=1e-6)
    c = decode_batch(enc, SMALL, n_iter=8, seed=6)
    assert not np.allclose(a, c)
    t = decode_batch(torch.from_numpy(enc), SMALL, n_iter=8, seed=5, device="cpu")
    assert isinstance(t, torch.Tensor)
    np.testing.assert_allclose(t.numpy(), a, atol=1e-6)


def test_decode_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError, match="decode"):
        decode_batch(np.zeros((2, 10, 10), dtype=np.float32), SMALL)
