"""A coarse pitch check: does a note sound at the pitch its name claims?

Follows the original project's idea (loudest spectral peak, else the first strong low peak) with a
finer spectrum (8192-point frames, parabolic peak interpolation) so that C3 (131 Hz) is resolved,
and accepts a note whose fundamental (subharmonic summation, samplegen.dsp.f0) matches too: the
two peaks alone took a note whose second harmonic is its loudest and whose fundamental is weak
(a dulcimer, a glockenspiel) for the octave above, and rejected 34 of FluidR3's 334 melodic notes
at velocity 100; with the fundamental, 18, whose sound is not at the pitch they are named after
(a 16' drawbar organ, guitar harmonics, tubular bells; benchmarks/pitch_check.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_N_FFT = 8192
_LOWEST_HZ = 30.0
_HIGHEST_FUNDAMENTAL_HZ = 1046.5  # C6: above every note the original wanted
_PEAK_FRACTION = 1.0 / 8.0


@dataclass(frozen=True)
class PitchResult:
    """Outcome of a pitch check: the candidate frequencies found and whether one matched."""

    ok: bool
    loudest_hz: float
    fundamental_hz: float | None
    target_hz: float | None
    f0_hz: float | None = None  # subharmonic summation's fundamental


def average_spectrum(wave: np.ndarray, sample_rate: int, n_fft: int = _N_FFT) -> np.ndarray:
    """Magnitude spectrum averaged over Hann-windowed frames (zero-padded if the wave is short)."""
    x = np.asarray(wave, dtype=np.float64)
    if x.size < 2:
        x = np.pad(x, (0, 2 - x.size))
    # Frames no longer than the sound, zero-padded to n_fft for a finely sampled spectrum.
    length = max(2, min(n_fft, x.size))
    hop = max(1, length // 2)
    window = np.hanning(length)
    frames = np.stack([x[s : s + length] * window for s in range(0, x.size - length + 1, hop)])
    spectrum = np.abs(np.fft.rfft(frames, n=n_fft, axis=1)).mean(axis=0)
    spectrum[0] = 0.0  # DC says nothing about pitch
    return spectrum


def _interpolated_hz(spectrum: np.ndarray, k: int, bin_hz: float) -> float:
    if 0 < k < spectrum.size - 1:
        a, b, c = spectrum[k - 1], spectrum[k], spectrum[k + 1]
        denom = a - 2 * b + c
        offset = 0.5 * (a - c) / denom if denom != 0 else 0.0
        return float((k + offset) * bin_hz)
    return float(k * bin_hz)


def estimate_pitch(wave: np.ndarray, sample_rate: int) -> tuple[float, float | None]:
    """(frequency of the loudest peak, frequency of the first strong low peak or None) in Hz."""
    spectrum = average_spectrum(wave, sample_rate)
    bin_hz = sample_rate / _N_FFT
    loudest = int(np.argmax(spectrum))
    loudest_hz = _interpolated_hz(spectrum, loudest, bin_hz)
    threshold = spectrum.max() * _PEAK_FRACTION
    lo = max(1, int(np.ceil(_LOWEST_HZ / bin_hz)))
    hi = min(spectrum.size - 2, int(_HIGHEST_FUNDAMENTAL_HZ * 1.2 / bin_hz))
    for k in range(lo, hi + 1):
        s = spectrum[k]
        if s >= threshold and s >= spectrum[k - 1] and s > spectrum[k + 1]:
            return loudest_hz, _interpolated_hz(spectrum, k, bin_hz)
    return loudest_hz, None


def fundamental_f0(wave: np.ndarray, sample_rate: int) -> float | None:
    """The note's fundamental by subharmonic summation (None when the sample rate cannot carry
    the search's range, 40-1200 Hz)."""
    import torch

    from samplegen.dsp.f0 import estimate_f0

    if sample_rate < 2 * 1200.0:
        return None
    x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))[None]
    return float(estimate_f0(x, sample_rate)[0])


def check_pitch(
    wave: np.ndarray, sample_rate: int, targets_hz: Sequence[float], tolerance: float
) -> PitchResult:
    """Accept when the loudest peak, the first strong low peak or the fundamental lies within
    ±`tolerance` (relative) of a target."""
    loudest_hz, fundamental_hz = estimate_pitch(wave, sample_rate)
    f0_hz = fundamental_f0(wave, sample_rate)
    for candidate in (loudest_hz, fundamental_hz, f0_hz):
        if candidate is None:
            continue
        for target in targets_hz:
            if abs(candidate / target - 1.0) <= tolerance:
                return PitchResult(True, loudest_hz, fundamental_hz, float(target), f0_hz)
    return PitchResult(False, loudest_hz, fundamental_hz, None, f0_hz)
