"""Random EQ of encoded STFT notes (samplegen.dsp.equalise)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from samplegen.dsp.codec import encode_batch, magnitude
from samplegen.dsp.config import CodecConfig
from samplegen.dsp.equalise import TERMS, eq_basis, eq_curve_db, eq_seed, equalise
from samplegen.dsp.griffin_lim import stft

SMALL = CodecConfig(duration=0.1, n_fft=256, hop=128, fade_s=0.01)


def notes(count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(SMALL.num_samples) / SMALL.sample_rate
    waves = [
        sum(rng.uniform(0.1, 1.0) * np.sin(2 * np.pi * 220.0 * h * t) for h in range(1, 9))
        for _ in range(count)
    ]
    return encode_batch(np.stack(waves).astype(np.float32), SMALL)


def test_a_flat_curve_changes_nothing() -> None:
    x = notes(3)
    flat = np.zeros(x.shape[:2], np.float32)
    np.testing.assert_allclose(equalise(x, flat, SMALL), x, atol=1e-6)


def test_equalising_encoded_notes_is_filtering_the_magnitude_then_encoding() -> None:
    # The same as scaling each bin of the linear STFT magnitude by the curve, then peak 1, floor and
    # mu-law: what the codec would make of a note whose spectrum had that balance.
    x = notes(2, seed=1)
    curves = np.stack([eq_curve_db(eq_seed("a", k), SMALL, 6.0) for k in range(2)])
    got = equalise(x, curves, SMALL)
    lin = magnitude(x, SMALL) * 10 ** (curves[:, :, None] / 20)
    lin /= lin.reshape(2, -1).max(1)[:, None, None]
    lin[lin < SMALL.floor_amplitude] = 0
    want = np.log1p(SMALL.mu * lin) / np.log1p(SMALL.mu)
    np.testing.assert_allclose(got, want, atol=1e-5)
    # A real change of balance: bins move by up to several dB relative to each other.
    assert np.abs(got - x).max() > 0.05


@settings(max_examples=25, deadline=None)
@given(db=st.floats(0.0, 24.0), seed=st.integers(0, 2**32))
def test_equalised_notes_stay_valid_encodings(db: float, seed: int) -> None:
    x = notes(2, seed=seed % 7)
    curves = np.stack([eq_curve_db(eq_seed(seed, k), SMALL, db) for k in range(2)])
    y = equalise(x, curves, SMALL)
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.isfinite(y).all() and y.min() >= 0.0
    np.testing.assert_allclose(y.reshape(2, -1).max(1), 1.0, atol=1e-6)  # peak bin = 1
    assert ((x == 0) <= (y == 0)).all()  # floored bins stay silent


def test_curves_are_smooth_reproducible_and_scaled_by_db() -> None:
    a = eq_curve_db(eq_seed("note.wav", 1, 0), SMALL, 4.0)
    assert a.shape == (SMALL.shape[0],)
    np.testing.assert_array_equal(a, eq_curve_db(eq_seed("note.wav", 1, 0), SMALL, 4.0))
    assert not np.array_equal(a, eq_curve_db(eq_seed("note.wav", 2, 0), SMALL, 4.0))
    np.testing.assert_allclose(eq_curve_db(eq_seed("note.wav", 1, 0), SMALL, 8.0), 2 * a, rtol=1e-5)
    # A few cosines over log frequency: smooth from bin to bin above the lowest octaves (where one
    # bin spans much of the log axis), no comb.
    assert np.abs(np.diff(a[8:])).max() < 2.0
    spread = np.std([eq_curve_db(eq_seed(i), SMALL, 4.0)[40] for i in range(400)])
    assert 2.0 < spread < 8.0, spread


def test_a_curve_per_frame_equals_a_constant_curve_when_it_does_not_change() -> None:
    x = notes(2, seed=3)
    curves = np.stack([eq_curve_db(i, SMALL, 6.0) for i in range(2)])
    per_frame = np.repeat(curves[:, :, None], x.shape[2], axis=2)
    np.testing.assert_allclose(
        equalise(x, per_frame, SMALL), equalise(x, curves, SMALL), rtol=1e-6, atol=1e-6
    )
    # A gain that falls through the note leaves the first frame's balance and quiets the last.
    ramp = np.linspace(0.0, -30.0, x.shape[2], dtype=np.float32)
    faded = equalise(x, np.broadcast_to(ramp, x.shape).copy(), SMALL)
    lin, lin_faded = magnitude(x, SMALL), magnitude(faded, SMALL)
    assert lin_faded[:, :, -1].sum() < 0.1 * lin[:, :, -1].sum()
    # The note is renormalised to its peak, so the first frame keeps its shape, not its level.
    first, first_faded = lin[:, :, 0], lin_faded[:, :, 0]
    np.testing.assert_allclose(
        first_faded / first_faded.max(axis=1, keepdims=True),
        first / first.max(axis=1, keepdims=True),
        atol=0.02,
    )


def test_more_terms_follow_finer_balances() -> None:
    # Each term k is a cosine with k half-periods over the log-frequency axis: more terms, more
    # turning points. The default keeps the curves drawn by earlier versions.
    def turning_points(row: np.ndarray) -> int:
        slope = np.diff(row)
        slope = slope[np.abs(slope) > 1e-12]  # the bins below 40 Hz share one flat value
        return int(np.sum(np.diff(np.sign(slope)) != 0))

    full = CodecConfig()
    np.testing.assert_array_equal(eq_basis(full), eq_basis(full, TERMS))
    basis = eq_basis(full, 8)
    assert basis.shape == (8, full.shape[0])
    np.testing.assert_array_equal(basis[:TERMS], eq_basis(full))
    assert [turning_points(row) for row in basis] == list(range(8))
    np.testing.assert_array_equal(eq_curve_db(3, full, 4.0), eq_curve_db(3, full, 4.0, TERMS))


def test_silence_and_bad_settings() -> None:
    silent = np.zeros((1, *SMALL.shape), np.float32)
    curve = eq_curve_db(1, SMALL, 6.0)[None]
    np.testing.assert_array_equal(equalise(silent, curve, SMALL), silent)
    with pytest.raises(ValueError, match="db must be >= 0"):
        eq_curve_db(1, SMALL, -1.0)
    with pytest.raises(ValueError, match="terms must be >= 1"):
        eq_curve_db(1, SMALL, 4.0, terms=0)
    with pytest.raises(ValueError, match="not 'stft'"):
        eq_curve_db(1, SMALL.replace(representation="wave"), 4.0)
    with pytest.raises(ValueError, match=r"curves \(N, bins\) or"):
        equalise(notes(2), curve, SMALL)


def test_the_codec_sees_an_equalised_note_as_the_filtered_note() -> None:
    # Filtering a harmonic note in the frequency domain, then encoding it, gives nearly what
    # equalising its encoding gives (STFT leakage between bins makes it approximate).
    t = np.arange(SMALL.num_samples) / SMALL.sample_rate
    harmonics = [(0.5**h) * np.sin(2 * np.pi * 344.5 * h * t) for h in range(1, 6)]
    wave = np.sum(harmonics, axis=0).astype(np.float32)
    curve = eq_curve_db(eq_seed("x"), SMALL, 6.0)
    spectrum = np.fft.rfft(wave)
    freqs = np.fft.rfftfreq(len(wave), 1 / SMALL.sample_rate)
    bin_freqs = np.arange(SMALL.shape[0]) * SMALL.sample_rate / SMALL.n_fft
    gain = 10 ** (np.interp(freqs, bin_freqs, curve) / 20)
    filtered = np.fft.irfft(spectrum * gain, len(wave)).astype(np.float32)
    direct = encode_batch(filtered[None] / np.abs(filtered).max(), SMALL)[0]
    via_eq = equalise(encode_batch(wave[None], SMALL), curve[None], SMALL)[0]
    mag = stft(torch.from_numpy(wave[None]), SMALL).abs()[0].numpy()
    loud = mag > 0.1 * mag.max()
    assert np.abs(direct - via_eq)[loud].mean() < 0.05
