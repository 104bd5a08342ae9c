"""What earlier work on a dataset already computed, so that preparing it again does only the rest.

Two kinds of work are kept:

- **scan results**, per file, keyed by where the file is read, its size and modification time,
  and the settings the scan depends on. A finished dataset keeps them in its `scan.parquet`, so
  adding one file to a folder of thousands scans one file.
- **encoded rows**, keyed by their content (the SHA-256 of the file, or of both files of a mix,
  the mix amount) and the codec. A finished dataset's own rows serve again for unchanged files.

While a build runs, each batch of results is kept as it arrives in a progress folder beside the
dataset (`.NAME.progress/`; samplegen.platform.progress_parts).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from samplegen.dsp.config import CodecConfig
from samplegen.platform.dataset_pipeline import META_SCHEMA, SCAN_OUTPUT_SCHEMA
from samplegen.platform.datasets import DATASET_VERSION, DatasetError, tensor_values
from samplegen.platform.progress_parts import kept_parts, read_part, write_part

SCAN_FILE = "scan.parquet"
# A file modified this close to its listing is scanned again next time (see ScanCache.table).
SETTLE_NS = 2_000_000_000
_SCAN_RESULT_NAMES = [n for n in SCAN_OUTPUT_SCHEMA.names if n != "index"]
SCAN_CACHE_SCHEMA = pa.schema(
    [
        ("read", pa.string()),
        ("size", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("scan_key", pa.string()),
        *(SCAN_OUTPUT_SCHEMA.field(n) for n in _SCAN_RESULT_NAMES),
    ]
)


def scan_key(config: CodecConfig, settings: Mapping[str, Any]) -> str:
    """What a file's scan result depends on besides the file: the codec and the pitch check."""
    relevant = {k: settings.get(k) for k in ("notes", "pitch_check", "pitch_tolerance")}
    return _digest({"version": DATASET_VERSION, "codec": config.to_dict(), **relevant})


def row_key(sha_a: str, sha_b: str | None, mix: float | None, codec_fingerprint: str) -> str:
    """What an encoded row depends on: its file's content (both files and the amount for a mix)
    and the codec. Rows of the same content share one key whatever their name or split."""
    amount = None if mix is None else float(np.float32(mix))
    return _digest([DATASET_VERSION, sha_a, sha_b, amount, codec_fingerprint])


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:32]


@dataclass
class ScanCache:
    """Scan results found in earlier work, looked up by (read path, size, mtime)."""

    key: str
    found: dict[tuple[str, int, int], dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, key: str, files: Iterable[Path]) -> ScanCache:
        """The results among `files` (Parquet of SCAN_CACHE_SCHEMA) made with `key`."""
        cache = cls(key)
        for path in files:
            table = read_part(path, SCAN_CACHE_SCHEMA.names)
            if table is None:
                continue
            for row in table.to_pylist():
                if row["scan_key"] == key:
                    where = (row.pop("read"), row.pop("size"), row.pop("mtime_ns"))
                    row.pop("scan_key")
                    cache.found[where] = row
        return cache

    def get(self, read: str, size: int, mtime_ns: int | None) -> dict[str, Any] | None:
        """The scan result of the file, or None when it has to be scanned."""
        if mtime_ns is None:  # a store that gives no modification time: always scanned again
            return None
        return self.found.get((read, size, mtime_ns))

    def table(
        self,
        results: Sequence[tuple[str, int, int | None, Mapping[str, Any]]],
        listed_at_ns: int,
    ) -> pa.Table:
        """`results` ((read, size, mtime, scan result) each) as a table to keep, without the files
        modified within SETTLE_NS of `listed_at_ns` (when their listing began): a file rewritten
        that soon after could keep its size and, on a coarse clock, its modification time, so its
        result is not trusted to a later run (git's "racily clean" rule)."""
        rows = [
            {
                "read": read,
                "size": size,
                "mtime_ns": mtime,
                "scan_key": self.key,
                **{n: result.get(n) for n in _SCAN_RESULT_NAMES},
            }
            for read, size, mtime, result in results
            if mtime is not None and mtime < listed_at_ns - SETTLE_NS
        ]
        return pa.Table.from_pylist(rows, schema=SCAN_CACHE_SCHEMA)


def _kept_batches(path: Path) -> Iterator[pa.RecordBatch]:
    """The key, `peak` and `x` columns of a file of kept encoded rows, 64 rows at a time; a file
    that has gone or cannot be read since it was indexed is a DatasetError naming it."""
    try:
        parquet = pq.ParquetFile(path)
        names = parquet.schema_arrow.names
        columns = ["row_key"] if "row_key" in names else list(_DATASET_KEY_COLUMNS)
        yield from parquet.iter_batches(columns=[*columns, "peak", "x"], batch_size=64)
    except (OSError, pa.ArrowException) as exc:
        raise DatasetError(
            f"{path}: its encoded rows cannot be read ({exc}); run again, with --force if this "
            "is the finished dataset's own file, to encode those files anew"
        ) from exc


# What keys a finished dataset's row: its file's content, or for a mix the paths of its two files
# (whose content the dataset's plain rows record) and the amount.
_DATASET_KEY_COLUMNS = ("sha256", "mix", "path", "parent_b")


