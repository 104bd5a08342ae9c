"""The study's own epoch log: which values a row keeps, how a row replaces its epoch's, the file's
text (tests/platform/test_study.py checks it across a real interrupted and resumed study)."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow.fs as pafs

from samplegen.platform.epoch_log import (
    EPOCH_LOG_DIR,
    format_log,
    log_row,
    merge_row,
    parse_log,
    read_epoch_logs,
)


def test_a_row_keeps_the_plain_values_of_a_result_that_names_its_epoch() -> None:
    result = {"epoch": 3, "val_loss": 1.5, "status": "running", "done": False, "config": {"a": 1}}
    assert log_row({**result, "hist": [1, 2], "note": None}) == {
        "epoch": 3,
        "val_loss": 1.5,
        "status": "running",
        "done": False,
        "note": None,
    }
    assert log_row({"val_loss": 1.0}) is None
    assert log_row({"epoch": True}) is None


def test_an_epoch_trained_again_replaces_its_row_and_rows_stay_in_epoch_order() -> None:
    rows: list[dict[str, object]] = []
    for epoch, restored in ((1, 0), (2, 0), (3, 0), (3, 2), (4, 2)):
        rows = merge_row(rows, {"epoch": epoch, "restored_from": restored})
    assert [(r["epoch"], r["restored_from"]) for r in rows] == [(1, 0), (2, 0), (3, 2), (4, 2)]
    # A finished trial's result reported again (epoch == restored_from) keeps one row.
    assert len(merge_row(rows, {"epoch": 4, "restored_from": 4})) == 4
    assert [r["epoch"] for r in merge_row(rows[1:], {"epoch": 1})] == [1, 2, 3, 4]


def test_the_file_round_trips_writes_non_finite_numbers_as_null_and_skips_a_cut_line() -> None:
    rows = [{"epoch": 1, "val_loss": 2.0}, {"epoch": 2, "val_loss": math.nan}]
    text = format_log(rows)
    assert "NaN" not in text and parse_log(text) == [rows[0], {"epoch": 2, "val_loss": None}]
    assert parse_log(text + '{"epoch": 3, "val_lo') == parse_log(text)
    assert parse_log('["not a row"]\n{"no": "epoch"}\n') == []


def test_the_logs_of_a_study_folder_by_trial(tmp_path: Path) -> None:
    fs = pafs.LocalFileSystem()
    assert read_epoch_logs(fs, str(tmp_path)) == {}
    (tmp_path / EPOCH_LOG_DIR).mkdir()
    (tmp_path / EPOCH_LOG_DIR / "a1.jsonl").write_text(format_log([{"epoch": 1}]))
    (tmp_path / EPOCH_LOG_DIR / "b2.jsonl").write_text("")
    (tmp_path / EPOCH_LOG_DIR / "notes.txt").write_text('{"epoch": 1}\n')
    assert read_epoch_logs(fs, str(tmp_path)) == {"a1": [{"epoch": 1}]}
