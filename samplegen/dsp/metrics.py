"""Every quality measure in one place, on numpy arrays or torch tensors.

- `sample_loss`: the original project's loss, the per-sample sum of squared errors in the encoded
  (mu-law) domain; `rms_percent` turns it into RMS% = 100 sqrt(loss / values_per_sample).
- `spectral_convergence_db`, `log_spectral_distance_db`: on magnitude spectrograms.
- `multi_resolution_stft_distance`: on audio, several FFT sizes.

Numpy in gives numpy out (a float for a single item), torch in gives torch out (differentiable).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

# Keeps ratios and logarithms finite on all-zero inputs.
_EPS = 1e-12


def _as_tensor(x: Any) -> tuple[torch.Tensor, bool]:
    if isinstance(x, torch.Tensor):
        return x, False
    a = np.asarray(x)
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
    return torch.from_numpy(np.ascontiguousarray(a)), True


def _out(t: torch.Tensor, was_numpy: bool) -> Any:
    if not was_numpy:
        return t
    a = t.detach().cpu().numpy()
    return float(a) if a.ndim == 0 else a


def _pair(pred: Any, target: Any, what: str) -> tuple[torch.Tensor, torch.Tensor, bool]:
    p, p_np = _as_tensor(pred)
    t, t_np = _as_tensor(target)
    if p.shape != t.shape:
        raise ValueError(f"{what}: shapes differ, {tuple(p.shape)} vs {tuple(t.shape)}")
    dtype = torch.promote_types(p.dtype, t.dtype)
    return p.to(dtype), t.to(device=p.device, dtype=dtype), p_np and t_np


def sample_loss(pred: Any, target: Any) -> Any:
    """Per-sample sum of squared errors: (N, ...) -> (N,). The first axis is the batch.

    The original project's loss is the batch mean of this, in the encoded (mu-law) domain.
    """
    p, t, np_out = _pair(pred, target, "sample_loss")
    if p.ndim < 1:
        raise ValueError("sample_loss: expected a batch axis, got a scalar")
    diff = (p - t).reshape(p.shape[0], -1)
    return _out((diff * diff).sum(dim=1), np_out)


def rms_percent(loss: Any, values_per_sample: int) -> Any:
    """RMS error in percent of full scale from a per-sample SSE: 100 sqrt(loss / n)."""
    if values_per_sample <= 0:
        raise ValueError(f"values_per_sample: must be positive, got {values_per_sample}")
    if isinstance(loss, torch.Tensor):
        return 100.0 * torch.sqrt(loss.clamp_min(0) / values_per_sample)
    if isinstance(loss, np.ndarray):
        return 100.0 * np.sqrt(np.maximum(loss, 0) / values_per_sample)
    return 100.0 * math.sqrt(max(float(loss), 0.0) / values_per_sample)


def _norm2(x: torch.Tensor) -> torch.Tensor:
    return torch.sqrt((x * x).sum(dim=(-2, -1)))


def spectral_convergence_db(estimate: Any, reference: Any) -> Any:
    """20 log10(||S_est - S_ref||_F / ||S_ref||_F) over the last two axes (bins, frames).

    Inputs are magnitude spectrograms (..., bins, frames); lower is better (-20 dB = 10% error).
    """
    e, r, np_out = _pair(estimate, reference, "spectral_convergence_db")
    ratio = _norm2(e - r) / (_norm2(r) + _EPS)
    return _out(20.0 * torch.log10(ratio + _EPS), np_out)


def log_spectral_distance_db(estimate: Any, reference: Any, floor_db: float = -80.0) -> Any:
    """Log-spectral distance in dB over the last two axes (bins, frames) of magnitude spectrograms.

    Per frame the RMS over bins of 20 log10(S_est / S_ref), averaged over frames. Both are floored
    at `floor_db` below the reference peak so silent bins do not dominate.
    """
    e, r, np_out = _pair(estimate, reference, "log_spectral_distance_db")
    peak = r.abs().amax(dim=(-2, -1), keepdim=True)
    floor = peak * 10.0 ** (floor_db / 20.0) + _EPS
    diff = 20.0 * (
        torch.log10(torch.maximum(e.abs(), floor)) - torch.log10(torch.maximum(r.abs(), floor))
    )
    per_frame = torch.sqrt((diff * diff).mean(dim=-2))
    return _out(per_frame.mean(dim=-1), np_out)


def _magnitudes(x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    lead = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1])
    window = torch.hann_window(n_fft, periodic=True, dtype=flat.dtype, device=flat.device)
    spec = torch.stft(flat, n_fft, hop_length=hop, window=window, center=True, return_complex=True)
    mag = spec.abs()
    return mag.reshape(*lead, *mag.shape[-2:])


def multi_resolution_stft_distance(
    estimate: Any,
    reference: Any,
    fft_sizes: Sequence[int] = (512, 1024, 2048),
    hop_fraction: float = 0.25,
) -> Any:
    """Multi-resolution STFT distance between audio signals (..., samples).

    For each FFT size (Hann window, hop = size * `hop_fraction`): linear spectral convergence
    ||S_est - S_ref||_F / ||S_ref||_F plus the mean absolute difference of log magnitudes; the result
    is the average over sizes (0 for identical audio). Differentiable on torch inputs.
    """
    e, r, np_out = _pair(estimate, reference, "multi_resolution_stft_distance")
    if not e.is_floating_point():
        e, r = e.float(), r.float()
    if not fft_sizes:
        raise ValueError("fft_sizes: give at least one FFT size")
    total = torch.zeros(e.shape[:-1], dtype=e.dtype, device=e.device)
    for n_fft in fft_sizes:
        hop = max(1, int(n_fft * hop_fraction))
        se, sr = _magnitudes(e, n_fft, hop), _magnitudes(r, n_fft, hop)
        sc = _norm2(se - sr) / (_norm2(sr) + _EPS)
        log_l1 = (torch.log(se + 1e-7) - torch.log(sr + 1e-7)).abs().mean(dim=(-2, -1))
        total = total + sc + log_l1
    return _out(total / len(fft_sizes), np_out)
