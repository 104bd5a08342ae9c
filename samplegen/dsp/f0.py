"""Fundamental frequency of held notes, by subharmonic summation over an averaged spectrum.

One value per note: the library's notes (and the notes users bring) are single held pitches, so a
frame-by-frame tracker would add cost and octave jumps without adding information.

Score of a candidate f: the compressed spectrum summed at its harmonics k f (weights h^(k-1),
Hermes 1988) minus the same sum half-way between them, at (k - 1/2) f. The second term is what
keeps the search off the octave above (whose in-between points land on the true odd harmonics)
and off the octave below (whose harmonics land half-way between the true ones).
"""

from __future__ import annotations

import math

import torch

_HARMONICS = 12
_DECAY = 0.84  # Hermes' compression of higher harmonics
_STEPS_PER_OCTAVE = 48
_FINE_STEPS = 24  # refinement points within one coarse step either side
_PAD = 4
_FRAMES_USED = 6


def average_magnitude(x: torch.Tensor, frame: int) -> torch.Tensor:
    """Hann-windowed magnitude spectrum of each row of `x` (B, samples), averaged over adjacent
    frames of `frame` samples zero-padded to 4 x `frame` (so that linear interpolation between bins lands
    within a few cents of a peak), each row scaled to a peak of 1 and square-root compressed:
    (B, 2 * frame + 1)."""
    if x.shape[-1] < frame:
        x = torch.nn.functional.pad(x, (0, frame - x.shape[-1]))
    window = torch.hann_window(frame, dtype=x.dtype, device=x.device)
    frames = x.unfold(-1, frame, frame) * window  # (B, frames, frame)
    spec = torch.fft.rfft(frames, n=_PAD * frame, dim=-1).transpose(1, 2)
    mag = spec.abs().mean(dim=-1)
    mag = mag / mag.amax(dim=-1, keepdim=True).clamp_min(1e-12)
    return mag.sqrt()


def _at(mag: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """`mag` (B, n) linearly interpolated at fractional `bins` (B, C, K); 0 beyond the last bin."""
    n = mag.shape[-1]
    inside = bins <= n - 1
    b = bins.clamp(0, n - 1)
    lo = b.floor().long().clamp(max=n - 2)
    frac = b - lo.to(b.dtype)
    v_lo = torch.gather(mag, 1, lo.flatten(1)).view_as(b)
    v_hi = torch.gather(mag, 1, (lo + 1).flatten(1)).view_as(b)
    return torch.where(inside, v_lo + frac * (v_hi - v_lo), torch.zeros_like(b))


def _scores(mag: torch.Tensor, candidates: torch.Tensor, hz_per_bin: float) -> torch.Tensor:
    """Subharmonic-summation score (B, C) of candidate frequencies (B, C) in Hz."""
    k = torch.arange(1, _HARMONICS + 1, dtype=mag.dtype, device=mag.device)
    w = _DECAY ** (k - 1)
    on = _at(mag, candidates.unsqueeze(-1) * k / hz_per_bin)
    between = _at(mag, candidates.unsqueeze(-1) * (k - 0.5) / hz_per_bin)
    return ((on - between) * w).sum(-1)


@torch.no_grad()
def estimate_f0(
    x: torch.Tensor,
    sample_rate: int,
    f0_min: float = 40.0,
    f0_max: float = 1200.0,
    frame: int = 8192,
) -> torch.Tensor:
    """The fundamental (Hz) of each note in `x` (B, samples): a float tensor (B,).

    Searches f0_min..f0_max on a 1/48-octave grid, then refines around the best point. A note with
    no pitch (noise, silence) still gets the best-scoring candidate: callers that synthesise
    harmonics from it get a harmonic comb that their noise part must make up for.
    """
    if not 0 < f0_min < f0_max:
        raise ValueError(f"need 0 < f0_min < f0_max, got {f0_min} and {f0_max}")
    if f0_max * 2 > sample_rate:
        raise ValueError(f"f0_max {f0_max} Hz must be below half the sample rate {sample_rate}")
    # The first few frames hold the pitch; a decaying note's tail adds cost and little else.
    x = x.float()[..., : _FRAMES_USED * frame]
    mag = average_magnitude(x, frame)
    hz_per_bin = sample_rate / (_PAD * frame)
    octaves = math.log2(f0_max / f0_min)
    steps = torch.arange(
        int(math.floor(octaves * _STEPS_PER_OCTAVE)) + 1, dtype=x.dtype, device=x.device
    )
    coarse = (f0_min * 2.0 ** (steps / _STEPS_PER_OCTAVE)).expand(x.shape[0], -1)
    best = coarse.gather(1, _scores(mag, coarse, hz_per_bin).argmax(1, keepdim=True))
    offsets = torch.linspace(-1.0, 1.0, 2 * _FINE_STEPS + 1, dtype=x.dtype, device=x.device)
    fine = best * 2.0 ** (offsets / _STEPS_PER_OCTAVE)
    fine = fine.clamp(f0_min, f0_max)
    return fine.gather(1, _scores(mag, fine, hz_per_bin).argmax(1, keepdim=True)).squeeze(1)
