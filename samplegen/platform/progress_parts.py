"""Work kept as it is done: small Parquet parts in a hidden folder beside what is being built.

A long build (a dataset, a chain's encodings) writes each batch of its results as one part,
atomically, as soon as the batch is done. An interrupted build (Ctrl-C, SIGTERM, a crash, a killed
machine) leaves its parts; the next build of the same thing reads them back and does only the
rest; a build that finishes removes the folder.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from samplegen.atomic import write_atomic


def progress_folder(out: Path) -> Path:
    """Where an unfinished build of `out` keeps its work (a hidden sibling)."""
    return out.parent / f".{out.name}.progress"


def kept_parts(folder: Path, prefix: str) -> list[Path]:
    """The parts named `prefix` in `folder` (none when it does not exist)."""
    return sorted(folder.glob(f"{prefix}-*.parquet")) if folder.is_dir() else []


def read_part(path: Path, columns: Sequence[str] | None = None) -> pa.Table | None:
    """A part's table, or None when it cannot be read: its work is then simply done again."""
    # Parts are written atomically, but a disk may still hand back a damaged one.
    try:
        return pq.read_table(path, columns=None if columns is None else list(columns))
    except (OSError, pa.ArrowException):
        return None


def write_part(folder: Path, prefix: str, table: pa.Table) -> Path:
    """Keep `table` as a new part named `prefix` in `folder`, atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    name = folder / f"{prefix}-{uuid.uuid4().hex}.parquet"
    write_atomic(name, lambda tmp: pq.write_table(table, tmp))
    return name
