"""The codec's STFT pair and phase recovery by fast Griffin-Lim (Perraudin, Balazs and Sondergaard,
"A fast Griffin-Lim algorithm", WASPAA 2013), batched on torch, seeded, on any device.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from samplegen.dsp.config import CodecConfig

# Guards the phase normalisation c / |c| where a bin is exactly zero.
_EPS = 1e-12


def _window(config: CodecConfig, device: torch.device | str, dtype: torch.dtype) -> torch.Tensor:
    return torch.hann_window(config.n_fft, periodic=True, device=device, dtype=dtype)


def stft(x: torch.Tensor, config: CodecConfig) -> torch.Tensor:
    """Complex STFT of (..., samples) audio with the codec's settings -> (..., bins, frames).

    Centred frames are zero-padded at both ends, so a note's attack is not mirrored into frame 0.
    """
    lead = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1])
    spec = torch.stft(
        flat,
        n_fft=config.n_fft,
        hop_length=config.hop,
        win_length=config.n_fft,
        window=_window(config, flat.device, flat.dtype),
        center=config.center,
        pad_mode="constant",
        return_complex=True,
    )
    return spec.reshape(*lead, *spec.shape[-2:])


def output_length(config: CodecConfig, frames: int) -> int:
    """Audio samples recovered from `frames` STFT frames (config.num_samples for a full note)."""
    if frames == config.num_frames:
        return config.num_samples
    if config.center:
        return config.hop * (frames - 1)
    return config.n_fft + config.hop * (frames - 1)


def istft(spec: torch.Tensor, config: CodecConfig, length: int | None = None) -> torch.Tensor:
    """Inverse of `stft` (least-squares overlap-add): (..., bins, frames) -> (..., samples)."""
    lead = spec.shape[:-2]
    flat = spec.reshape(-1, *spec.shape[-2:])
    if length is None:
        length = output_length(config, flat.shape[-1])
    real_dtype = flat.real.dtype
    wave = torch.istft(
        flat,
        n_fft=config.n_fft,
        hop_length=config.hop,
        win_length=config.n_fft,
        window=_window(config, flat.device, real_dtype),
        center=config.center,
        length=length,
    )
    return wave.reshape(*lead, wave.shape[-1])


def _initial_phase(
    batch: int, shape: tuple[int, int], seeds: Sequence[int], device: torch.device
) -> torch.Tensor:
    """Unit phasors with uniform random angles, one CPU generator per item.

    Drawn on the CPU so a given seed gives the same start on every device, and per item so an item's
    result does not depend on the batch it was decoded in.
    """
    angles = torch.empty((batch, *shape), dtype=torch.float32)
    gen = torch.Generator(device="cpu")
    for i, s in enumerate(seeds):
        gen.manual_seed(int(s))
        angles[i] = torch.rand(shape, generator=gen, dtype=torch.float32) * (2.0 * np.pi)
    return torch.polar(torch.ones_like(angles), angles).to(device)


def griffin_lim(
    magnitude: torch.Tensor | np.ndarray,
    config: CodecConfig,
    n_iter: int = 64,
    momentum: float = 0.99,
    seed: int | Sequence[int] = 0,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Recover audio from linear STFT magnitudes by fast Griffin-Lim.

    `magnitude` is (B, bins, frames) or (bins, frames), torch or numpy, linear (not mu-law).
    Each iteration projects onto consistent spectrograms (istft then stft), keeps the phase and
    accelerates with `momentum` (0 gives classic Griffin-Lim). Item i starts from a random phase
    drawn with seed ``seed + i`` (or ``seed[i]`` when a sequence is given). `device` defaults to the
    input tensor's device (CPU for numpy). Returns float32 audio on that device, (B, samples) or
    (samples,) to match the input, ``samples = config.num_samples`` for full-length notes.
    """
    if n_iter < 0:
        raise ValueError(f"n_iter: must be >= 0, got {n_iter}")
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum: must be in [0, 1], got {momentum}")
    mag = torch.as_tensor(magnitude)
    if device is None:
        device = mag.device
    device = torch.device(device)
    single = mag.ndim == 2
    if single:
        mag = mag.unsqueeze(0)
    if mag.ndim != 3 or mag.shape[1] != config.num_bins:
        raise ValueError(
            f"griffin_lim: expected (B, {config.num_bins}, frames) magnitudes, got {tuple(mag.shape)}"
        )
    mag = mag.to(device=device, dtype=torch.float32)
    batch, bins, frames = mag.shape
    if isinstance(seed, int):
        seeds: Sequence[int] = [seed + i for i in range(batch)]
    else:
        seeds = list(seed)
        if len(seeds) != batch:
            raise ValueError(f"seed: got {len(seeds)} seeds for a batch of {batch}")
    length = output_length(config, frames)
    phase = _initial_phase(batch, (bins, frames), seeds, device)
    previous: torch.Tensor | None = None
    with torch.no_grad():
        for _ in range(n_iter):
            projected = stft(istft(mag * phase, config, length), config)
            if previous is None or momentum == 0.0:
                accelerated = projected
            else:
                accelerated = projected + momentum * (projected - previous)
            previous = projected
            phase = accelerated / (accelerated.abs() + _EPS)
        wave = istft(mag * phase, config, length)
    return wave[0] if single else wave
