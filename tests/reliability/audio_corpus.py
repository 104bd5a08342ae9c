"""A corpus of broken and unusual audio files, generated at test time (nothing binary is committed).

`build_corpus(folder)` writes every file and returns what `samplegen data prepare` must make of
each: `Expect("kept")`, or `Expect("rejected", reasons)` with the reasons the report may give.
Every name carries a note (C3/C4/C5), so the note filter keeps them all in play, and every good
file has its own content (no duplicates unless a case says so).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

MIDI = {"C3": 48, "C4": 60, "C5": 72}


@dataclass(frozen=True)
class Expect:
    """What the dataset report must say about one file."""

    status: str  # kept | rejected
    reasons: frozenset[str] = frozenset()


KEPT = Expect("kept")


def rejected(*reasons: str) -> Expect:
    """A file that must be rejected with one of `reasons`."""
    return Expect("rejected", frozenset(reasons))


def tone(
    note: str, seconds: float, sr: int, seed: int, amplitude: float = 0.5, channels: int = 1
) -> np.ndarray:
    """A decaying harmonic tone (float32; (n,) or (n, channels)), different for every seed."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sr))) / sr
    f0 = 440.0 * 2.0 ** ((MIDI[note] - 69) / 12.0)
    x = np.zeros_like(t)
    for k in range(1, 5):
        if f0 * k < sr / 2:
            x += rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6))
    x *= np.exp(-t * rng.uniform(1.0, 3.0))
    x = (amplitude * x / np.max(np.abs(x))).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def _sf_bytes(data: np.ndarray, sr: int, fmt: str, subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, data, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def _wav_with_format_tag(tag: int, frames: bytes = b"\0" * 400) -> bytes:
    """A RIFF/WAVE file whose fmt chunk names encoding `tag` (e.g. one libsndfile cannot decode)."""
    fmt = struct.pack("<HHIIHH", tag, 1, 8000, 8000, 1, 8)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(frames)) + frames
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _wav_rate_zero() -> bytes:
    data = bytearray(_sf_bytes(tone("C4", 0.3, 8000, 0), 8000, "WAV", "PCM_16"))
    data[24:28] = struct.pack("<I", 0)  # sample rate field of the canonical header
    data[28:32] = struct.pack("<I", 0)  # byte rate
    return bytes(data)


