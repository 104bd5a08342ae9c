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
    [("representation", "mel"), ("n_fft", 1000), ("hop", 0), ("mu", 0), ("duration", 0)],
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
