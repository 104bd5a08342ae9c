"""A retried trial keeps every line of its Tune logs."""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow.fs as pafs
import pytest

from samplegen.platform.trial_logs import TRIAL_LOG_FILES, trial_log_keeper_class, upload_trial_logs


def test_upload_copies_the_logs_that_exist_and_replaces_older_copies(tmp_path: Path) -> None:
    staging, study = tmp_path / "staging", tmp_path / "study" / "trial_a"
    staging.mkdir()
    (staging / "result.json").write_text('{"epoch": 1}\n{"epoch": 2}\n')
    study.mkdir(parents=True)
    (study / "result.json").write_text('{"epoch": 1}\n')
    copied = upload_trial_logs(str(staging), pafs.LocalFileSystem(), str(study))
    assert copied == ["result.json"]  # no progress.csv in staging: nothing invented
    assert (study / "result.json").read_text() == '{"epoch": 1}\n{"epoch": 2}\n'
    assert not (study / "progress.csv").exists()
    assert set(TRIAL_LOG_FILES) == {"result.json", "progress.csv"}


def test_a_trial_retried_right_after_its_final_report_keeps_that_report_in_result_json(
    tmp_path: Path, ray_session: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ray import tune

    # Defined here, not at module level, so Ray ships it by value to workers that cannot
    # import this test module.
    def _final_report_then_crash(config: dict[str, Any]) -> None:
        """Reports epoch 1, waits until Tune's snapshot has carried it to the study folder, reports
        its final epoch with a checkpoint and crashes; its retry finds the final checkpoint and
        returns without reporting again, as samplegen's trainable does."""
        if tune.get_checkpoint() is not None:
            return
        tune.report({"epoch": 1})
        storage = tune.get_context().get_storage()
        uploaded = Path(storage.trial_fs_path) / "result.json"
        deadline = time.monotonic() + 60
        while not (uploaded.is_file() and uploaded.read_text().strip()):
            if time.monotonic() > deadline:
                raise TimeoutError("no experiment snapshot reached the study folder in 60 s")
            time.sleep(0.05)
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "done").write_text("final")
            tune.report({"epoch": 2}, checkpoint=tune.Checkpoint.from_directory(tmp))
        raise RuntimeError("crash right after the final report")

    # Snapshots every 3 s: the first carries epoch 1 to the study folder, and the crash comes
    # well before the next one, so the study folder's result.json is one report behind when
    # Tune retries the trial. Without the keeper, the retry copies that old file back over
    # the driver's and the final report is gone (it failed so before the keeper existed).
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "3")
    tuner = tune.Tuner(
        _final_report_then_crash,
        run_config=tune.RunConfig(
            name="retried",
            storage_path=str(tmp_path),
            failure_config=tune.FailureConfig(max_failures=1),
            callbacks=[trial_log_keeper_class()()],
            verbose=0,
        ),
    )
    grid = tuner.fit()
    assert len(grid) == 1
    result = grid[0]
    assert result.error is None
    assert result.metrics is not None and result.metrics["epoch"] == 2
    lines = [json.loads(x) for x in Path(result.path, "result.json").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2]
    assert list(Path(result.path).glob("error*.txt")), "the trial never crashed"


def test_a_log_that_cannot_be_uploaded_is_reported_and_the_study_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "result.json").write_text('{"epoch": 1}\n')
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the study folder should be")
    storage = SimpleNamespace(
        storage_filesystem=pafs.LocalFileSystem(), trial_fs_path=str(blocker / "trial_a")
    )
    trial = SimpleNamespace(trial_id="a", local_path=str(staging), storage=storage)
    keeper = trial_log_keeper_class()()
    with caplog.at_level(logging.WARNING):
        keeper.on_trial_recover(iteration=1, trials=[trial], trial=trial)
    assert "trial a: could not upload its logs before its retry" in caplog.text
