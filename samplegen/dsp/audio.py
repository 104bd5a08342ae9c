"""Audio in and out: read any soundfile format, resample, fit to the note length, write WAVs safely.

Every input the codec cannot use raises `AudioError` naming the file and the reason.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from samplegen.atomic import write_atomic
from samplegen.dsp.config import CodecConfig, ConfigError
from samplegen.dsp.errors import AudioError

WAV_SUBTYPES: tuple[str, ...] = ("PCM_16", "PCM_24", "FLOAT")

# Level where the soft limiter starts bending the curve; below it samples pass unchanged.
_LIMITER_KNEE = 0.9


# WAV format tags libsndfile decodes (PCM, float, ADPCM, A-law, mu-law, GSM, extensible).
_DECODABLE_WAV_TAGS = frozenset({0x0001, 0x0002, 0x0003, 0x0006, 0x0007, 0x0011, 0x0031, 0xFFFE})


def _wav_format_tag(head: bytes) -> int | None:
    """The format tag of a RIFF/WAVE header, or None when `head` is not a WAV with a fmt chunk."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 10 <= len(head):
        chunk, size = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        if chunk == b"fmt ":
            return int.from_bytes(head[pos + 8 : pos + 10], "little")
        pos += 8 + size + (size & 1)
    return None


def _open_error(name: str, exc: Exception, head: bytes) -> AudioError:
    detail = getattr(exc, "error_string", None) or str(exc) or type(exc).__name__
    tag = _wav_format_tag(head)
    if tag is not None and tag not in _DECODABLE_WAV_TAGS:
        return AudioError(name, "unsupported", f"WAV encoding 0x{tag:04X} cannot be decoded")
    if "unsupported" in detail.lower() or "not supported" in detail.lower():
        return AudioError(name, "unsupported", detail)
    return AudioError(name, "unreadable", detail)


def _head(source: Any) -> bytes:
    """The first bytes of a file or buffer, to explain a failure to open it."""
    try:
        if isinstance(source, io.BytesIO):
            return source.getvalue()[:4096]
        with open(source, "rb") as fh:
            return fh.read(4096)
    except OSError:
        return b""


def _read(source: Any, name: str, max_seconds: float | None) -> tuple[np.ndarray, int]:
    try:
        with sf.SoundFile(source) as f:
            sr = int(f.samplerate)
            frames = -1
            if max_seconds is not None and sr > 0:
                # A little extra so a resampler has context beyond the cut.
                frames = int(np.ceil(max_seconds * sr)) + 2048
            data = f.read(frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, EOFError) as exc:
        raise _open_error(name, exc, _head(source)) from exc
    if sr <= 0:
        raise AudioError(name, "unsupported", f"sample rate {sr} Hz")
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise AudioError(name, "empty", "the file holds no audio frames")
    # Mean over channels: stereo becomes (L+R)/2, any channel count works.
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if not np.isfinite(mono).all():
        raise AudioError(name, "non_finite", "the audio holds NaN or infinite samples")
    return mono, int(sr)


def read_audio(
    path: str | os.PathLike[str], max_seconds: float | None = None
) -> tuple[np.ndarray, int]:
    """Read any format soundfile reads and mix it down to mono.

    Returns ``(mono float32 samples, sample rate)``; integer formats are scaled to [-1, 1).
    With `max_seconds` only about that much of the start is decoded (long files stay cheap).
    Raises `AudioError` (unreadable, empty, non_finite, unsupported).
    """
    name = str(path)
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise AudioError(name, "unreadable", exc.strerror or str(exc)) from exc
    if p.is_dir():
        raise AudioError(name, "unreadable", "is a directory")
    if size == 0:
        raise AudioError(name, "empty", "zero-length file")
    return _read(name, name, max_seconds)


