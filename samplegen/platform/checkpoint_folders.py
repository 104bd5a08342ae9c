"""A trial's checkpoint folders as Tune stores them (`checkpoint_NNNNNN`), and which is newest.

Torch-free, so the driver's modules can read folders without importing it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

STATE_JSON = "state.json"  # the checkpoint's metadata, its epoch among them (training.py writes it)


def checkpoint_index(path: str) -> int:
    """N of a `checkpoint_NNNNNN` folder (a path or a bare name); -1 for anything else."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    if not name.startswith("checkpoint_"):
        return -1
    try:
        return int(name.removeprefix("checkpoint_"))
    except ValueError:
        return -1


def checkpoints_newest_first(fs: Any, paths: Iterable[str]) -> list[str]:
    """Checkpoint folders on pyarrow filesystem `fs`, newest first by the epoch their state.json
    records (the folder number breaks ties; an unreadable one comes last).

    The number alone misleads after a killed driver: Tune resumes numbering from its last
    snapshot, which may be older than the trial's last checkpoints, so until they are written
    over, higher-numbered folders can hold older epochs than the one just saved."""

    def epoch(path: str) -> int:
        try:
            with fs.open_input_stream(f"{path.rstrip('/')}/{STATE_JSON}") as fh:
                return int(json.loads(fh.read().decode())["epoch"])
        except Exception:  # missing, cut short, or not a training checkpoint
            return -1

    return sorted(paths, key=lambda p: (epoch(p), checkpoint_index(p)), reverse=True)


def newer_than(fs: Any, folders: Iterable[str], given: str | None) -> list[str]:
    """The checkpoint `folders` that rank above `given` (all of them when None), newest first."""
    ranked = checkpoints_newest_first(fs, folders)
    if given is None:
        return ranked
    keys = [p.rstrip("/") for p in ranked]
    if given.rstrip("/") not in keys:
        # Tune's own checkpoint is not among them: only folders numbered after it are newer.
        return [p for p in ranked if checkpoint_index(p) > checkpoint_index(given)]
    return ranked[: keys.index(given.rstrip("/"))]
