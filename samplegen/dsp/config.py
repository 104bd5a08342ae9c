"""The codec configuration: the one place that defines every audio and representation default.

A `CodecConfig` is stored with every dataset and every model, so that a model can refuse data
encoded differently from what it was trained on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from samplegen.errors import SamplegenError

Representation = Literal["stft", "wave"]
REPRESENTATIONS: tuple[str, ...] = ("stft", "wave")


class ConfigError(SamplegenError, ValueError):
    """A setting has a value samplegen cannot use; the message names the setting."""


@dataclass(frozen=True)
class CodecConfig:
    """How audio becomes model input and back.

    Defaults follow the original project (2 s at 44.1 kHz, STFT 2048/1024 Hann centred, -70 dB floor,
    mu-law with mu = 8), with its bugs fixed.
    """

    representation: str = "stft"
    sample_rate: int = 44_100
    duration: float = 2.0
    n_fft: int = 2048
    hop: int = 1024
    center: bool = True
    floor_db: float = -70.0
    mu: float = 8.0
    fade_s: float = 0.05
    # Inputs shorter than this (in seconds, at their own rate) are rejected as too short.
    min_duration: float = 0.02
    # A kept note whose peak is at or below this level (dBFS) is rejected as silent.
    silence_db: float = -100.0

    def __post_init__(self) -> None:
        if self.representation not in REPRESENTATIONS:
            raise ConfigError(
                f"representation: {self.representation!r} is not one of {', '.join(REPRESENTATIONS)}"
            )
        if self.sample_rate <= 0:
            raise ConfigError(f"sample_rate: must be positive, got {self.sample_rate}")
        if not 0.05 <= self.duration <= 60.0:
            raise ConfigError(f"duration: must be between 0.05 and 60 s, got {self.duration}")
        if self.n_fft < 16 or self.n_fft & (self.n_fft - 1):
            raise ConfigError(f"n_fft: must be a power of two >= 16, got {self.n_fft}")
        if not 0 < self.hop <= self.n_fft:
            raise ConfigError(f"hop: must be in (0, n_fft], got {self.hop}")
        if not self.mu > 0:
            raise ConfigError(f"mu: must be positive, got {self.mu}")
        # `not x < 0`: NaN would pass `x >= 0` unnoticed.
        if not self.floor_db < 0:
            raise ConfigError(f"floor_db: must be negative, got {self.floor_db}")
        if not 0 <= self.fade_s < self.duration:
            raise ConfigError(f"fade_s: must be in [0, duration), got {self.fade_s}")
        if not 0 <= self.min_duration <= self.duration:
            raise ConfigError(f"min_duration: must be in [0, duration], got {self.min_duration}")
        if not self.silence_db < 0:
            raise ConfigError(f"silence_db: must be negative, got {self.silence_db}")
        if not self.center and self.num_samples < self.n_fft:
            raise ConfigError(
                f"n_fft: {self.n_fft} is longer than a note ({self.num_samples} samples) and "
                "center is off, so no STFT frame fits"
            )

    @property
    def num_samples(self) -> int:
        """Audio samples per note after trimming or padding."""
        return int(round(self.duration * self.sample_rate))

    @property
    def num_bins(self) -> int:
        """Frequency bins of the one-sided STFT."""
        return self.n_fft // 2 + 1

    @property
    def num_frames(self) -> int:
        """STFT frames per note (torch.stft's count for a centred transform)."""
        if self.center:
            return 1 + self.num_samples // self.hop
        return 1 + (self.num_samples - self.n_fft) // self.hop

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one encoded sample: (bins, frames) for stft, (samples,) for wave."""
        if self.representation == "stft":
            return (self.num_bins, self.num_frames)
        return (self.num_samples,)

    @property
    def values_per_sample(self) -> int:
        """Number of model-input values per sample (the RMS% denominator)."""
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def floor_amplitude(self) -> float:
        """Linear magnitude below which STFT values are set to zero."""
        return float(10.0 ** (self.floor_db / 20.0))

    @property
    def silence_amplitude(self) -> float:
        """Linear peak at or below which a note counts as silent."""
        return float(10.0 ** (self.silence_db / 20.0))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every setting."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CodecConfig:
        """Build from a dict, rejecting unknown keys with a message naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"codec settings: unknown key(s) {', '.join(unknown)}")
        return cls(**data)

    def fingerprint(self) -> str:
        """Short stable hash of every setting."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def replace(self, **changes: Any) -> CodecConfig:
        """A copy with some settings changed (validated)."""
        return dataclasses.replace(self, **changes)

    def check_compatible(self, other: CodecConfig, what: str = "dataset") -> None:
        """Raise ConfigError naming every setting that differs between self and `other`."""
        mine, theirs = self.to_dict(), other.to_dict()
        diffs = [
            f"{k}: model {mine[k]!r} != {what} {theirs[k]!r}" for k in mine if mine[k] != theirs[k]
        ]
        if diffs:
            raise ConfigError(
                f"codec settings differ between the model and the {what} ({'; '.join(diffs)})"
            )
