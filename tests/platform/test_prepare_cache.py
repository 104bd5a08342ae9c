"""The work kept between dataset builds: which scan results are trusted, and that damaged kept
work is done again rather than stopping a build (real Parquet files)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from dataset_helpers import SMALL

from samplegen.platform.datasets import DatasetError
from samplegen.platform.prepare_cache import (
    SETTLE_NS,
    EncodedRows,
    Progress,
    ScanCache,
    row_key,
    scan_key,
)

SETTINGS = {"notes": [48, 60, 72], "pitch_check": False, "pitch_tolerance": 0.1, "seed": 0}


def _kept(progress: Progress, key: str) -> dict[str, float]:
    cache = ScanCache.load(key, progress.scan_parts())
    return {read: r["peak"] for (read, _size, _mtime), r in cache.found.items()}


def test_scan_results_of_settled_files_are_kept_and_found_by_path_size_and_time() -> None:
    key = scan_key(SMALL, SETTINGS)
    cache = ScanCache(key)
    now = time.time_ns()
    result = {"status": "kept", "sha256": "ab", "peak": 0.5}
    table = cache.table(
        [
            ("old.wav", 10, now - 10 * SETTLE_NS, result),
            ("new.wav", 10, now - SETTLE_NS // 2, result),  # too recent to be trusted later
            ("remote.wav", 10, None, result),  # no modification time: always scanned
        ],
        listed_at_ns=now,
    )
    assert table.column("read").to_pylist() == ["old.wav"]


def test_the_scan_key_follows_the_codec_and_pitch_check_but_not_the_seed() -> None:
    key = scan_key(SMALL, SETTINGS)
    assert scan_key(SMALL, {**SETTINGS, "seed": 5}) == key
    assert scan_key(SMALL, {**SETTINGS, "pitch_check": True}) != key
    assert scan_key(SMALL.replace(mu=16.0), SETTINGS) != key


def test_damaged_kept_work_is_done_again_and_the_rest_is_used(tmp_path: Path) -> None:
    from ray.data.extensions import ArrowTensorArray

    progress = Progress(tmp_path / ".ds.progress")
    key = scan_key(SMALL, SETTINGS)
    now = time.time_ns()
    cache = ScanCache(key)
    progress.keep_scan(cache.table([("a.wav", 1, 0, {"status": "kept", "peak": 0.25})], now))
    progress.keep_scan(cache.table([("b.wav", 1, 0, {"status": "kept", "peak": 0.75})], now))
    fp = SMALL.fingerprint()
    x = np.arange(2 * int(np.prod(SMALL.shape)), dtype=np.float32).reshape(2, *SMALL.shape)
    encoded = pa.table(
        {
            "row_key": [row_key("a", None, None, fp), row_key("b", "c", 0.4, fp)],
            "peak": pa.array([0.25, 0.5], pa.float32()),
            "x": ArrowTensorArray.from_numpy(x),
        }
    )
    progress.keep_encoded(encoded)
    assert _kept(progress, key) == {"a.wav": 0.25, "b.wav": 0.75}
    # A part cut short (a disk that lost its end) is left out: that file is scanned again.
    damaged = progress.scan_parts()[0]
    damaged.write_bytes(damaged.read_bytes()[:40])
    assert len(_kept(progress, key)) == 1
    assert _kept(progress, scan_key(SMALL.replace(mu=16.0), SETTINGS)) == {}

    rows = EncodedRows.find(SMALL, progress.encoded_parts(), [])
    assert set(rows.where) == set(encoded.column("row_key").to_pylist())
    meta = {n: None for n in ("name", "path", "category", "note", "note_name", "velocity")}
    meta |= {n: None for n in ("program", "group", "split", "sha256", "parent_b", "mix")}
    wanted = [
        {**meta, "name": "mix", "augmented": True, "row_key": row_key("b", "c", 0.4, fp)},
        {**meta, "name": "one", "augmented": False, "row_key": row_key("a", None, None, fp)},
        {**meta, "name": "same", "augmented": False, "row_key": row_key("a", None, None, fp)},
    ]
    (table,) = rows.tables(wanted)
    got = dict(zip(table.column("name").to_pylist(), table.column("peak").to_pylist(), strict=True))
    assert got == {"one": 0.25, "same": 0.25, "mix": 0.5}  # rows of the same content share it
    values = table.column("x").combine_chunks().storage.flatten().to_numpy()
    by_name = values.reshape(3, *SMALL.shape)
    order = table.column("name").to_pylist()
    np.testing.assert_array_equal(by_name[order.index("mix")], x[1])
    np.testing.assert_array_equal(by_name[order.index("same")], x[0])
    # A part gone between indexing and reading is named, not a traceback.
    gone = EncodedRows.find(SMALL, progress.encoded_parts(), [])
    kept_part = progress.encoded_parts()[0]
    saved = kept_part.read_bytes()
    kept_part.unlink()
    with pytest.raises(DatasetError, match=f"{kept_part}: its encoded rows cannot be read"):
        list(gone.tables(wanted))
    kept_part.write_bytes(saved)
    progress.encoded_parts()[0].write_bytes(b"PAR1 not really")
    assert EncodedRows.find(SMALL, progress.encoded_parts(), []).where == {}
    progress.remove()
    assert not progress.folder.exists()
