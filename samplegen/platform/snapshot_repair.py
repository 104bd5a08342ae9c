"""Makes a killed study's Tune snapshot restorable before `Tuner.restore` reads it.

A state file that the kill cut short mid-save is put back from the last whole set that
`snapshot_backup` kept (`restore_cut_snapshots`).

Tune deletes a trial's oldest checkpoint (`CheckpointConfig(num_to_keep)`) as soon as a newer one
is registered, but writes its experiment snapshot only afterwards. A driver killed in between
leaves a snapshot that points at a checkpoint no longer on storage, and Tune then fails that trial
on resume ("Could not recover from checkpoint as it does not exist on storage anymore"). The
trial's newer checkpoints are still there, so the missing folder is rebuilt from the newest one:
Tune's existence check passes, and the trainable (see `trainable.restore_candidates`) continues
from the newest checkpoint anyway.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from samplegen.atomic import write_atomic
from samplegen.errors import SamplegenError
from samplegen.platform.checkpoint_folders import checkpoint_index
from samplegen.platform.snapshot_backup import (
    SET_MARKER,
    STATE_PATTERNS,
    backup_sets,
    is_whole,
    state_files,
)

SNAPSHOT_GLOB_PREFIX = "experiment_state-"


@dataclass(frozen=True)
class RepairedCheckpoint:
    """One checkpoint folder that a snapshot referenced and that was rebuilt."""

    trial_dir: str
    missing: str
    source: str

    def describe(self) -> str:
        """One line for the study's log."""
        return (
            f"{self.trial_dir}: {self.missing} was pruned after Tune's last snapshot; "
            f"continuing from {self.source}"
        )


def repair_pruned_checkpoints(fs: pafs.FileSystem, root: str) -> list[RepairedCheckpoint]:
    """Rebuilds every checkpoint folder that a snapshot under `root` references but that is gone.

    Only folders with a newer checkpoint of the same trial beside them are rebuilt; a trial with
    none is left for Tune to report as failed.
    """
    repaired: list[RepairedCheckpoint] = []
    # A folder referenced by several snapshots is rebuilt once: the second time it exists.
    for trial_dir, name in _referenced_checkpoints(fs, root):
        trial_path = f"{root}/{trial_dir}"
        if fs.get_file_info(f"{trial_path}/{name}").type != pafs.FileType.NotFound:
            continue
        newer = [
            n
            for n in _checkpoint_names(fs, trial_path)
            if checkpoint_index(n) > checkpoint_index(name)
        ]
        if not newer:
            continue
        source = max(newer, key=checkpoint_index)
        _copy_folder(fs, f"{trial_path}/{source}", f"{trial_path}/{name}")
        repaired.append(RepairedCheckpoint(trial_dir, name, source))
    return repaired


def _referenced_checkpoints(fs: pafs.FileSystem, root: str) -> Iterator[tuple[str, str]]:
    """(trial folder, checkpoint folder) for each trial's latest checkpoint in each snapshot."""
    from ray.tune.trainable.metadata import _TrainingRunMetadata

    selector = pafs.FileSelector(root, allow_not_found=True)
    for info in fs.get_file_info(selector):
        if not (
            info.base_name.startswith(SNAPSHOT_GLOB_PREFIX) and info.base_name.endswith(".json")
        ):
            continue
        try:
            with fs.open_input_stream(info.path) as stream:
                state = json.loads(stream.read().decode())
            paths = []
            for entry in state.get("trial_data", []):
                manager = _TrainingRunMetadata.from_json_state(entry[1]).checkpoint_manager
                latest = manager.latest_checkpoint_result if manager is not None else None
                if latest is not None and latest.checkpoint is not None:
                    paths.append(latest.checkpoint.path)
        except Exception:
            # A snapshot this Ray cannot read (cut short, another version): Tune's own restore
            # then reports what it finds, as it would without this repair.
            continue
        for path in paths:
            parts = path.rstrip("/").split("/")
            if len(parts) >= 2 and checkpoint_index(parts[-1]) >= 0:
                yield parts[-2], parts[-1]


def _checkpoint_names(fs: pafs.FileSystem, trial_path: str) -> list[str]:
    infos = fs.get_file_info(pafs.FileSelector(trial_path, allow_not_found=True))
    return [
        i.base_name
        for i in infos
        if i.type == pafs.FileType.Directory and checkpoint_index(i.base_name) >= 0
    ]


def _copy_folder(fs: pafs.FileSystem, source: str, target: str) -> None:
    # Copied into a temporary name first, so a kill during the copy never leaves a half folder
    # under the name that Tune trusts.
    partial = f"{target}.partial"
    fs.delete_dir_contents(partial, missing_dir_ok=True)
    fs.create_dir(partial, recursive=True)
    pafs.copy_files(source, partial, source_filesystem=fs, destination_filesystem=fs)
    fs.move(partial, target)


def restore_cut_snapshots(root: str | Path) -> list[str]:
    """Put back the last whole snapshot when a state file Tune would read is cut short.

    Every state file is then exactly the backup set's: the set's files are copied back, and state
    files made after it (a new session's) are renamed aside with a `.cut` suffix, so Tune never
    mixes two snapshots. Returns one line per file changed (nothing when all were whole); raises
    `SamplegenError` when a file is cut short and no whole set was kept.
    """
    folder = Path(root)
    if not folder.is_dir():
        return []
    present = sorted(state_files(folder))
    read = [_newest(present, p) for p in STATE_PATTERNS]
    cut = [n for n in read if n is not None and not is_whole((folder / n).read_bytes())]
    if not cut:
        return []
    sets = backup_sets(folder)
    if not sets:
        raise SamplegenError(
            f"{folder / cut[0]}: cut short when the study was stopped (a kill while Tune saved "
            "it), and no whole copy was kept; start the study again under another name"
        )
    kept = sets[-1]
    names = json.loads((kept / SET_MARKER).read_text())["files"]
    lines = [f"{n} was cut short when the study stopped" for n in cut]
    for name in present:
        if name not in names:
            (folder / name).rename(folder / f"{name}.cut")
            lines.append(f"{name} is newer than the last whole snapshot: set aside as {name}.cut")
    for name in names:
        write_atomic(folder / name, functools.partial(shutil.copyfile, kept / name))
    lines.append(f"resuming from the last whole snapshot, {kept}")
    return lines


def _newest(names: list[str], pattern: str) -> str | None:
    # Tune and its searchers name each state file with a sortable timestamp and read the one that
    # sorts last (`experiment_state._find_newest_experiment_checkpoint`, `Searcher.restore_from_dir`).
    matching = fnmatch.filter(names, pattern)
    return max(matching) if matching else None
