"""W&B offline logging of a real study: runs written, an example logged, the key never stored."""

from __future__ import annotations

from pathlib import Path

import pytest
from dataset_helpers import SMALL
from tune_helpers import tiny_config, tiny_data, write_space

from samplegen.platform.study import StudyData, run_study
from samplegen.platform.tracking import wandb_callback, wandb_mode

FAKE_KEY = "sgfake0123456789abcdef0123456789abcdef01"


def test_mode_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert wandb_mode() == "offline"
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    assert wandb_mode() == "online"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_mode() == "offline"
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.delenv("WANDB_API_KEY")
    said: list[str] = []
    assert wandb_callback("p", "g", echo=said.append) is not None
    assert "offline instead" in said[0]
    # Offline because there is no key at all: said too, with where the runs go.
    monkeypatch.delenv("WANDB_MODE")
    said.clear()
    assert wandb_callback("p", "g", directory=str(tmp_path / "w"), echo=said.append) is not None
    assert said == [
        f"W&B: no WANDB_API_KEY, so runs are logged offline under {tmp_path / 'w'} "
        "(`wandb sync` uploads them)"
    ]
    # Asked for (WANDB_MODE=offline): nothing to say.
    monkeypatch.setenv("WANDB_MODE", "offline")
    said.clear()
    assert wandb_callback("p", "g", echo=said.append) is not None and said == []


def test_offline_study_logs_runs_and_examples_without_storing_the_key(
    tmp_path: Path, ray_session: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    base = tiny_data(shape=SMALL.shape)
    data = StudyData(base.train, base.validation, SMALL, "fp", "random")
    space = write_space(tmp_path / "space.yaml")
    config = tiny_config(
        tmp_path / "studies", space, "wb", search="random", trials=2, epochs=2, wandb=True
    )
    result = run_study(config, data)
    assert len(result.rows) == 2 and result.best is not None
    study = Path(result.path)
    runs = list((study / "wandb").glob("**/offline-run-*"))
    assert len(runs) == 2, list((study / "wandb").glob("**/*"))
    assert list((study / "wandb").glob("**/*.png"))  # the end-of-trial spectrogram
    assert list((study / "wandb").glob("**/*.wav"))  # and the reconstructed audio
    for path in study.rglob("*"):
        if path.is_file():
            assert FAKE_KEY.encode() not in path.read_bytes(), path
