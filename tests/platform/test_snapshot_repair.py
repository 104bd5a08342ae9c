"""A study whose Tune snapshot points at a pruned checkpoint still resumes (issue: a driver killed
between Tune's checkpoint pruning and its next snapshot made the trial fail on resume)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.fs as pafs
from tune_helpers import one_trial_config, tiny_data

from samplegen.platform.snapshot_repair import repair_pruned_checkpoints
from samplegen.platform.study import StudyConfig, run_study


def _errored_study(tmp_path: Path) -> tuple[StudyConfig, Path]:
    """A one-trial study that fails at epoch 4 of 6 (no retries): an ERROR trial with checkpoints."""
    config = one_trial_config(tmp_path, "pruned", epochs=6, fail_at_epoch=4, max_failures=0)
    first = run_study(config, tiny_data())
    (row,) = first.rows
    assert row["status"] == "error"
    return config, Path(row["path"])


def _checkpoints(trial: Path) -> list[str]:
    return sorted(p.name for p in trial.glob("checkpoint_*"))


def test_a_pruned_checkpoint_is_rebuilt_from_a_newer_one_and_the_trial_resumes(
    tmp_path: Path, ray_session: None
) -> None:
    config, trial = _errored_study(tmp_path)
    kept = _checkpoints(trial)
    assert len(kept) == 2  # num_to_keep=2: epochs 3 and 4
    referenced = kept[-1]
    # What a driver killed mid-pruning leaves: the snapshot's checkpoint is gone, a newer one is
    # on storage.
    newer = f"checkpoint_{int(referenced.removeprefix('checkpoint_')) + 1:06d}"
    (trial / referenced).rename(trial / newer)

    # An unreadable snapshot beside the real one (older by name, so Tune never picks it) is
    # skipped, not fatal.
    (trial.parent / "experiment_state-0000-00-00_00-00-00.json").write_text("{cut short")

    fs = pafs.LocalFileSystem()
    (repaired,) = repair_pruned_checkpoints(fs, str(trial.parent))
    assert (repaired.trial_dir, repaired.missing, repaired.source) == (
        trial.name,
        referenced,
        newer,
    )
    assert "pruned after Tune's last snapshot" in repaired.describe()
    rebuilt = {p.name: p.read_bytes() for p in (trial / referenced).iterdir()}
    assert rebuilt == {p.name: p.read_bytes() for p in (trial / newer).iterdir()}
    assert not list(trial.glob("*.partial"))
    # Nothing left to rebuild: a second pass changes nothing.
    assert repair_pruned_checkpoints(fs, str(trial.parent)) == []

    # Simulate the crash again and resume through the study: it repairs, then continues the trial
    # from its newest checkpoint instead of failing it.
    shutil.rmtree(trial / referenced)
    second = run_study(config, tiny_data(), resume=True)
    (row,) = second.rows
    assert row["status"] == "completed" and row["epochs"] == 6
    assert row["restored_from"] == 4
    epochs = [json.loads(x)["epoch"] for x in (trial / "result.json").read_text().splitlines()]
    assert epochs == [1, 2, 3, 4, 5, 6]


def test_a_missing_checkpoint_without_a_newer_one_is_left_alone(
    tmp_path: Path, ray_session: None
) -> None:
    _, trial = _errored_study(tmp_path)
    for name in _checkpoints(trial):
        shutil.rmtree(trial / name)
    assert repair_pruned_checkpoints(pafs.LocalFileSystem(), str(trial.parent)) == []
    assert _checkpoints(trial) == []
