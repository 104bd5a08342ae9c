"""Keeps the last whole copy of a study's Tune snapshot, so a kill mid-save never blocks a resume.

Tune saves its experiment state, its searcher's state and tuner.pkl in a driver staging folder,
then copies them into the study folder with `pyarrow.fs.copy_files`, which on a local or mounted
folder truncates each file and writes it in place. A driver killed during that copy leaves a file
cut short, and `Tuner.restore` then fails on it for good. After every snapshot that reached the
study folder whole, `SnapshotBackup.poll` copies the set of state files into
`.snapshot-backup/set-NNNNNN/` (its `set.json` written last marks it complete), and
`snapshot_repair.restore_cut_snapshots` puts the newest set back before a resume. Object stores
replace whole objects, so only local folders are kept this way.
"""

from __future__ import annotations

import fnmatch
import io
import json
import logging
import os
import pickletools
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from samplegen.atomic import write_bytes_atomic

BACKUP_DIR = ".snapshot-backup"
SET_MARKER = "set.json"
SETS_KEPT = 2
# What Tune reads back on restore (the newest of each pattern, and tuner.pkl). Two of the `.json`
# names hold cloudpickle data: whole-ness is judged by content, not by name.
STATE_PATTERNS = (
    "experiment_state-*.json",
    "basic-variant-state-*.json",
    "search_gen_state-*.json",
    "searcher-state-*.pkl",
    "tuner.pkl",
)


def is_state_file(name: str) -> bool:
    """Whether a file of the study folder's top level is part of Tune's snapshot."""
    return any(fnmatch.fnmatchcase(name, p) for p in STATE_PATTERNS)


def is_whole(data: bytes) -> bool:
    """Whether a saved state file is complete: JSON that parses, or a pickle stream whose opcodes
    run to their STOP (walked with `pickletools`, never loaded)."""
    if data[:1] == b"\x80":
        try:
            last = None
            for opcode, _, _ in pickletools.genops(io.BytesIO(data)):
                last = opcode.name
        except Exception:
            return False
        return last == "STOP"
    try:
        json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return False
    return True


def state_files(root: Path) -> dict[str, tuple[int, int]]:
    """{name: (size, mtime in ns)} of the state files in the study folder's top level."""
    found = {}
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.is_file() and is_state_file(entry.name):
                st = entry.stat()
                found[entry.name] = (st.st_size, st.st_mtime_ns)
    return found


def backup_sets(root: Path) -> list[Path]:
    """The complete backup sets of a study, oldest first."""
    return [p for p in _numbered_sets(root / BACKUP_DIR) if (p / SET_MARKER).is_file()]


def _numbered_sets(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    sets = [p for p in folder.glob("set-*") if p.is_dir() and p.name[4:].isdigit()]
    return sorted(sets, key=lambda p: int(p.name[4:]))


@dataclass
class SnapshotBackup:
    """Copies a study's state files aside each time Tune has saved a whole new set of them."""

    root: Path
    interval_s: float = 0.25
    _last_poll: float = float("-inf")
    _saved: dict[str, tuple[int, int]] | None = None

    def poll(self, force: bool = False) -> Path | None:
        """Back up the current state files if they changed and are all whole; returns the new
        set's folder, or None when nothing was written. At most once per `interval_s`."""
        now = time.monotonic()
        if not force and now - self._last_poll < self.interval_s:
            return None
        self._last_poll = now
        if not self.root.is_dir():
            return None
        before = state_files(self.root)
        if not before or before == self._saved:
            return None
        contents = {}
        for name in before:
            try:
                contents[name] = (self.root / name).read_bytes()
            except FileNotFoundError:
                return None
        # A copy that went on while these were read would mix two snapshots: wait for the next.
        if state_files(self.root) != before or not all(map(is_whole, contents.values())):
            return None
        written = self._write_set(contents)
        self._saved = before
        return written

    def _write_set(self, contents: dict[str, bytes]) -> Path:
        folder = self.root / BACKUP_DIR
        folder.mkdir(exist_ok=True)
        numbered = _numbered_sets(folder)
        target = folder / f"set-{int(numbered[-1].name[4:]) + 1 if numbered else 1:06d}"
        target.mkdir()
        for name, data in contents.items():
            (target / name).write_bytes(data)
        # Written last: a set without its marker was cut short and is never restored.
        marker = {"files": sorted(contents), "time": time.time()}
        write_bytes_atomic(target / SET_MARKER, json.dumps(marker).encode())
        # Older sets go, and any a kill cut short.
        kept = backup_sets(self.root)[-SETS_KEPT:]
        for old in _numbered_sets(folder):
            if old not in kept:
                shutil.rmtree(old, ignore_errors=True)
        return target


def snapshot_backup_callback_class() -> type:
    """The Tune callback that runs `SnapshotBackup.poll` as the study goes (built on demand: Ray is
    imported only here)."""
    from ray.tune import Callback

    class SnapshotBackupCallback(Callback):
        """Backs up the study folder's Tune snapshot after each whole save."""

        def __init__(self, root: str) -> None:
            self.backup = SnapshotBackup(Path(root))

        def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
            self._poll(force=False)

        def on_experiment_end(self, trials: list, **info: Any) -> None:
            self._poll(force=True)

        def _poll(self, force: bool) -> None:
            try:
                self.backup.poll(force=force)
            except OSError as exc:  # a backup that failed must not stop the study
                logging.getLogger(__name__).warning(
                    "%s: could not back up the study's snapshot (%s); a kill while Tune saves "
                    "it could then block a resume",
                    self.backup.root,
                    exc,
                )

    return SnapshotBackupCallback