def _cases() -> dict[str, tuple[Callable[[], bytes], Expect]]:
    sr = 16000
    good = {
        "Pcm16 1_C4.wav": (lambda: _sf_bytes(tone("C4", 0.4, sr, 1), sr, "WAV", "PCM_16"), KEPT),
        "Pcm24 2_C4.wav": (lambda: _sf_bytes(tone("C4", 0.4, sr, 2), sr, "WAV", "PCM_24"), KEPT),
        "Pcm32 3_C4.wav": (lambda: _sf_bytes(tone("C4", 0.4, sr, 3), sr, "WAV", "PCM_32"), KEPT),
        "Eightbit 4_C4.wav": (lambda: _sf_bytes(tone("C4", 0.4, sr, 4), sr, "WAV", "PCM_U8"), KEPT),
        "Float 5_C4.wav": (lambda: _sf_bytes(tone("C4", 0.4, sr, 5), sr, "WAV", "FLOAT"), KEPT),
        "Double 6_C4.wav": (lambda: _sf_bytes(tone("C4", 0.4, sr, 6), sr, "WAV", "DOUBLE"), KEPT),
        "Stereo 7_C3.wav": (
            lambda: _sf_bytes(tone("C3", 0.4, sr, 7, channels=2), sr, "WAV", "PCM_16"),
            KEPT,
        ),
        "Sixchannel 8_C3.wav": (
            lambda: _sf_bytes(tone("C3", 0.4, sr, 8, channels=6), sr, "WAV", "PCM_16"),
            KEPT,
        ),
        "Halfsilent 9_C3.wav": (
            lambda: _sf_bytes(
                np.stack([tone("C3", 0.4, sr, 9), np.zeros(int(0.4 * sr), np.float32)], 1),
                sr,
                "WAV",
                "PCM_16",
            ),
            KEPT,
        ),
        "Rate7k 10_C3.wav": (lambda: _sf_bytes(tone("C3", 0.4, 7000, 10), 7000, "WAV"), KEPT),
        "Rate192k 11_C5.wav": (
            lambda: _sf_bytes(tone("C5", 0.4, 192000, 11), 192000, "WAV", "PCM_24"),
            KEPT,
        ),
        "Rate8k 12_C5.wav": (lambda: _sf_bytes(tone("C5", 0.4, 8000, 12), 8000, "WAV"), KEPT),
        "Flac 13_C5.flac": (lambda: _sf_bytes(tone("C5", 0.4, sr, 13), sr, "FLAC"), KEPT),
        "Flac24 14_C5.flac": (
            lambda: _sf_bytes(tone("C5", 0.4, 48000, 14), 48000, "FLAC", "PCM_24"),
            KEPT,
        ),
        "Ogg 15_C4.ogg": (lambda: _sf_bytes(tone("C4", 0.4, sr, 15), sr, "OGG", "VORBIS"), KEPT),
        "Aiff 16_C4.aiff": (lambda: _sf_bytes(tone("C4", 0.4, sr, 16), sr, "AIFF"), KEPT),
        "Aif float 17_C4.aif": (
            lambda: _sf_bytes(tone("C4", 0.4, sr, 17), sr, "AIFF", "FLOAT"),
            KEPT,
        ),
        "Long 18_C3.wav": (lambda: _sf_bytes(tone("C3", 60.0, 44100, 18), 44100, "WAV"), KEPT),
        "Short 19_C3.wav": (lambda: _sf_bytes(tone("C3", 0.03, sr, 19), sr, "WAV"), KEPT),
        "Dc offset 20_C3.wav": (
            lambda: _sf_bytes(tone("C3", 0.4, sr, 20, amplitude=0.4) + 0.5, sr, "WAV", "FLOAT"),
            KEPT,
        ),
        "Clipped 21_C4.wav": (
            lambda: _sf_bytes(np.clip(tone("C4", 0.4, sr, 21) * 6, -1, 1), sr, "WAV"),
            KEPT,
        ),
        "Quiet 22_C4.wav": (
            lambda: _sf_bytes(tone("C4", 0.4, sr, 22, amplitude=1e-4), sr, "WAV", "FLOAT"),
            KEPT,
        ),
        # Right content, misleading extension: decoded by content, not by name.
        "Wav named flac 23_C5.flac": (lambda: _sf_bytes(tone("C5", 0.4, sr, 23), sr, "WAV"), KEPT),
        "Flac named wav 24_C5.wav": (lambda: _sf_bytes(tone("C5", 0.4, sr, 24), sr, "FLAC"), KEPT),
        "Upper 25_C5.WAV": (lambda: _sf_bytes(tone("C5", 0.4, sr, 25), sr, "WAV"), KEPT),
        # A WAV cut in the middle of its data: the part that is there is real audio.
        "Cut data 26_C4.wav": (
            lambda: _sf_bytes(tone("C4", 0.4, sr, 26), sr, "WAV", "PCM_16")[:6000],
            KEPT,
        ),
    }
    bad = {
        "Zero length_C4.wav": (lambda: b"", rejected("empty")),
        "Header cut_C4.wav": (
            lambda: _sf_bytes(tone("C4", 0.4, sr, 30), sr, "WAV")[:30],
            rejected("unreadable", "empty"),
        ),
        "Header only_C4.wav": (
            lambda: _sf_bytes(np.zeros(0, np.float32), sr, "WAV"),
            rejected("empty"),
        ),
        "Text_C4.wav": (lambda: b"this is not audio\n" * 20, rejected("unreadable")),
        "Noise bytes_C4.wav": (
            lambda: np.random.default_rng(31).bytes(4096),
            rejected("unreadable"),
        ),
        "Png_C5.flac": (
            lambda: b"\x89PNG\r\n\x1a\n" + np.random.default_rng(32).bytes(500),
            rejected("unreadable"),
        ),
        "Flac cut_C5.flac": (
            lambda: _sf_bytes(tone("C5", 0.4, sr, 33), sr, "FLAC")[:20],
            rejected("unreadable", "empty"),
        ),
        "Ogg cut_C5.ogg": (
            lambda: _sf_bytes(tone("C5", 0.4, sr, 34), sr, "OGG")[:40],
            rejected("unreadable", "empty"),
        ),
        "Nan_C3.wav": (
            lambda: _sf_bytes(np.full(4000, np.nan, np.float32), sr, "WAV", "FLOAT"),
            rejected("non_finite"),
        ),
        "Some nan_C3.wav": (
            lambda: _sf_bytes(
                np.where(np.arange(6400) % 997 == 5, np.nan, tone("C3", 0.4, sr, 35)).astype(
                    np.float32
                ),
                sr,
                "WAV",
                "FLOAT",
            ),
            rejected("non_finite"),
        ),
        "Inf_C3.wav": (
            lambda: _sf_bytes(
                np.where(np.arange(6400) == 100, np.inf, tone("C3", 0.4, sr, 36)).astype(
                    np.float32
                ),
                sr,
                "WAV",
                "FLOAT",
            ),
            rejected("non_finite"),
        ),
        "Digital silence_C4.wav": (
            lambda: _sf_bytes(np.zeros(6400, np.float32), sr, "WAV"),
            rejected("silent"),
        ),
        "Below floor_C4.wav": (
            lambda: _sf_bytes(tone("C4", 0.4, sr, 37, amplitude=1e-6), sr, "WAV", "FLOAT"),
            rejected("silent"),
        ),
        "Tiny_C5.wav": (
            lambda: _sf_bytes(tone("C5", 0.001, sr, 38), sr, "WAV"),
            rejected("too_short"),
        ),
        "Odd encoding_C5.wav": (lambda: _wav_with_format_tag(0x1234), rejected("unsupported")),
        "Rate zero_C5.wav": (_wav_rate_zero, rejected("unreadable", "unsupported")),
        # Same bytes as a good file: the first by path is kept, this one is a duplicate.
        "Zz copy_C4.wav": (
            lambda: _sf_bytes(tone("C4", 0.4, sr, 1), sr, "WAV", "PCM_16"),
            rejected("duplicate"),
        ),
    }
    return {**good, **bad}


def build_corpus(folder: Path) -> dict[str, Expect]:
    """Write the corpus into `folder` (plus one non-audio file the listing must skip)."""
    folder.mkdir(parents=True, exist_ok=True)
    expected = {}
    for name, (make, expect) in _cases().items():
        (folder / name).write_bytes(make())
        expected[name] = expect
    (folder / "readme.txt").write_text("not audio: skipped by the listing\n")
    # Links: to a good file elsewhere (kept, by the link's name), to nothing (reported, never
    # dropped), and from a subfolder back up the tree (not followed round again: each file once).
    elsewhere = folder.with_name(f"{folder.name}-elsewhere")
    elsewhere.mkdir(exist_ok=True)
    (elsewhere / "target.wav").write_bytes(_sf_bytes(tone("C3", 0.4, 16000, 90), 16000, "WAV"))
    (folder / "Linked 90_C3.wav").symlink_to(elsewhere / "target.wav")
    expected["Linked 90_C3.wav"] = KEPT
    (folder / "Dangling_C4.wav").symlink_to(folder / "no-such-file.wav")
    expected["Dangling_C4.wav"] = rejected("unreadable")
    (folder / "Sub").mkdir()
    (folder / "Sub" / "Up").symlink_to("..")
    return expected