def decode_audio(
    data: bytes, name: str = "<bytes>", max_seconds: float | None = None
) -> tuple[np.ndarray, int]:
    """Decode an in-memory audio file (e.g. bytes from Ray Data's read_binary_files) to mono.

    `name` is used in error messages. Same result and errors as `read_audio`.
    """
    if len(data) == 0:
        raise AudioError(name, "empty", "zero-length file")
    return _read(io.BytesIO(data), name, max_seconds)


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample mono audio from `sr_in` to `sr_out` Hz with soxr (high quality); float32 out."""
    x = np.asarray(x, dtype=np.float32)
    if sr_in <= 0 or sr_out <= 0:
        raise ValueError(f"resample: sample rates must be positive, got {sr_in} -> {sr_out}")
    if sr_in == sr_out:
        return x.copy()
    return np.asarray(soxr.resample(x, sr_in, sr_out, quality="HQ"), dtype=np.float32)


def _fade_out(x: np.ndarray, n: int) -> None:
    """Half-cosine fade over the last `n` samples, in place."""
    if n <= 0:
        return
    n = min(n, x.shape[0])
    t = np.arange(1, n + 1, dtype=np.float64) / n
    x[-n:] *= (0.5 * (1.0 + np.cos(np.pi * t))).astype(np.float32)


def _as_mono(x: np.ndarray, name: str) -> np.ndarray:
    if x.ndim == 1:
        return x
    if x.ndim == 2:
        # Channels are always far fewer than samples for a usable note, so the short axis is the
        # channel axis whether the array came channels-first (Ray Data) or channels-last (soundfile).
        axis = 0 if x.shape[0] < x.shape[1] else 1
        return x.mean(axis=axis, dtype=np.float32)
    raise AudioError(name, "unsupported", f"expected 1-D or 2-D audio, got shape {x.shape}")


def prepare_wave(
    x: np.ndarray, sr: int, config: CodecConfig, name: str = ""
) -> tuple[np.ndarray, float]:
    """Turn decoded audio into one codec note: resample, trim or pad, normalise.

    Resamples to ``config.sample_rate``, trims to ``config.num_samples`` with a half-cosine fade-out
    of ``config.fade_s`` where the sound is cut (never when it is only padded), zero-pads shorter
    sounds, and divides by the largest absolute value. Returns ``(wave float32 (num_samples,),
    peak)`` where ``wave * peak`` is the fitted audio at its original level.
    Raises `AudioError` (empty, too_short, silent, non_finite, unsupported).
    """
    name = name or "<audio>"
    x = _as_mono(np.asarray(x, dtype=np.float32), name)
    if x.shape[0] == 0:
        raise AudioError(name, "empty", "no audio samples")
    if sr <= 0:
        raise AudioError(name, "unsupported", f"sample rate {sr} Hz")
    if not np.isfinite(x).all():
        raise AudioError(name, "non_finite", "the audio holds NaN or infinite samples")
    seconds = x.shape[0] / sr
    if seconds < config.min_duration:
        raise AudioError(
            name,
            "too_short",
            f"{seconds * 1000:.1f} ms long, the minimum is {config.min_duration * 1000:.1f} ms",
        )
    n = config.num_samples
    if sr != config.sample_rate:
        # Resampling a long file costs time: only the part we keep is needed, plus a filter
        # margin so that edge effects land beyond the cut.
        keep_in = int(np.ceil(n * sr / config.sample_rate)) + 1024
        x = resample(x[:keep_in], sr, config.sample_rate)
    if x.shape[0] > n:
        wave = x[:n].copy()
        _fade_out(wave, int(round(config.fade_s * config.sample_rate)))
    else:
        wave = np.zeros(n, dtype=np.float32)
        wave[: x.shape[0]] = x
    peak = float(np.max(np.abs(wave)))
    if not np.isfinite(peak):
        raise AudioError(name, "non_finite", "resampling produced non-finite samples")
    if peak <= config.silence_amplitude:
        level = "digital silence" if peak == 0 else f"peak {20 * np.log10(peak):.1f} dBFS"
        raise AudioError(
            name,
            "silent",
            f"{level} in the first {config.duration:g} s (threshold {config.silence_db:g} dBFS)",
        )
    wave /= np.float32(peak)
    return wave, peak


def load_wave(path: str | os.PathLike[str], config: CodecConfig) -> tuple[np.ndarray, float]:
    """`read_audio` then `prepare_wave`: one codec note and its original peak from a file."""
    x, sr = read_audio(path, max_seconds=config.duration)
    return prepare_wave(x, sr, config, name=str(path))


def soft_limit(x: np.ndarray, knee: float = _LIMITER_KNEE) -> np.ndarray:
    """Map any real signal into [-1, 1]: unchanged below `knee`, a tanh curve above it.

    The curve is continuous with slope 1 at the knee, so quiet parts are untouched and loud peaks
    bend smoothly instead of wrapping around or clipping hard.
    """
    x = np.asarray(x, dtype=np.float32)
    a = np.abs(x)
    over = a > knee
    if not over.any():
        return x.copy()
    span = 1.0 - knee
    out = x.copy()
    out[over] = np.sign(x[over]) * (knee + span * np.tanh((a[over] - knee) / span))
    return np.clip(out, -1.0, 1.0)


def write_wav(
    path: str | os.PathLike[str],
    wave: Any,
    sample_rate: int,
    subtype: str = "PCM_16",
    gain: float | None = None,
) -> Path:
    """Write mono (or (samples, channels)) audio, numpy or torch, as a WAV file, atomically.

    `subtype` is "PCM_16", "PCM_24" or "FLOAT". `gain` (e.g. the peak `prepare_wave` returned)
    multiplies the wave first to restore its level. Samples never wrap around: if anything exceeds
    full scale the whole signal goes through `soft_limit`. The file is written to a temporary name in
    the same folder and renamed into place. Returns the path.
    """
    if subtype not in WAV_SUBTYPES:
        raise ConfigError(f"subtype: {subtype!r} is not one of {', '.join(WAV_SUBTYPES)}")
    if sample_rate <= 0:
        raise ConfigError(f"sample_rate: must be positive, got {sample_rate}")
    target = Path(path)
    if hasattr(wave, "detach"):  # a torch tensor, possibly on a GPU
        wave = wave.detach().cpu().numpy()
    data = np.asarray(wave, dtype=np.float32)
    if gain is not None:
        data = data * np.float32(gain)
    if not np.isfinite(data).all():
        raise AudioError(str(target), "non_finite", "refusing to write NaN or infinite samples")
    if data.size and float(np.max(np.abs(data))) > 1.0:
        data = soft_limit(data)
    if subtype == "PCM_16":
        out: np.ndarray = np.round(np.clip(data, -1.0, 1.0) * 32767.0).astype(np.int16)
    elif subtype == "PCM_24":
        # soundfile takes int32 and keeps the top 24 bits.
        out = np.round(np.clip(data, -1.0, 1.0) * 8388607.0).astype(np.int32) << 8
    else:
        out = data
    return write_atomic(
        target, lambda tmp: sf.write(tmp, out, sample_rate, subtype=subtype, format="WAV")
    )
