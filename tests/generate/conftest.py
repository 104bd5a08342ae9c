"""Fixtures for generation tests: small real models, trained for a few steps and saved to disk.

The codec is shrunk (16 kHz, 0.5 s, n_fft 256) so a combined conv2d + VAE model trains in seconds;
the notes are synthetic harmonic tones with different pitches, brightness and decay, written as
real WAV files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import numpy as np
import pytest
import torch

from samplegen.dsp.config import CodecConfig

if TYPE_CHECKING:
    from samplegen.models.code_distribution import CodeDistribution

# harmonic_note's signature, for the tests that take the make_note fixture.
NoteMaker: TypeAlias = Callable[[float, float, float, int, int], np.ndarray]

SMALL_CODEC = CodecConfig(duration=0.5, sample_rate=16_000, n_fft=256, hop=128, fade_s=0.02)


@dataclass(frozen=True)
class TrainedModels:
    """Paths of the saved models and of the WAV notes they were trained on."""

    combined: Path
    outer: Path
    wavs: tuple[Path, ...]
    categories: tuple[str, ...]


def harmonic_note(freq: float, brightness: float, decay: float, sr: int, n: int) -> np.ndarray:
    """A decaying harmonic tone; `brightness` in (0, 1] sets how slowly partials fall off."""
    t = np.arange(n) / sr
    wave = np.zeros(n)
    for k in range(1, 9):
        if freq * k < sr / 2:
            wave += brightness ** (k - 1) * np.sin(2 * np.pi * freq * k * t + 0.3 * k)
    wave *= np.exp(-decay * t) * np.minimum(1.0, t / 0.005)
    return (wave / np.abs(wave).max()).astype(np.float32)


def _write_notes(folder: Path) -> tuple[list[Path], list[str]]:
    import soundfile as sf

    paths, cats = [], []
    sr, n = SMALL_CODEC.sample_rate, SMALL_CODEC.num_samples
    for i, freq in enumerate((131.0, 196.0, 262.0, 392.0, 523.0, 784.0)):
        for bright, decay, cat in ((0.3, 2.0, "flute"), (0.8, 6.0, "brass")):
            level = 0.2 + 0.1 * (i % 3)
            path = folder / f"{cat}_{i}_{int(freq)}.wav"
            sf.write(path, level * harmonic_note(freq, bright, decay, sr, n), sr, subtype="FLOAT")
            paths.append(path)
            cats.append(cat)
    return paths, cats


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory: pytest.TempPathFactory) -> TrainedModels:
    """A combined conv2d + VAE model (3 latents) and its outer auto-encoder, saved as directories."""
    from samplegen.dsp.audio import load_wave
    from samplegen.dsp.codec import encode_batch
    from samplegen.models.artifact import save_model
    from samplegen.models.combined import CombinedModel
    from samplegen.models.registry import build_model

    root = tmp_path_factory.mktemp("gen-models")
    (root / "notes").mkdir()
    wavs, cats = _write_notes(root / "notes")
    waves = np.stack([load_wave(p, SMALL_CODEC)[0] for p in wavs])
    x = torch.as_tensor(np.asarray(encode_batch(waves, SMALL_CODEC)))
    torch.manual_seed(0)
    model = build_model(
        "combined",
        {
            "outer": "conv2d_ae",
            "inner": "vae",
            "outer_hparams": {"layers": 5, "kernels": 4, "kernel_size": 4},
            "inner_hparams": {"latent": 3, "depth": 2, "beta": 0.05},
        },
        SMALL_CODEC.shape,
    )
    assert isinstance(model, CombinedModel)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for epoch in range(40):
        out = model(x)
        loss = model.loss(x, out, epoch=epoch)
        opt.zero_grad()
        loss.total.backward()
        opt.step()
    model.eval()
    combined = save_model(
        root / "combined", model, codec=SMALL_CODEC, metrics={"loss": float(loss.recon.detach())}
    )
    outer = save_model(root / "outer", model.outer, codec=SMALL_CODEC)
    return TrainedModels(combined, outer, tuple(wavs), tuple(cats))


@pytest.fixture(scope="session")
def small_codec() -> CodecConfig:
    """The shrunk codec the test models use."""
    return SMALL_CODEC


@pytest.fixture(scope="session")
def make_note() -> NoteMaker:
    """`harmonic_note(freq, brightness, decay, sr, n)` for tests that write their own notes."""
    return harmonic_note


@pytest.fixture(scope="session")
def fitted_model(
    trained_models: TrainedModels, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, CodeDistribution]:
    """A copy of the combined test model that stores the mixture of its notes' codes, and that
    mixture (samplegen.models.code_distribution)."""
    from samplegen.dsp.audio import load_wave
    from samplegen.dsp.codec import encode_batch
    from samplegen.models.artifact import load_model, save_model
    from samplegen.models.code_distribution import CODE_DISTRIBUTION_KEY, fit_model_codes

    loaded = load_model(trained_models.combined)
    waves = np.stack([load_wave(p, loaded.codec)[0] for p in trained_models.wavs])
    x = np.asarray(encode_batch(waves, loaded.codec), dtype=np.float32)
    fitted = fit_model_codes(loaded.model, x, "the 12 test notes")
    assert fitted is not None
    root = tmp_path_factory.mktemp("fitted")
    extra = {CODE_DISTRIBUTION_KEY: fitted.to_dict()}
    return save_model(root / "fitted", loaded.model, codec=loaded.codec, extra=extra), fitted
