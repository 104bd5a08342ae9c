from typing import Any

import pytest

from samplegen.dsp.config import CodecConfig, ConfigError


def test_defaults_match_the_original_representation() -> None:
    cfg = CodecConfig()
    assert cfg.num_samples == 88_200
    assert cfg.shape == (1025, 87)
    assert cfg.values_per_sample == 1025 * 87
    assert cfg.replace(representation="wave").shape == (88_200,)
    assert cfg.floor_amplitude == pytest.approx(3.162e-4, rel=1e-3)


def test_round_trip_and_fingerprint() -> None:
    cfg = CodecConfig(duration=1.0)
    assert CodecConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.fingerprint() == CodecConfig(duration=1.0).fingerprint()
    assert cfg.fingerprint() != CodecConfig(duration=1.0, mu=16).fingerprint()


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("representation", "mel"),
        ("n_fft", 1000),
        ("hop", 0),
        ("mu", 0),
        ("duration", 0),
        ("mu", float("nan")),
        ("floor_db", float("nan")),
        ("silence_db", float("nan")),
    ],
)
def test_bad_settings_name_themselves(setting: str, value: Any) -> None:
    # Any: each setting takes a value of its own field's type.
    with pytest.raises(ConfigError, match=setting):
        CodecConfig(**{setting: value})


def test_unknown_keys_and_mismatches_are_named() -> None:
    with pytest.raises(ConfigError, match="hop_size"):
        CodecConfig.from_dict({"hop_size": 512})
    with pytest.raises(ConfigError, match="mu: model 8.0 != dataset 16.0"):
        CodecConfig().check_compatible(CodecConfig(mu=16.0))


def test_an_stft_without_centring_needs_a_note_as_long_as_its_frame() -> None:
    with pytest.raises(ConfigError, match="n_fft: 4096 is longer than a note"):
        CodecConfig(center=False, duration=0.05, n_fft=4096, fade_s=0.01)
    assert CodecConfig(center=False).shape == (1025, 1 + (88_200 - 2048) // 1024)
