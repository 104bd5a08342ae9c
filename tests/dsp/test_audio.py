"""Reading, fitting and writing audio with real files, including every kind of bad input."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from samplegen.dsp.audio import (
    decode_audio,
    load_wave,
    prepare_wave,
    read_audio,
    resample,
    soft_limit,
    write_wav,
)
from samplegen.dsp.config import CodecConfig, ConfigError
from samplegen.dsp.errors import AudioError
from samplegen.errors import SamplegenError

CONFIG = CodecConfig()
SR = 44_100


def tone(seconds: float, sr: int = SR, freq: float = 261.63, channels: int = 1) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    x = 0.5 * np.sin(2 * np.pi * freq * t) * np.exp(-t)
    if channels == 1:
        return x.astype(np.float32)
    return np.stack([x * (c + 1) / channels for c in range(channels)], axis=1).astype(np.float32)


def expect_error(path: Path, reason: str) -> AudioError:
    with pytest.raises(AudioError) as info:
        load_wave(path, CONFIG)
    err = info.value
    assert err.reason == reason
    assert err.path == str(path)
    assert str(err).startswith(f"{path}: {reason}: ")
    assert isinstance(err, SamplegenError)
    return err


# --- bad input -----------------------------------------------------------------------------------


def test_truncated_wav(tmp_path: Path) -> None:
    good = tmp_path / "good.wav"
    sf.write(good, tone(1.0), SR, subtype="PCM_16")
    raw = good.read_bytes()
    header_only = tmp_path / "header_only.wav"
    header_only.write_bytes(raw[:44])
    expect_error(header_only, "empty")
    cut_header = tmp_path / "cut_header.wav"
    cut_header.write_bytes(raw[:20])
    expect_error(cut_header, "unreadable")
    # A WAV cut mid-data still holds usable audio: libsndfile reads what is there.
    cut_data = tmp_path / "cut_data.wav"
    cut_data.write_bytes(raw[: 44 + 2 * 22050])
    wave, peak = load_wave(cut_data, CONFIG)
    assert wave.shape == (CONFIG.num_samples,)
    assert np.all(wave[22100:] == 0)
    assert peak == pytest.approx(0.5, abs=0.01)


def test_zero_length_file(tmp_path: Path) -> None:
    path = tmp_path / "zero.wav"
    path.write_bytes(b"")
    expect_error(path, "empty")
    with pytest.raises(AudioError) as info:
        decode_audio(b"", "zero-bytes")
    assert info.value.reason == "empty" and info.value.path == "zero-bytes"


def test_missing_file_and_directory(tmp_path: Path) -> None:
    expect_error(tmp_path / "nope.wav", "unreadable")
    folder = tmp_path / "folder.wav"
    folder.mkdir()
    expect_error(folder, "unreadable")


def test_text_file_named_wav(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio, just a text file with a .wav name\n" * 20)
    err = expect_error(path, "unreadable")
    assert "notes.wav" in str(err)


def wav_bytes(format_tag: int, bits: int = 16) -> bytes:
    """A minimal RIFF/WAVE file with the given encoding tag and 1,000 frames of data."""
    data = b"\x00\x01" * 1000
    fmt = struct.pack("<HHIIHH", format_tag, 1, SR, SR * bits // 8, bits // 8, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_unsupported_wav_encoding(tmp_path: Path) -> None:
    # 0x0055 is MPEG layer 3 inside a WAV container; 0x1234 is not a registered encoding at all.
    for tag in (0x0055, 0x1234):
        path = tmp_path / f"enc_{tag:04x}.wav"
        path.write_bytes(wav_bytes(tag))
        err = expect_error(path, "unsupported")
        assert f"0x{tag:04X}" in str(err)
    # The same header with plain PCM reads fine.
    mono, sr = decode_audio(wav_bytes(1), "pcm.wav")
    assert sr == SR and mono.shape == (1000,)


def test_garbage_bytes_are_unreadable() -> None:
    with pytest.raises(AudioError) as info:
        decode_audio(b"not audio at all" * 10, "junk.bin")
    assert info.value.reason == "unreadable" and "junk.bin: unreadable: " in str(info.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples(tmp_path: Path, bad: float) -> None:
    x = tone(1.0)
    x[1000] = bad
    path = tmp_path / "nonfinite.wav"
    sf.write(path, x, SR, subtype="FLOAT")
    expect_error(path, "non_finite")
    with pytest.raises(AudioError) as info:
        prepare_wave(x, SR, CONFIG, name="array")
    assert info.value.reason == "non_finite"


def test_digital_silence(tmp_path: Path) -> None:
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(SR, dtype=np.float32), SR, subtype="PCM_16")
    err = expect_error(path, "silent")
    assert "digital silence" in str(err)


def test_sound_only_after_the_kept_part_is_silent(tmp_path: Path) -> None:
    x = np.zeros(3 * SR, dtype=np.float32)
    x[int(2.5 * SR) :] = tone(0.5)
    path = tmp_path / "late.wav"
    sf.write(path, x, SR)
    expect_error(path, "silent")


def test_too_short(tmp_path: Path) -> None:
    path = tmp_path / "click.wav"
    sf.write(path, tone(0.005), SR)
    err = expect_error(path, "too_short")
    assert "ms" in str(err)


def test_unsupported_shape() -> None:
    with pytest.raises(AudioError) as info:
        prepare_wave(np.ones((2, 2, 100), dtype=np.float32), SR, CONFIG, name="cube")
    assert info.value.reason == "unsupported"


def test_audio_error_pickles() -> None:
    err = AudioError("a.wav", "silent", "digital silence")
    back = pickle.loads(pickle.dumps(err))
    assert (back.path, back.reason, str(back)) == ("a.wav", "silent", str(err))
    with pytest.raises(ValueError):
        AudioError("a.wav", "bogus", "x")


# --- formats, rates, channels --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "subtype", "suffix", "tol"),
    [
        ("WAV", "PCM_U8", ".wav", 1e-2),
        ("WAV", "PCM_16", ".wav", 1e-4),
        ("WAV", "PCM_24", ".wav", 1e-6),
        ("WAV", "PCM_32", ".wav", 1e-6),
        ("WAV", "FLOAT", ".wav", 1e-7),
        ("FLAC", "PCM_16", ".flac", 1e-4),
        ("AIFF", "PCM_24", ".aiff", 1e-6),
        ("OGG", "VORBIS", ".ogg", 5e-2),
    ],
)
def test_formats(tmp_path: Path, fmt: str, subtype: str, suffix: str, tol: float) -> None:
    x = tone(1.0)
    path = tmp_path / f"note_{subtype}{suffix}"
    sf.write(path, x, SR, format=fmt, subtype=subtype)
    mono, sr = read_audio(path)
    assert sr == SR and mono.dtype == np.float32
    assert mono.shape[0] == x.shape[0]
    assert np.max(np.abs(mono - x)) < tol
    # Same bytes through the in-memory path.
    mono2, sr2 = decode_audio(path.read_bytes(), path.name)
    assert sr2 == SR and np.array_equal(mono, mono2)
    wave, peak = load_wave(path, CONFIG)
    assert wave.shape == (CONFIG.num_samples,)
    assert np.max(np.abs(wave)) == pytest.approx(1.0)
    assert peak == pytest.approx(0.5, rel=0.05)


def test_96k_is_resampled(tmp_path: Path) -> None:
    path = tmp_path / "hi.wav"
    sf.write(path, tone(1.0, sr=96_000, freq=440.0), 96_000, subtype="PCM_24")
    wave, _ = load_wave(path, CONFIG)
    assert wave.shape == (CONFIG.num_samples,)
    # The pitch survives: the spectrum peaks at 440 Hz at the new rate.
    spec = np.abs(np.fft.rfft(wave[:SR]))  # one second: 1 Hz bins
    assert abs(int(np.argmax(spec)) - 440) <= 1
    assert np.all(wave[SR + 100 :] == 0)


def test_resample_lengths_and_identity() -> None:
    x = tone(0.5, sr=48_000)
    y = resample(x, 48_000, SR)
    assert y.dtype == np.float32 and abs(y.shape[0] - int(0.5 * SR)) <= 1
    same = resample(x, 48_000, 48_000)
    assert np.array_equal(same, x) and same is not x


def test_six_channels_mixed_by_mean(tmp_path: Path) -> None:
    x = tone(1.0, channels=6)
    path = tmp_path / "six.wav"
    sf.write(path, x, SR, subtype="FLOAT")
    mono, _ = read_audio(path)
    np.testing.assert_allclose(mono, x.mean(axis=1), atol=1e-6)


def test_channels_first_array_is_mixed() -> None:
    x = tone(1.0, channels=2)
    a, pa = prepare_wave(x, SR, CONFIG)
    b, pb = prepare_wave(x.T, SR, CONFIG)
    np.testing.assert_array_equal(a, b)
    assert pa == pb


def test_thirty_seconds_is_trimmed_with_fade(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    t = np.arange(30 * SR) / SR
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), SR)
    wave, peak = load_wave(path, CONFIG)
    assert wave.shape == (CONFIG.num_samples,)
    assert peak == pytest.approx(0.3, rel=1e-3)
    fade = int(CONFIG.fade_s * SR)
    assert abs(wave[-1]) < 1e-6
    # Untouched before the fade, decaying inside it.
    assert np.max(np.abs(wave[-fade - SR // 10 : -fade])) > 0.99
    assert np.max(np.abs(wave[-fade // 10 :])) < 0.05
    # Only the start is decoded; the full read gives the same note.
    head, _ = read_audio(path, max_seconds=1.0)
    assert SR <= head.shape[0] < SR + 4096
    full, sr = read_audio(path)
    assert full.shape[0] == 30 * SR
    np.testing.assert_array_equal(prepare_wave(full, sr, CONFIG)[0], wave)


def test_damage_after_the_kept_part_is_ignored(tmp_path: Path) -> None:
    x = np.concatenate([tone(3.0), np.full(100, np.nan, dtype=np.float32)])
    path = tmp_path / "tail.wav"
    sf.write(path, x, SR, subtype="FLOAT")
    wave, _ = load_wave(path, CONFIG)
    assert np.isfinite(wave).all()
    with pytest.raises(AudioError, match="non_finite"):
        read_audio(path)


def test_short_sound_is_padded_without_fade() -> None:
    x = np.full(SR // 2, 0.25, dtype=np.float32)
    wave, peak = prepare_wave(x, SR, CONFIG)
    assert peak == pytest.approx(0.25)
    assert np.all(wave[: SR // 2] == 1.0) and np.all(wave[SR // 2 :] == 0.0)


def test_normalises_by_absolute_peak() -> None:
    # The original divided by the largest positive value; a mostly negative sound must reach -1.
    x = tone(1.0)
    x[100] = -0.9
    wave, peak = prepare_wave(x, SR, CONFIG)
    assert peak == pytest.approx(0.9)
    assert wave.min() == pytest.approx(-1.0) and wave.max() <= 1.0


# --- writing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subtype", "tol"), [("PCM_16", 1 / 32767), ("PCM_24", 1e-6), ("FLOAT", 0)]
)
def test_write_round_trip(tmp_path: Path, subtype: str, tol: float) -> None:
    x = tone(0.5)
    path = write_wav(tmp_path / "sub" / "out.wav", x, SR, subtype=subtype)
    back, sr = sf.read(path, dtype="float32")
    assert sr == SR and sf.info(str(path)).subtype == subtype
    assert np.max(np.abs(back - x)) <= tol + 1e-7
    assert [p.name for p in path.parent.iterdir()] == ["out.wav"]


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
def test_write_never_wraps(tmp_path: Path, subtype: str) -> None:
    x = np.linspace(-3, 3, 1001, dtype=np.float32)
    path = write_wav(tmp_path / "loud.wav", x, SR, subtype=subtype)
    back, _ = sf.read(path, dtype="float64")
    assert np.max(np.abs(back)) <= 1.0
    # Monotonic in, monotonic out: nothing flipped sign the way integer wrap-around would.
    assert np.all(np.diff(back) >= -1e-9)
    assert back[0] < -0.99 and back[-1] > 0.99


def test_write_restores_level_with_gain(tmp_path: Path) -> None:
    x = tone(1.0)
    wave, peak = prepare_wave(x, SR, CONFIG)
    path = write_wav(tmp_path / "level.wav", wave, SR, subtype="FLOAT", gain=peak)
    back, _ = sf.read(path, dtype="float32")
    np.testing.assert_allclose(back[: x.shape[0]], x, atol=1e-6)


def test_write_accepts_torch(tmp_path: Path) -> None:
    import torch

    x = torch.linspace(-0.5, 0.5, 100)
    back, _ = sf.read(write_wav(tmp_path / "t.wav", x, SR, subtype="FLOAT"), dtype="float32")
    np.testing.assert_allclose(back, x.numpy())


def test_write_rejects_bad_settings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="subtype"):
        write_wav(tmp_path / "x.wav", np.zeros(10), SR, subtype="PCM_8")
    with pytest.raises(AudioError) as info:
        write_wav(tmp_path / "x.wav", np.array([0.0, np.nan]), SR)
    assert info.value.reason == "non_finite"
    assert not (tmp_path / "x.wav").exists()
    assert list(tmp_path.iterdir()) == []


def test_soft_limit_is_identity_below_knee() -> None:
    x = np.linspace(-0.9, 0.9, 101, dtype=np.float32)
    np.testing.assert_array_equal(soft_limit(x), x)
    y = soft_limit(np.array([5.0, -5.0, 0.95], dtype=np.float32))
    assert np.all(np.abs(y) <= 1.0) and 0.9 < y[2] < 0.95
