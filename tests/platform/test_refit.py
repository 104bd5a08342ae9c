"""The refit's parts (samplegen.platform.refit): its dataset and the retraced training run.

The whole refit, inside the main job, is tested end to end in test_pipeline.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TypedDict

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from dataset_helpers import SMALL, instrument_folder

from samplegen.errors import SamplegenError
from samplegen.models.artifact import load_model
from samplegen.platform.datasets import load_dataset, prepare_dataset
from samplegen.platform.longrun import train_config
from samplegen.platform.refit import RefitError, refit_chain, refit_dataset


@pytest.fixture(scope="module")
def dataset(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("refit")
    instrument_folder(root / "audio", instruments=10)
    return prepare_dataset(root / "audio", root / "ds", SMALL, splits=(0.6, 0.2, 0.2), echo=None)


def test_the_refit_dataset_trains_on_validation_and_holds_no_test(
    dataset: Path, tmp_path: Path
) -> None:
    said: list[str] = []
    out = refit_dataset(dataset, tmp_path / "refit", echo=said.append)
    source = load_dataset(dataset)
    refit = load_dataset(out, splits=("train", "validation"))
    train, val = source.splits["train"], source.splits["validation"]
    assert len(val.x) > 0
    assert len(refit.splits["train"].x) == len(train.x) + len(val.x)
    names = [m["name"] for m in refit.splits["train"].meta]
    assert sorted(names) == sorted(m["name"] for m in train.meta + val.meta)
    assert {m["split"] for m in refit.splits["train"].meta} == {"train"}
    # The notes themselves, unchanged: each validation note is in the refit's training rows.
    by_name = dict(zip(names, refit.splits["train"].x, strict=True))
    for m, x in zip(val.meta, val.x, strict=True):
        np.testing.assert_array_equal(by_name[m["name"]], x)
    # Validation stays for logging a loss only; test is not there at all.
    assert [m["name"] for m in refit.splits["validation"].meta] == [m["name"] for m in val.meta]
    info = json.loads((out / "dataset.json").read_text())
    assert set(info["files"]) == {"train", "validation"}
    assert not (out / "data" / "test.parquet").exists()
    with pytest.raises(SamplegenError, match="no split named test"):
        load_dataset(out, splits=("test",))
    test_names = {m["name"] for m in source.splits["test"].meta}
    assert not test_names & set(names)
    assert info["refit_of"]["fingerprint"] == source.fingerprint
    assert info["refit_of"]["validation_rows_in_train"] == len(val.x)
    assert refit.fingerprint != source.fingerprint
    assert any("trained on together" in line for line in said)

    # A second call finds it up to date; another source's refit gets another fingerprint.
    stamp = (out / "data" / "train.parquet").stat().st_mtime_ns
    assert refit_dataset(dataset, out, echo=said.append) == out
    assert said[-1].endswith("up to date, reusing it")
    assert (out / "data" / "train.parquet").stat().st_mtime_ns == stamp


def test_the_refit_refuses_what_it_cannot_use(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(SamplegenError, match=str(tmp_path / "nothing")):
        refit_dataset(tmp_path / "nothing", tmp_path / "out", echo=None)
    # A dataset without validation rows has nothing to add.
    info = json.loads((dataset / "dataset.json").read_text())
    empty = tmp_path / "no-validation"
    (empty / "data").mkdir(parents=True)
    for split, file in info["files"].items():
        table = pq.read_table(dataset / file)
        pq.write_table(table.slice(0, 0) if split == "validation" else table, empty / file)
    (empty / "dataset.json").write_text(json.dumps(info))
    with pytest.raises(RefitError, match="no validation rows"):
        refit_dataset(empty, tmp_path / "out", echo=None)
    # A study whose best_config.json lacks the chosen epoch cannot be retraced.
    study = tmp_path / "study"
    study.mkdir()
    (study / "best_config.json").write_text(json.dumps({"model": "vae", "config": {}}))
    with pytest.raises(RefitError, match="best_epoch"):
        refit_chain(study, tmp_path / "outer", dataset, tmp_path / "m", work=tmp_path)


CONFIG = {"frame_latent": 4, "hidden": 16, "lr": 3e-3, "batch_size": 8, "lr_schedule": "cosine"}


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "best_config.json"
    path.write_text(json.dumps({"model": "frame_ae", "config": CONFIG, "seed": 0}))
    return path


class _Quiet(TypedDict):
    """train_config keywords that keep the retraced runs quiet and free of the stop rules."""

    echo: Callable[[str], None] | None
    stall_window: int | None
    overfit_limit: float | None


def test_a_retraced_run_stops_at_its_epoch_and_keeps_the_last(
    dataset: Path, tmp_path: Path
) -> None:
    config = _config(tmp_path)
    common: _Quiet = {"echo": None, "stall_window": 0, "overfit_limit": 0}
    out = train_config(
        config, dataset, tmp_path / "cut", epochs=4, stop_at=2, keep="last", **common
    )
    cut = load_model(out)
    assert cut.meta.metrics["epochs"] == 2 and cut.meta.metrics["best_epoch"] == 2
    assert cut.meta.metrics["reason"] == "stopped at epoch 2 of a 4-epoch schedule"
    assert len(cut.meta.extra["history"]["val_loss"]) == 2
    # The schedule spans all 4 epochs: the same 2 epochs of a 2-epoch schedule, whose learning
    # rate falls faster, end elsewhere; the same cut run again ends exactly here.
    short = load_model(train_config(config, dataset, tmp_path / "short", epochs=2, **common))
    again = train_config(
        config, dataset, tmp_path / "again", epochs=4, stop_at=2, keep="last", **common
    )
    a, b, c = (m.state_dict() for m in (cut.model, short.model, load_model(again).model))
    assert all(torch.equal(a[k], c[k]) for k in a)
    assert any(not torch.equal(a[k], b[k]) for k in a)

    # Its checkpoint remembers how the run was cut: resuming it otherwise is refused by name.
    with pytest.raises(SamplegenError, match=r"another run: keep 'last' \(now 'best'\)"):
        train_config(config, dataset, tmp_path / "cut", epochs=4, stop_at=2, resume=True, **common)
    with pytest.raises(SamplegenError, match=r"stop_at 2 \(now 3\)"):
        train_config(
            config,
            dataset,
            tmp_path / "cut",
            epochs=4,
            stop_at=3,
            keep="last",
            resume=True,
            **common,
        )

    with pytest.raises(SamplegenError, match="stop_at: must be in 1..4"):
        train_config(config, dataset, tmp_path / "x", epochs=4, stop_at=5, **common)
    with pytest.raises(SamplegenError, match="keep: 'best' or 'last'"):
        train_config(config, dataset, tmp_path / "x", epochs=4, keep="first", **common)
