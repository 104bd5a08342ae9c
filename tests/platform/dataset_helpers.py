"""Small real audio files for the dataset tests (written with soundfile, no mocks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from samplegen.dsp.config import CodecConfig

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
