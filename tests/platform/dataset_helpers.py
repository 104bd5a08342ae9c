"""Small real audio files for the dataset tests (written with soundfile, no mocks)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from samplegen.dsp.config import CodecConfig
from samplegen.platform.datasets import load_dataset

# A short codec so that tests encode quickly: 0.25 s at 8 kHz, STFT 256/128.
SMALL = CodecConfig(sample_rate=8000, duration=0.25, n_fft=256, hop=128, fade_s=0.01)


def midi_hz(midi: int) -> float:
    return 440.0 * 2.0 ** ((midi - 69) / 12.0)


def tone(
    midi: int,
    seconds: float = 0.4,
    sr: int = 16000,
    harmonics: int = 4,
    seed: int = 0,
    amplitude: float = 0.5,
) -> np.ndarray:
    """A decaying harmonic tone at `midi` (deterministic per seed)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = midi_hz(midi)
    weights = rng.uniform(0.2, 1.0, harmonics) / np.arange(1, harmonics + 1)
    weights[0] = 1.0
    x = sum(w * np.sin(2 * np.pi * f0 * (k + 1) * t) for k, w in enumerate(weights))
    x = x * np.exp(-t * rng.uniform(1.0, 4.0))
    return (amplitude * x / np.max(np.abs(x))).astype(np.float32)


def write_tone(path: Path, midi: int, seed: int = 0, sr: int = 16000, channels: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = tone(midi, sr=sr, seed=seed)
    if channels > 1:
        x = np.stack([x] * channels, axis=1)
    sf.write(path, x, sr, subtype="PCM_16")
    return path


def instrument_folder(
    root: Path, instruments: int = 10, notes: tuple[str, ...] = ("C3", "C4", "C5")
) -> list[Path]:
    """`instruments` instrument names x `notes`, named like ``Flute 3_C4_v100.wav``."""
    names = [
        "Flute",
        "Brass",
        "Organ",
        "Piano",
        "Violin",
        "Guitar",
        "Bell",
        "Synth Lead",
        "Pad",
        "Bass",
    ]
    midi = {"C3": 48, "C4": 60, "C5": 72, "A3": 57}
    paths = []
    for i in range(instruments):
        inst = f"{names[i % len(names)]} {i}"
        for j, note in enumerate(notes):
            paths.append(write_tone(root / f"{inst}_{note}_v100.wav", midi[note], seed=i * 10 + j))
    return paths


def age_files(folder: Path, seconds: float = 60.0) -> None:
    """Date every file under `folder` `seconds` back: a file modified just before a build's
    listing is scanned again by the next build (samplegen.platform.prepare_cache.SETTLE_NS)."""
    then = time.time_ns() - int(seconds * 1e9)
    for path in folder.rglob("*"):
        os.utime(path, ns=(then, then))


def assert_same_dataset(a: Path, b: Path) -> None:
    """The datasets at `a` and `b` hold the same rows and tensors, split by split."""
    first, second = load_dataset(a), load_dataset(b)
    for name, split in first.splits.items():
        other = second.splits[name]
        assert split.meta == other.meta, name
        np.testing.assert_array_equal(split.x, other.x)
