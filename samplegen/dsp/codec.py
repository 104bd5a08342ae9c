"""The two model-input representations of a note and their inverses.

- "stft": complex STFT divided by its largest magnitude (peak bin = 1), magnitudes below the
  ``floor_db`` floor set to zero, mu-law -> float32 (bins, frames) in [0, 1].
- "wave": mu-law on the peak-normalised waveform -> float32 (samples,) in [-1, 1].

Functions take numpy arrays or torch tensors and return the same kind they were given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch

from samplegen.dsp.config import CodecConfig
from samplegen.dsp.griffin_lim import griffin_lim, stft

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

# Waves are encoded in chunks so a 1,000-note batch never holds all complex STFTs at once.
_CHUNK = 64


def mu_law(x: ArrayT, mu: float) -> ArrayT:
    """Mu-law compression ``sign(x) ln(1 + mu|x|) / ln(1 + mu)`` of x clamped to [-1, 1]."""
    scale = float(np.log1p(mu))
    if isinstance(x, torch.Tensor):
        c = x.clamp(-1.0, 1.0)
        return torch.sign(c) * torch.log1p(mu * c.abs()) / scale
    a = np.asarray(x)
    dtype = a.dtype if np.issubdtype(a.dtype, np.floating) else np.float64
    c = np.clip(a.astype(dtype, copy=False), -1.0, 1.0)
    return (np.sign(c) * np.log1p(mu * np.abs(c)) / scale).astype(dtype, copy=False)


def inverse_mu_law(y: ArrayT, mu: float) -> ArrayT:
    """Exact inverse of `mu_law`: ``sign(y) ((1 + mu)^|y| - 1) / mu`` of y clamped to [-1, 1]."""
    scale = float(np.log1p(mu))
    if isinstance(y, torch.Tensor):
        c = y.clamp(-1.0, 1.0)
        return torch.sign(c) * torch.expm1(c.abs() * scale) / mu
    a = np.asarray(y)
    dtype = a.dtype if np.issubdtype(a.dtype, np.floating) else np.float64
    c = np.clip(a.astype(dtype, copy=False), -1.0, 1.0)
    return (np.sign(c) * np.expm1(np.abs(c) * scale) / mu).astype(dtype, copy=False)


def _check_waves(waves: torch.Tensor, config: CodecConfig) -> None:
    if waves.ndim != 2 or waves.shape[1] != config.num_samples:
        raise ValueError(
            f"encode: expected waves of {config.num_samples} samples "
            f"(duration {config.duration:g} s at {config.sample_rate} Hz), got shape "
            f"{tuple(waves.shape)}; fit audio with samplegen.dsp.audio.prepare_wave first"
        )


def _normalise_peak(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    peak = x.abs().amax(dim=dims, keepdim=True)
    # An all-zero item stays all zero instead of becoming NaN.
    return x / torch.where(peak > 0, peak, torch.ones_like(peak))


def _encode_torch(waves: torch.Tensor, config: CodecConfig) -> torch.Tensor:
    waves = waves.to(torch.float32)
    if config.representation == "wave":
        return mu_law(_normalise_peak(waves, (-1,)), config.mu)
    out = torch.empty((waves.shape[0], *config.shape), dtype=torch.float32, device=waves.device)
    floor = config.floor_amplitude
    for start in range(0, waves.shape[0], _CHUNK):
        mag = stft(waves[start : start + _CHUNK], config).abs()
        mag = _normalise_peak(mag, (-2, -1))
        mag = torch.where(mag < floor, torch.zeros_like(mag), mag)
        out[start : start + _CHUNK] = mu_law(mag, config.mu)
    return out


def encode_batch(waves: ArrayT, config: CodecConfig) -> ArrayT:
    """Encode (N, num_samples) prepared waves -> float32 (N, *config.shape)."""
    if isinstance(waves, torch.Tensor):
        _check_waves(waves, config)
        with torch.no_grad():
            return _encode_torch(waves, config)
    t = torch.from_numpy(np.ascontiguousarray(waves, dtype=np.float32))
    _check_waves(t, config)
    with torch.no_grad():
        return _encode_torch(t, config).numpy()


def encode(wave: ArrayT, config: CodecConfig) -> ArrayT:
    """Encode one prepared wave (num_samples,) -> float32 of ``config.shape``."""
    return encode_batch(wave[None], config)[0]


def magnitude(encoded: ArrayT, config: CodecConfig) -> ArrayT:
    """Linear STFT magnitude (peak 1 for exact encodings) from mu-law STFT values.

    Values are clamped to [0, 1], mu-law is inverted, and the encoder's floor is applied again so
    that small model errors do not turn into broadband hiss. Any leading batch axes are kept.
    """
    if config.representation != "stft":
        raise ValueError(
            f"magnitude: the codec representation is {config.representation!r}, not 'stft'"
        )
    floor = config.floor_amplitude
    if isinstance(encoded, torch.Tensor):
        lin = inverse_mu_law(encoded.to(torch.float32).clamp(0.0, 1.0), config.mu)
        return torch.where(lin < floor, torch.zeros_like(lin), lin)
    lin = inverse_mu_law(np.clip(np.asarray(encoded, dtype=np.float32), 0.0, 1.0), config.mu)
    return np.where(lin < floor, np.float32(0.0), lin).astype(np.float32)


def decode_batch(
    encoded: ArrayT,
    config: CodecConfig,
    n_iter: int = 64,
    seed: int = 0,
    device: str | torch.device | None = None,
    normalize: bool = True,
    batch_size: int = 16,
) -> ArrayT:
    """Decode (N, *config.shape) model outputs -> float32 audio (N, num_samples).

    "stft": Griffin-Lim (`n_iter` iterations, item i seeded with ``seed + i``, on `device`, in
    batches of `batch_size`). "wave": values clamped to [-1, 1] and mu-law inverted.
    With `normalize` each note is divided by its largest absolute value, like `prepare_wave`'s
    output, so `write_wav(..., gain=peak)` restores the original level.
    """
    x = (
        encoded
        if isinstance(encoded, torch.Tensor)
        else torch.from_numpy(np.asarray(encoded, dtype=np.float32))
    )
    if x.ndim != 1 + len(config.shape) or tuple(x.shape[1:]) != config.shape:
        raise ValueError(f"decode: expected (N, {config.shape}) values, got {tuple(x.shape)}")
    x = x.to(torch.float32)
    if config.representation == "wave":
        out = inverse_mu_law(x.clamp(-1.0, 1.0), config.mu)
    else:
        if device is None:
            device = x.device
        parts: list[torch.Tensor] = []
        for start in range(0, x.shape[0], batch_size):
            mag = magnitude(x[start : start + batch_size], config)
            seeds: Sequence[int] = [seed + start + i for i in range(mag.shape[0])]
            parts.append(griffin_lim(mag, config, n_iter=n_iter, seed=seeds, device=device))
        out = (
            torch.cat(parts)
            if parts
            else torch.zeros((0, config.num_samples), dtype=torch.float32, device=device)
        )
    if normalize:
        out = _normalise_peak(out, (-1,))
    if isinstance(encoded, torch.Tensor):
        return out
    return out.detach().cpu().numpy()


def decode(
    encoded: ArrayT,
    config: CodecConfig,
    n_iter: int = 64,
    seed: int = 0,
    device: str | torch.device | None = None,
    normalize: bool = True,
) -> ArrayT:
    """Decode one encoded note (``config.shape``) -> float32 audio (num_samples,).

    See `decode_batch`; the same seed gives the same audio as item 0 of a batch.
    """
    return decode_batch(
        encoded[None], config, n_iter=n_iter, seed=seed, device=device, normalize=normalize
    )[0]