def _contents(dataset_files: Iterable[Path]) -> dict[str, str]:
    """The content (SHA-256) of every file that a plain row of the finished dataset holds, by path."""
    contents: dict[str, str] = {}
    for path in dataset_files:
        table = read_part(path, ["path", "sha256", "mix"])
        if table is None:
            continue
        paths, shas, mixes = (table.column(c).to_pylist() for c in ("path", "sha256", "mix"))
        for name, sha, mix in zip(paths, shas, mixes, strict=True):
            if sha is not None and mix is None:
                contents[name] = sha
    return contents


@dataclass
class EncodedRows:
    """Where each already encoded row is: the Parquet files holding `row_key`, `peak` and `x`
    (the progress folder's parts) or the finished dataset's splits, whose plain rows are keyed by
    their file's content and whose mixes by their two files' content (`contents`) and amount."""

    codec: CodecConfig
    where: dict[str, Path] = field(default_factory=dict)
    contents: dict[str, str] = field(default_factory=dict)

    @classmethod
    def find(
        cls, codec: CodecConfig, parts: Iterable[Path], dataset_files: Iterable[Path]
    ) -> EncodedRows:
        """Index the rows of `parts` and of the finished dataset's `dataset_files` (same codec)."""
        dataset_files = list(dataset_files)
        found = cls(codec, contents=_contents(dataset_files))
        for path in parts:
            table = read_part(path, ["row_key"])
            for key in [] if table is None else found._keys(table):
                found.where.setdefault(key, path)
        for path in dataset_files:
            table = read_part(path, _DATASET_KEY_COLUMNS)
            for key in [] if table is None else found._keys(table):
                if key:  # "": a mix of a file the dataset no longer holds a plain row of
                    found.where.setdefault(key, path)
        return found

    def _keys(self, table: pa.Table | pa.RecordBatch) -> list[str]:
        if "row_key" in table.schema.names:
            return table.column("row_key").to_pylist()
        fp = self.codec.fingerprint()
        columns = (table.column(c).to_pylist() for c in _DATASET_KEY_COLUMNS)
        keys = []
        for sha, mix, path, parent_b in zip(*columns, strict=True):
            if mix is None:
                keys.append("" if sha is None else row_key(sha, None, None, fp))
                continue
            first, second = self.contents.get(path), self.contents.get(parent_b)
            keys.append("" if first is None or second is None else row_key(first, second, mix, fp))
        return keys

    def tables(self, rows: Sequence[Mapping[str, Any]]) -> Iterator[pa.Table]:
        """Tables of the encode stage's output (metadata, `changed`, `x`) for every row of `rows`
        (ENCODE_INPUT_SCHEMA dicts with a `row_key`) found here, read file by file."""
        from ray.data.extensions import ArrowTensorArray

        wanted: dict[str, list[Mapping[str, Any]]] = {}
        for row in rows:
            wanted.setdefault(row["row_key"], []).append(row)
        by_file: dict[Path, set[str]] = {}
        for key in wanted:
            by_file.setdefault(self.where[key], set()).add(key)
        for path, keys in by_file.items():
            for batch in _kept_batches(path):
                batch_keys = self._keys(batch)
                values = tensor_values(batch.column("x")).reshape(batch.num_rows, *self.codec.shape)
                peaks = batch.column("peak").to_pylist()
                meta: list[dict[str, Any]] = []
                x = []
                for i, key in enumerate(batch_keys):
                    if key not in keys:
                        continue
                    keys.discard(key)  # the first copy serves every row of that content
                    for row in wanted[key]:
                        meta.append(
                            {**{n: row.get(n) for n in META_SCHEMA.names}, "peak": peaks[i]}
                        )
                        x.append(values[i])
                if meta:
                    table = pa.Table.from_pylist(meta, schema=META_SCHEMA)
                    yield table.append_column(
                        "changed", pa.array([False] * len(meta))
                    ).append_column(
                        "x", ArrowTensorArray.from_numpy(np.stack(x).astype(np.float32))
                    )
            if keys:
                raise DatasetError(
                    f"{path}: {len(keys)} encoded rows changed while being read; run again"
                )


@dataclass(frozen=True)
class Progress:
    """The progress folder of one build: it keeps each batch of work as it is done."""

    folder: Path

    def scan_parts(self) -> list[Path]:
        """Scan results kept by interrupted builds."""
        return kept_parts(self.folder, "scan")

    def encoded_parts(self) -> list[Path]:
        """Encoded rows kept by interrupted builds."""
        return kept_parts(self.folder, "encoded")

    def keep_scan(self, table: pa.Table) -> None:
        """Keep a batch of scan results (SCAN_CACHE_SCHEMA)."""
        if table.num_rows:
            write_part(self.folder, "scan", table)

    def keep_encoded(self, table: pa.Table) -> None:
        """Keep a batch of the encode stage's output (its rows' `row_key`, `peak` and `x`)."""
        if table.num_rows:
            write_part(self.folder, "encoded", table.select(["row_key", "peak", "x"]))

    def remove(self) -> None:
        """Drop the kept work: the build it belonged to has finished."""
        shutil.rmtree(self.folder, ignore_errors=True)
