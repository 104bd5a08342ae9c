"""Random equalisation of encoded STFT notes: new harmonic balances for training an inner model.

Why: most of the chained VAE's error on instruments it never saw is a wrong balance of the
harmonics below 1.4 kHz, much of it constant over the note (benchmarks/RESULTS.md, "Where the
combined model's error sits"). Copies of the training notes through smooth random EQ curves show
the model more balances than 100 or so training instruments hold.

A curve is a sum of a few cosines over log frequency (40 Hz to the Nyquist frequency), each with a
normal random amplitude in dB; it multiplies the note's linear magnitude, and the result is encoded
again as the codec encodes (peak 1, floor, mu-law). Bins the codec had floored stay silent.
"""

from __future__ import annotations

import hashlib

import numpy as np

from samplegen.dsp.codec import magnitude, mu_law
from samplegen.dsp.config import CodecConfig

# Cosine terms per curve: enough for a tilt, a bump and a dip, too few to follow single harmonics.
TERMS = 4
LOWEST_HZ = 40.0


def eq_seed(*parts: object) -> int:
    """A stable 64-bit seed from any printable parts (a row's name, its copy number, a seed)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def eq_basis(config: CodecConfig, terms: int = TERMS) -> np.ndarray:
    """The curves' cosine terms over the codec's frequency bins, float64 (terms, bins)."""
    if terms < 1:
        raise ValueError(f"eq: terms must be >= 1, got {terms}")
    if config.representation != "stft":
        raise ValueError(f"eq: the codec representation is {config.representation!r}, not 'stft'")
    freqs = np.arange(config.shape[0]) * config.sample_rate / config.n_fft
    nyquist = config.sample_rate / 2
    u = np.log(np.maximum(freqs, LOWEST_HZ) / LOWEST_HZ) / np.log(nyquist / LOWEST_HZ)
    return np.cos(np.pi * np.arange(1, terms + 1)[:, None] * np.clip(u, 0.0, 1.0)[None])


def eq_curve_db(seed: int, config: CodecConfig, db: float, terms: int = TERMS) -> np.ndarray:
    """One random EQ curve in dB, float32 (bins,); `db` is each cosine term's standard deviation."""
    if db < 0:
        raise ValueError(f"eq: db must be >= 0, got {db}")
    amplitudes = np.random.default_rng(seed).normal(0.0, db, terms)
    return (amplitudes @ eq_basis(config, terms)).astype(np.float32)


def equalise(encoded: np.ndarray, curves_db: np.ndarray, config: CodecConfig) -> np.ndarray:
    """Encoded notes (N, bins, frames) through EQ curves in dB, encoded again.

    Curves are (N, bins), one gain per bin for the whole note, or (N, bins, frames), a gain per
    bin and frame (a curve that changes through the note)."""
    x = np.asarray(encoded, dtype=np.float32)
    curves = np.asarray(curves_db, dtype=np.float32)
    if x.ndim != 3 or curves.shape not in (x.shape[:2], x.shape):
        raise ValueError(
            f"equalise: expected notes (N, bins, frames) and curves (N, bins) or (N, bins, "
            f"frames), got {x.shape} and {curves.shape}"
        )
    if curves.ndim == 2:
        curves = curves[:, :, None]
    lin = magnitude(x, config) * 10.0 ** (curves / 20.0)
    peak = lin.reshape(len(lin), -1).max(axis=1) if len(lin) else np.zeros(0, np.float32)
    # An all-silent note stays silent instead of becoming NaN.
    lin = lin / np.where(peak > 0, peak, 1.0)[:, None, None]
    lin = np.where(lin < config.floor_amplitude, 0.0, lin)
    return mu_law(lin.astype(np.float32), config.mu)
