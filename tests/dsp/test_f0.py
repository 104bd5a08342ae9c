"""Pitch of held notes: C3/C4/C5 tones of many spectra, mu-law companded or not."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from samplegen.dsp.codec import mu_law
from samplegen.dsp.f0 import estimate_f0

RATE = 44100
NOTES = {"C3": 130.81, "C4": 261.63, "C5": 523.25}


def _tone(f0: float, amps: list[float], seconds: float = 1.0, decay: float = 1.5) -> torch.Tensor:
    t = torch.arange(int(RATE * seconds), dtype=torch.float64) / RATE
    y = sum(a * torch.sin(2 * math.pi * f0 * (k + 1) * t + k) for k, a in enumerate(amps))
    y = y * torch.exp(-decay * t)
    return (y / y.abs().max()).float()


def _cents(f: torch.Tensor, ref: float) -> np.ndarray:
    return 1200 * np.log2(f.numpy() / ref)


SPECTRA = {
    "falling": [1.0, 0.5, 0.3, 0.2, 0.1],
    "pure": [1.0],
    "weak fundamental": [0.05, 1.0, 0.2, 1.0, 0.1, 0.8],
    "missing fundamental": [0.0, 1.0, 1.0, 1.0, 1.0],
    "odd only (clarinet)": [1.0, 0.0, 0.5, 0.0, 0.3, 0.0, 0.2],
}


@pytest.mark.parametrize("spectrum", SPECTRA)
@pytest.mark.parametrize("companded", [False, True])
def test_notes_are_found_within_ten_cents(spectrum: str, companded: bool) -> None:
    x = torch.stack([_tone(f, SPECTRA[spectrum]) for f in NOTES.values()])
    if companded:
        x = mu_law(x, 255.0)
    f0 = estimate_f0(x, RATE)
    assert f0.shape == (3,)
    for got, ref in zip(f0, NOTES.values(), strict=True):
        assert abs(_cents(got, ref)) < 10, (spectrum, float(got), ref)


@settings(max_examples=15, deadline=None)
@given(
    f0=st.floats(60.0, 1000.0),
    jitter=st.lists(st.floats(0.5, 1.5), min_size=8, max_size=8),
)
def test_any_falling_spectrum_in_range(f0: float, jitter: list[float]) -> None:
    amps = [j / (k + 1) for k, j in enumerate(jitter)]
    got = estimate_f0(_tone(f0, amps, seconds=0.5)[None], RATE)
    assert abs(_cents(got, f0)[0]) < 15


def test_short_and_silent_inputs_give_a_frequency_in_range() -> None:
    x = torch.zeros(2, 1000)
    x[1] = _tone(261.63, [1.0], seconds=1000 / RATE)
    f0 = estimate_f0(x, RATE, f0_min=50.0, f0_max=1000.0)
    assert torch.isfinite(f0).all()
    assert ((f0 >= 50.0) & (f0 <= 1000.0)).all()


@pytest.mark.parametrize(("lo", "hi"), [(0.0, 100.0), (200.0, 100.0), (40.0, 30000.0)])
def test_bad_ranges_are_refused(lo: float, hi: float) -> None:
    with pytest.raises(ValueError, match="f0"):
        estimate_f0(torch.zeros(1, 4096), RATE, f0_min=lo, f0_max=hi)
