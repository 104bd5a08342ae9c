"""Fast Griffin-Lim on a known harmonic note: convergence, seeding, batching, devices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samplegen.dsp.config import CodecConfig
from samplegen.dsp.griffin_lim import griffin_lim, istft, stft
from samplegen.dsp.metrics import spectral_convergence_db

CONFIG = CodecConfig()
SMALL = CodecConfig(duration=0.1, n_fft=256, hop=128, fade_s=0.01)


def harmonic_note(config: CodecConfig, f0: float = 261.63) -> torch.Tensor:
    """A decaying sum of eight harmonics, like a plucked or struck C4."""
    t = torch.arange(config.num_samples, dtype=torch.float64) / config.sample_rate
    x = sum(torch.sin(2 * torch.pi * f0 * k * t) / k for k in range(1, 9)) * torch.exp(-3 * t)
    return (x / x.abs().max()).float()


def test_stft_pair_round_trip() -> None:
    x = harmonic_note(CONFIG)
    spec = stft(x, CONFIG)
    assert spec.shape == (CONFIG.num_bins, CONFIG.num_frames) == (1025, 87)
    np.testing.assert_allclose(istft(spec, CONFIG).numpy(), x.numpy(), atol=1e-5)


def test_converges_on_exact_magnitudes() -> None:
    mag = stft(harmonic_note(CONFIG), CONFIG).abs()
    out = griffin_lim(mag, CONFIG, n_iter=64, seed=0)
    assert out.shape == (CONFIG.num_samples,) and out.dtype == torch.float32
    sc = spectral_convergence_db(stft(out, CONFIG).abs(), mag)
    assert sc < -15.0, f"spectral convergence {sc:.1f} dB after 64 iterations"
    # More iterations help, and momentum beats the classic algorithm at the same count.
    few = spectral_convergence_db(stft(griffin_lim(mag, CONFIG, n_iter=4), CONFIG).abs(), mag)
    classic = griffin_lim(mag, CONFIG, n_iter=64, momentum=0.0)
    sc_classic = spectral_convergence_db(stft(classic, CONFIG).abs(), mag)
    assert sc < few and sc < sc_classic


def test_batched_seeded_and_numpy_input() -> None:
    mags = torch.stack([stft(harmonic_note(SMALL, f), SMALL).abs() for f in (200.0, 400.0, 800.0)])
    out = griffin_lim(mags, SMALL, n_iter=10, seed=7)
    assert out.shape == (3, SMALL.num_samples)
    again = griffin_lim(mags.numpy(), SMALL, n_iter=10, seed=7, device="cpu")
    torch.testing.assert_close(out, again)
    # Item i uses seed + i: decoding item 1 alone with seed 8 matches.
    torch.testing.assert_close(griffin_lim(mags[1], SMALL, n_iter=10, seed=8), out[1])
    torch.testing.assert_close(griffin_lim(mags, SMALL, n_iter=10, seed=[7, 8, 9]), out)
    assert not torch.allclose(griffin_lim(mags, SMALL, n_iter=10, seed=1), out)


def test_zero_iterations_and_silence() -> None:
    mags = torch.zeros(2, SMALL.num_bins, SMALL.num_frames)
    out = griffin_lim(mags, SMALL, n_iter=5)
    assert torch.all(out == 0)
    assert griffin_lim(mags, SMALL, n_iter=0).shape == (2, SMALL.num_samples)


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="expected"):
        griffin_lim(torch.zeros(2, 10, 5), SMALL)
    with pytest.raises(ValueError, match="n_iter"):
        griffin_lim(torch.zeros(SMALL.num_bins, 5), SMALL, n_iter=-1)
    with pytest.raises(ValueError, match="seed"):
        griffin_lim(torch.zeros(2, SMALL.num_bins, 5), SMALL, seed=[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    mag = stft(harmonic_note(SMALL), SMALL).abs()
    cpu = griffin_lim(mag, SMALL, n_iter=16, seed=3, device="cpu")
    gpu = griffin_lim(mag, SMALL, n_iter=16, seed=3, device="cuda")
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-3, rtol=1e-3)
