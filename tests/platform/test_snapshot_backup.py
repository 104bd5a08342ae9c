"""A study whose Tune snapshot a kill cut short mid-save still resumes, from the last whole copy
that the study kept of it (`snapshot_backup`, `snapshot_repair.restore_cut_snapshots`)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from tune_helpers import tiny_config, tiny_data, write_space

from samplegen.errors import SamplegenError
from samplegen.platform.snapshot_backup import (
    BACKUP_DIR,
    SETS_KEPT,
    SnapshotBackup,
    backup_sets,
    is_state_file,
    is_whole,
)
from samplegen.platform.snapshot_repair import restore_cut_snapshots
from samplegen.platform.study import run_study

STATE = json.dumps({"trial_data": [["t", "x" * 200]], "runner_data": {"n": 3}}).encode()
PICKLED = pickle.dumps({"counter": 7, "names": ["a", "b"] * 50}, protocol=5)


@pytest.mark.parametrize("data", [STATE, PICKLED], ids=["json", "pickle"])
def test_a_state_file_cut_anywhere_is_not_whole(data: bytes) -> None:
    assert is_whole(data)
    assert not any(is_whole(data[:k]) for k in range(len(data)))


def test_state_files_are_tunes_restore_files_only() -> None:
    for name in ("experiment_state-2026-12-06_05-00-00.json", "tuner.pkl"):
        assert is_state_file(name)
    for name in ("searcher-state-x.pkl", "basic-variant-state-x.json", "search_gen_state-x.json"):
        assert is_state_file(name)
    for name in ("study.json", "results.csv", "experiment_state-x.json.cut", "best_config.json"):
        assert not is_state_file(name)


def _study(tmp_path: Path) -> Path:
    root = tmp_path / "study"
    root.mkdir()
    (root / "experiment_state-2026-01-01_00-00-00.json").write_bytes(STATE)
    (root / "search_gen_state-2026-01-01_00-00-00.json").write_bytes(PICKLED)
    (root / "study.json").write_text("{}")
    return root


def test_a_whole_snapshot_is_kept_once_per_change_and_a_cut_one_never(tmp_path: Path) -> None:
    root = _study(tmp_path)
    backup = SnapshotBackup(root, interval_s=0)
    first = backup.poll()
    assert first is not None
    assert sorted(p.name for p in first.iterdir()) == [
        "experiment_state-2026-01-01_00-00-00.json",
        "search_gen_state-2026-01-01_00-00-00.json",
        "set.json",
    ]
    assert backup.poll() is None  # nothing changed
    # Mid-save: a file cut short is never kept.
    (root / "experiment_state-2026-01-01_00-00-00.json").write_bytes(STATE[:40])
    assert backup.poll() is None
    assert backup_sets(root) == [first]
    for n in range(SETS_KEPT + 2):
        (root / "experiment_state-2026-01-01_00-00-00.json").write_bytes(STATE + b" " * (n + 1))
        assert backup.poll() is not None
    sets = backup_sets(root)
    assert len(sets) == SETS_KEPT and first not in sets
    assert (sets[-1] / "experiment_state-2026-01-01_00-00-00.json").read_bytes() == STATE + b"    "
    # A set cut short (no marker) is never offered for a restore, and a folder of another name
    # beside the sets is left alone.
    (root / BACKUP_DIR / "set-999999").mkdir()
    (root / BACKUP_DIR / "set-mine").mkdir()
    assert backup_sets(root) == sets
    # At most one look per interval.
    slow = SnapshotBackup(root, interval_s=3600)
    (root / "tuner.pkl").write_bytes(PICKLED)
    assert slow.poll() is not None and slow.poll() is None
    # Numbered past six digits, in order; the cut set is gone, the folder of another name kept.
    assert [p.name for p in backup_sets(root)] == [sets[-1].name, "set-1000000"]
    assert not (root / BACKUP_DIR / "set-999999").exists()
    assert (root / BACKUP_DIR / "set-mine").is_dir()


def test_a_cut_snapshot_is_put_back_whole_and_newer_state_set_aside(tmp_path: Path) -> None:
    root = _study(tmp_path)
    assert restore_cut_snapshots(root) == []  # every file whole: nothing to do
    SnapshotBackup(root, interval_s=0).poll()
    # The kill came while a new session saved its first snapshot: its experiment state is cut
    # short, and its searcher state whole but from after the kept set.
    (root / "experiment_state-2026-01-01_00-00-00.json").write_bytes(STATE + b"\n")
    (root / "experiment_state-2026-02-02_00-00-00.json").write_bytes(STATE[:100])
    (root / "search_gen_state-2026-02-02_00-00-00.json").write_bytes(PICKLED)
    lines = restore_cut_snapshots(root)
    assert (
        lines[0] == "experiment_state-2026-02-02_00-00-00.json was cut short when the study stopped"
    )
    assert "resuming from the last whole snapshot" in lines[-1]
    assert sorted(p.name for p in root.iterdir() if p.is_file()) == [
        "experiment_state-2026-01-01_00-00-00.json",
        "experiment_state-2026-02-02_00-00-00.json.cut",
        "search_gen_state-2026-01-01_00-00-00.json",
        "search_gen_state-2026-02-02_00-00-00.json.cut",
        "study.json",
    ]
    assert (root / "experiment_state-2026-01-01_00-00-00.json").read_bytes() == STATE
    assert restore_cut_snapshots(root) == []


def test_a_cut_snapshot_without_a_kept_copy_is_a_clear_error(tmp_path: Path) -> None:
    root = _study(tmp_path)
    (root / "search_gen_state-2026-01-01_00-00-00.json").write_bytes(PICKLED[:-1])
    with pytest.raises(
        SamplegenError, match="search_gen_state-2026-01-01_00-00-00.json: cut short"
    ):
        restore_cut_snapshots(root)


def test_a_study_whose_snapshot_a_kill_cut_short_resumes_from_the_kept_copy(
    tmp_path: Path, ray_session: None
) -> None:
    space = write_space(tmp_path / "space.yaml")
    config = tiny_config(
        tmp_path / "studies", space, "cut", search="gp", trials=4, max_concurrent=1
    )
    first = run_study(config, tiny_data(), interrupt_after=2)
    assert first.interrupted
    done_first = {r["trial_id"]: r for r in first.rows if r["status"] == "completed"}
    assert len(done_first) >= 2
    study = Path(first.path)
    assert backup_sets(study)
    # What a kill during Tune's copy into the study folder leaves: every file it reads on a
    # restore cut short.
    cut = [p for p in study.iterdir() if p.is_file() and is_state_file(p.name)]
    assert {p.name.split("-")[0] for p in cut} >= {"experiment_state", "search_gen_state"}
    for path in cut:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    lines: list[str] = []
    second = run_study(config, tiny_data(), resume=True, echo=lines.append)
    assert any("cut short when the study stopped" in x for x in lines), lines
    rows = {r["trial_id"]: r for r in second.rows}
    assert len(rows) == 4 and all(r["status"] == "completed" for r in rows.values())
    for trial_id, row in done_first.items():
        assert rows[trial_id]["time_total_s"] == row["time_total_s"]  # not trained again
