"""Each trial's epochs as the study's driver received them: `<study>/epochs/<trial_id>.jsonl`.

Tune keeps a trial's results in the trial folder's result.json, but a resumed driver sometimes
writes that file afresh from its staging copy, and the epochs from before the interruption are
gone from it. This log is the study's own: it sits outside Tune's trial folders, a driver reads it
back before adding to it, so an interrupted and resumed study keeps every epoch. A driver's first
write to a trial's log replaces the whole file (atomically on a local folder; object stores
replace whole objects), as does an epoch trained again after a restore, which replaces the row
it had; a new epoch on a local folder is appended.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

EPOCH_LOG_DIR = "epochs"


def log_row(result: Mapping[str, Any]) -> dict[str, Any] | None:
    """The plain values of one reported result (config and nested values left out); None when
    it names no epoch."""
    epoch = result.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int):
        return None
    return {k: v for k, v in result.items() if v is None or isinstance(v, str | bool | int | float)}


def merge_row(rows: list[dict[str, Any]], row: dict[str, Any]) -> list[dict[str, Any]]:
    """`rows` with `row` in its epoch's place: a row for the same epoch is replaced (trained
    again after a restore, or a finished trial's result reported again), ordered by epoch."""
    kept = [r for r in rows if r.get("epoch") != row["epoch"]]
    kept.append(row)
    kept.sort(key=lambda r: int(r["epoch"]))
    return kept


def parse_log(text: str) -> list[dict[str, Any]]:
    """Rows of a log file; a line that does not parse (a copy cut short elsewhere) is skipped."""
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("epoch"), int):
            rows.append(row)
    return rows


def format_log(rows: list[dict[str, Any]]) -> str:
    """The file's text: one JSON object per line (non-finite numbers as null)."""
    return "".join(json.dumps(_finite(r), sort_keys=True) + "\n" for r in rows)


def _finite(row: dict[str, Any]) -> dict[str, Any]:
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}


def read_epoch_logs(fs: Any, study_root: str) -> dict[str, list[dict[str, Any]]]:
    """Every trial's logged epochs under a study folder on pyarrow filesystem `fs`, by trial id."""
    import pyarrow.fs as pafs

    folder = f"{study_root.rstrip('/')}/{EPOCH_LOG_DIR}"
    if fs.get_file_info(folder).type != pafs.FileType.Directory:
        return {}
    logs: dict[str, list[dict[str, Any]]] = {}
    for info in fs.get_file_info(pafs.FileSelector(folder)):
        if info.type != pafs.FileType.File or not info.base_name.endswith(".jsonl"):
            continue
        with fs.open_input_stream(info.path) as fh:
            rows = parse_log(fh.read().decode())
        if rows:
            logs[info.base_name.removesuffix(".jsonl")] = rows
    return logs


def epoch_log_callback_class() -> type:
    """The Tune callback that writes the log (built on demand: Ray is imported only here)."""
    from ray.tune import Callback

    from samplegen.platform.downloads import write_file

    class EpochLog(Callback):
        """Adds each result to its trial's log in the study folder."""

        def __init__(self) -> None:
            self.rows: dict[str, list[dict[str, Any]]] = {}

        def on_trial_result(
            self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
        ) -> None:
            row = log_row(result)
            if row is None:
                return
            # The experiment folder as this driver sees it: a moved or resumed study writes to
            # where it is now.
            fs = trial.storage.storage_filesystem
            path = f"{trial.storage.experiment_fs_path}/{EPOCH_LOG_DIR}/{trial.trial_id}.jsonl"
            rows = self.rows.get(trial.trial_id)
            # The first write of a driver rewrites the file whole (dropping a line that a killed
            # driver left cut short), as does an epoch trained again; a new epoch on a local or
            # mounted folder is appended, so a long trial does not rewrite its log every epoch.
            append = (
                rows is not None
                and bool(rows)
                and row["epoch"] > rows[-1]["epoch"]
                and _appendable(fs)
            )
            if rows is None:
                rows = _read(fs, path)
            rows = merge_row(rows, row)
            self.rows[trial.trial_id] = rows
            if append:
                with open(path, "a", encoding="utf-8") as fh:
                    fh.write(format_log([row]))
            else:
                write_file(fs, path, format_log(rows).encode())

        def __getstate__(self) -> dict[str, Any]:
            # Tune pickles callbacks with the study; a resumed driver reads the files instead.
            return {"rows": {}}

    return EpochLog


def _appendable(fs: Any) -> bool:
    import pyarrow.fs as pafs

    return isinstance(fs, pafs.LocalFileSystem)


def _read(fs: Any, path: str) -> list[dict[str, Any]]:
    import pyarrow.fs as pafs

    if fs.get_file_info(path).type != pafs.FileType.File:
        return []
    with fs.open_input_stream(path) as fh:
        return parse_log(fh.read().decode())
