"""Which of a trial's checkpoint folders is newest: by the epoch each holds, not by its number."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.fs as pafs

from samplegen.platform.checkpoint_folders import checkpoints_newest_first, newer_than
from samplegen.platform.downloads import copy_latest_checkpoint
from samplegen.platform.selection import latest_checkpoint


def _trial(tmp_path: Path) -> Path:
    """Checkpoints 3 and 4 held epochs 5 and 6 when the driver was killed before Tune's snapshot
    recorded them. The resumed trial, numbering from 3 again, saved epoch 7 as checkpoint 3 and
    ended, so folder 4 still holds epoch 6. Folder 5 was cut short by a crash."""
    trial = tmp_path / "study" / "trial_t1"
    for number, epoch in ((2, 4), (3, 7), (4, 6), (5, None)):
        folder = trial / f"checkpoint_{number:06d}"
        folder.mkdir(parents=True)
        if epoch is not None:
            (folder / "state.json").write_text(json.dumps({"epoch": epoch}))
    return trial


def test_the_newest_checkpoint_is_the_latest_epoch_not_the_highest_number(tmp_path: Path) -> None:
    trial = _trial(tmp_path)
    fs = pafs.LocalFileSystem()
    folders = [str(p) for p in trial.iterdir()]
    names = [Path(p).name for p in checkpoints_newest_first(fs, folders)]
    assert names == [f"checkpoint_{n:06d}" for n in (3, 4, 2, 5)]
    assert latest_checkpoint(trial).name == "checkpoint_000003"
    # Restoring: only folders holding later epochs than Tune's own come before it.
    given = str(trial / "checkpoint_000004")
    assert [Path(p).name for p in newer_than(fs, folders, given)] == ["checkpoint_000003"]
    # Tune's checkpoint not among them (another location): the numbers decide, as before.
    elsewhere = "/elsewhere/trial_t1/checkpoint_000003"
    assert {Path(p).name for p in newer_than(fs, folders, elsewhere)} == {
        "checkpoint_000004",
        "checkpoint_000005",
    }
    assert len(newer_than(fs, folders, None)) == 4
    # A study in a storage URI: the copy fetched for selection is the latest epoch's too.
    copied = copy_latest_checkpoint(f"file://{tmp_path / 'study'}", "t1", tmp_path / "mirror")
    assert [p.name for p in copied.iterdir()] == ["checkpoint_000003"]
