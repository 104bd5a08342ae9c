"""Datasets: prepare (Ray Data, cached by fingerprint), load (numpy), and share through Ray's object store.

Dataset folder layout::

    DATASET/
      data/train.parquet       one file per split; each also holds the `split` column
      data/validation.parquet
      data/test.parquet
      dataset.json             codec settings, shape, fingerprint, counts, split fractions, source
      report.json, report.md   every file seen with its status (kept / rejected / filtered) and why
      scan.parquet             each file's scan result, by path, size and time (for the next build)

Every Parquet file has the metadata columns of `dataset_pipeline.META_SCHEMA` (name, path,
category, note, note_name, velocity, program, group, split, sha256, peak, augmented, parent_b, mix)
and `x`, a fixed-shape float32 tensor column (Ray's ArrowTensorTypeV2, stored as a large list of
floats) of shape `codec.shape`. A dataset is built in a hidden sibling folder and renamed into
place, so an interrupted prepare never leaves a folder that loads; what it had scanned and
encoded is kept beside it (samplegen.platform.prepare_cache) for the next build.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import itertools
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from samplegen.atomic import (
    new_build_folder,
    recover_folder,
    replace_folder,
    write_json_atomic,
    write_text_atomic,
)
from samplegen.dsp.config import CodecConfig
from samplegen.errors import SamplegenError
from samplegen.platform.augment import AugmentError, parse_mix_range
from samplegen.platform.splits import SPLIT_NAMES, SplitFractions
from samplegen.redact import redact

DATASET_FORMAT = "samplegen-dataset"
DATASET_VERSION = 1
DEFAULT_NOTES = "C3,C4,C5"
# How many files an error about all of them names (the rest are counted).
NAMED_IN_ERRORS = 8


class DatasetError(SamplegenError):
    """A dataset that cannot be prepared or loaded; the message names the path and the reason."""


@dataclass(frozen=True)
class DatasetSettings:
    """Everything besides the codec that decides a dataset's content (part of its fingerprint)."""

    notes: tuple[int, ...] | None = (48, 60, 72)
    pitch_check: bool = False
    pitch_tolerance: float = 0.1
    augment_mixes: int = 0
    mix_range: tuple[float, float] = (0.3, 0.7)
    splits: SplitFractions = field(default_factory=SplitFractions)
    seed: int = 0
    # Training-only notes of the SoundFonts' variation presets of the training programs
    # (samplegen.dsp.variations); the built-in FluidR3 library only.
    variations: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.pitch_tolerance < 1:
            raise DatasetError(f"pitch tolerance: must be in (0, 1), got {self.pitch_tolerance}")
        if self.augment_mixes < 0:
            raise AugmentError(f"augment mixes: must be >= 0, got {self.augment_mixes}")
        parse_mix_range(self.mix_range)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able settings, notes by name."""
        from samplegen.platform.names import midi_to_note

        return {
            "notes": None if self.notes is None else [midi_to_note(n) for n in self.notes],
            "pitch_check": self.pitch_check,
            "pitch_tolerance": self.pitch_tolerance,
            "augment_mixes": self.augment_mixes,
            "mix_range": list(self.mix_range),
            "splits": self.splits.as_dict(),
            "seed": self.seed,
            # Left out when off, so datasets made before the option keep their fingerprints.
            **({"variations": True} if self.variations else {}),
        }


@dataclass(frozen=True, eq=False)
class SplitData:
    """One split in memory: `x` float32 (N, *codec.shape) and `meta`, one dict per row.

    Rows are sorted by (augmented, name, path, parent_b), so row order does not depend on how the
    dataset was written. After `ray.get` from the object store, `x` is a read-only view of shared
    memory: copy it (`x.copy()`) before changing it in place.
    """

    name: str
    x: np.ndarray
    meta: list[dict[str, Any]]

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def column(self, key: str) -> list[Any]:
        """One metadata column as a list (e.g. ``column("category")``)."""
        return [row[key] for row in self.meta]

    def take(self, indices: Sequence[int] | np.ndarray) -> SplitData:
        """The rows at `indices`, in that order (copies `x`)."""
        idx = np.asarray(indices, dtype=np.int64)
        return SplitData(self.name, self.x[idx], [self.meta[i] for i in idx.tolist()])

    def diverse_subset(self, k: int) -> SplitData:
        """The `k` most diverse rows (see `samplegen.platform.subset.diverse_subset`)."""
        from samplegen.platform.subset import diverse_subset

        return self.take(diverse_subset(self.x, k))


@dataclass(frozen=True, eq=False)
class LoadedDataset:
    """A dataset in memory: its codec, fingerprint, dataset.json content and split tensors."""

    path: Path
    codec: CodecConfig
    fingerprint: str
    info: dict[str, Any]
    splits: dict[str, SplitData]


# ----------------------------------------------------------------------------------------------
# preparing


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:32]


def read_dataset_info(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """dataset.json of the dataset at `path`, or None when there is none (not a dataset)."""
    recover_folder(Path(path), "dataset.json")
    info_path = Path(path) / "dataset.json"
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{info_path}: unreadable dataset description ({exc})") from exc
    if not isinstance(info, dict) or info.get("format") != DATASET_FORMAT:
        raise DatasetError(f"{info_path}: not a samplegen dataset description")
    return info


def require_dataset_info(path: str | os.PathLike[str], label: str | None = None) -> dict[str, Any]:
    """dataset.json of the dataset at `path`; DatasetError naming `label` (default: the path) when
    there is none."""
    info = read_dataset_info(path)
    if info is None:
        raise DatasetError(
            f"{label or path}: not a samplegen dataset (no dataset.json); "
            "run `samplegen data prepare` first"
        )
    return info


def _check_output(out: Path) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(
            f"output {out}: cannot create its folder ({exc.strerror or exc})"
        ) from exc
    if not out.parent.is_dir() or not os.access(out.parent, os.W_OK | os.X_OK):
        raise DatasetError(f"output {out}: the folder {out.parent} is not writable")
    if out.exists():
        if not out.is_dir():
            raise DatasetError(f"output {out}: exists and is not a folder")
        if any(out.iterdir()) and not (out / "dataset.json").is_file():
            raise DatasetError(
                f"output {out}: exists, is not empty and is not a samplegen dataset; refusing to replace it"
            )


def check_prepare_inputs(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    library_cache: str | os.PathLike[str] | None = None,
) -> None:
    """The input checks `prepare_dataset` starts with: `out` is writable and not someone else's
    folder, and `source` exists and holds audio. Commands call it before they start Ray, so a typo
    fails in a second with the same message. (The built-in library is rendered here if missing.)"""
    from samplegen.platform.sources import resolve_source

    _check_output(Path(out).expanduser().absolute())
    resolve_source(str(source), library_cache=library_cache)


def _settings_from_args(
    notes: str | Sequence[str] | Sequence[int] | None,
    pitch_check: bool,
    pitch_tolerance: float,
    augment_mixes: int,
    mix_range: str | Sequence[float],
    splits: str | Sequence[float] | SplitFractions,
    seed: int,
    variations: bool = False,
) -> DatasetSettings:
    from samplegen.platform.names import note_to_midi, parse_notes

    try:
        if notes is None or isinstance(notes, str):
            midi = parse_notes(notes)
        else:
            midi = tuple(n if isinstance(n, int) else note_to_midi(n) for n in notes)
    except ValueError as exc:
        raise DatasetError(f"notes: {exc}") from exc
    fractions = splits if isinstance(splits, SplitFractions) else SplitFractions.parse(splits)
    return DatasetSettings(
        notes=None if midi is None else tuple(sorted(set(midi))),
        pitch_check=bool(pitch_check),
        pitch_tolerance=float(pitch_tolerance),
        augment_mixes=int(augment_mixes),
        mix_range=parse_mix_range(mix_range),
        splits=fractions,
        seed=int(seed),
        variations=bool(variations),
    )


def _describe_file(source: Any, f: Any, settings: DatasetSettings) -> dict[str, Any]:
    """Driver-side facts about one file: name-derived or library metadata, group, split, filter."""
    from samplegen.dsp.categories import category_from_name
    from samplegen.platform.names import (
        group_from_name,
        midi_to_note,
        note_from_name,
        velocity_from_name,
    )
    from samplegen.platform.splits import split_for_group

    lib = f.library
    note = lib.note if lib is not None and lib.note is not None else note_from_name(f.name)
    velocity = (
        lib.velocity if lib is not None and lib.velocity is not None else velocity_from_name(f.name)
    )
    program = lib.program if lib is not None else None
    category = lib.category if lib is not None and lib.category else category_from_name(f.name)
    group = f"p{program:03d}" if program is not None else group_from_name(f.name)
    entry: dict[str, Any] = {
        "path": f.rel,
        "name": f.name,
        "size": f.size,
        "status": None,
        "reason": None,
        "detail": None,
        "sha256": None,
        "note": note,
        "note_name": None if note is None else midi_to_note(note),
        "velocity": velocity,
        "program": program,
        "category": category,
        "group": group,
        "split": split_for_group(group, settings.splits),
    }
    if settings.notes is not None:
        wanted = ", ".join(midi_to_note(n) for n in settings.notes)
        if note is None:
            entry.update(
                status="filtered",
                reason="no_note",
                detail=f"no note (e.g. C4) in the name; wanted {wanted}",
            )
        elif note not in settings.notes:
            entry.update(
                status="filtered",
                reason="note_not_wanted",
                detail=f"{midi_to_note(note)} is not one of {wanted}",
            )
    return entry


def _name_grouping(source: Any) -> dict[str, int]:
    """The name-grouping rules' version, when a file grouped by its name (no program in a
    library's metadata) is grouped otherwise than the first rules did: such a dataset is prepared
    again, and every other one (the built-in library's) keeps its fingerprint."""
    from samplegen.platform.names import NAME_GROUPING_VERSION, regrouped

    changed = any(
        regrouped(f.name) for f in source.files if f.library is None or f.library.program is None
    )
    return {"grouping": NAME_GROUPING_VERSION} if changed else {}


def _listing_key(source: Any, settings: DatasetSettings, config: CodecConfig) -> str:
    return _digest(
        {
            "version": DATASET_VERSION,
            "codec": config.to_dict(),
            "settings": settings.to_dict(),
            "metadata": source.metadata_digest,
            "files": [(f.rel, f.size, f.mtime_ns) for f in source.files],
            **_name_grouping(source),
        }
    )


def _content_fingerprint(
    source: Any, settings: DatasetSettings, config: CodecConfig, files: Sequence[Mapping[str, Any]]
) -> str:
    return _digest(
        {
            "version": DATASET_VERSION,
            "codec": config.to_dict(),
            "settings": settings.to_dict(),
            "metadata": source.metadata_digest,
            "files": [(f["path"], f["size"], f["sha256"]) for f in files],
            **_name_grouping(source),
        }
    )


def _reject_duplicates(files: list[dict[str, Any]]) -> None:
    first_seen: dict[str, str] = {}
    for entry in files:  # already sorted by path
        if entry["status"] != "kept":
            continue
        earlier = first_seen.setdefault(entry["sha256"], entry["path"])
        if earlier != entry["path"]:
            entry.update(status="rejected", reason="duplicate", detail=f"same content as {earlier}")


def _row(entry: Mapping[str, Any], read: str) -> dict[str, Any]:
    return {
        "name": entry["name"],
        "path": entry["path"],
        "category": entry["category"],
        "note": entry["note"],
        "note_name": entry["note_name"],
        "velocity": entry["velocity"],
        "program": entry["program"],
        "group": entry["group"],
        "split": entry["split"],
        "sha256": entry["sha256"],
        "peak": entry["peak"],
        "augmented": False,
        "parent_b": None,
        "mix": None,
        "read_a": read,
        "read_b": None,
        "sha_a": entry["sha256"],
        "sha_b": None,
    }


def _mix_rows(rows: list[dict[str, Any]], settings: DatasetSettings) -> list[dict[str, Any]]:
    from samplegen.platform.augment import plan_mixes

    train = sorted((r for r in rows if r["split"] == "train"), key=lambda r: r["path"])
    if settings.augment_mixes == 0:
        return []
    plans = plan_mixes(
        [r["group"] for r in train],
        [r["note"] for r in train],
        settings.augment_mixes,
        settings.mix_range,
        settings.seed,
    )
    mixes = []
    for i, plan in enumerate(plans):
        a, b = train[plan.first], train[plan.second]
        same_note = a["note"] == b["note"]
        mixes.append(
            {
                **_row(a, a["read_a"]),
                "name": f"mix{i:05d}_{a['name']}+{b['name']}",
                "category": a["category"] if a["category"] == b["category"] else "Mixed",
                "note": a["note"] if same_note else None,
                "note_name": a["note_name"] if same_note else None,
                "velocity": None,
                "program": None,
                "group": "+".join(sorted({a["group"], b["group"]})),
                "split": "train",
                "sha256": None,
                "augmented": True,
                "parent_b": b["path"],
                "mix": plan.amount,
                "read_b": b["read_a"],
                "sha_b": b["sha256"],
            }
        )
    return mixes


VARIATION_SOURCES = ("builtin", "builtin:fluidr3")


def _variation_rows(
    rows: list[dict[str, Any]],
    settings: DatasetSettings,
    config: CodecConfig,
    library_cache: str | os.PathLike[str] | None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Training-only rows of the variation presets of the training split's programs, and a warning
    for each render the scan rejected (named, with the reason)."""
    import pyarrow.fs as pafs

    from samplegen.dsp.library import DEFAULT_NOTES, LibraryError
    from samplegen.dsp.variations import ensure_variations, read_variations, variation_settings
    from samplegen.platform.dataset_pipeline import KEPT, _scan_one
    from samplegen.platform.names import midi_to_hz, midi_to_note, note_to_midi

    programs = sorted(
        {r["program"] for r in rows if r["split"] == "train" and r["program"] is not None}
    )
    if not programs:
        return [], ["variations: the training split has no GM program, so none were added"]
    notes = [midi_to_note(n) for n in settings.notes or ()] or DEFAULT_NOTES
    try:
        folder = ensure_variations(variation_settings(programs, notes), cache_dir=library_cache)
    except LibraryError as exc:
        raise DatasetError(f"variations: {exc}") from exc
    fs = pafs.LocalFileSystem()
    out: list[dict[str, Any]] = []
    warnings: list[str] = []
    for v in read_variations(folder):
        path = str((folder / v.file).resolve())
        name = Path(v.file).stem
        note = note_to_midi(v.note)
        # Held to --pitch-check as the library's own notes are.
        targets = [midi_to_hz(note)] if settings.pitch_check else None
        scan = _scan_one(fs, path, name, note, config, targets, settings.pitch_tolerance)
        if scan["status"] != KEPT:
            warnings.append(f"variation {path} left out: {scan['reason']} ({scan.get('detail')})")
            continue
        entry = {
            "name": name,
            "path": f"variations/{v.file}",
            "category": v.category,
            "note": note,
            "note_name": v.note,
            "velocity": v.velocity,
            "program": v.program,
            "group": f"p{v.program:03d}",
            "split": "train",
            "sha256": scan["sha256"],
            "peak": scan["peak"],
        }
        out.append({**_row(entry, path), "augmented": True})
    return out, warnings


def _write_splits(tables: Any, data_dir: Path) -> dict[str, int]:
    """Stream encoded tables into one Parquet file per split; returns rows written per split."""
    writers: dict[str, pq.ParquetWriter] = {}
    counts = dict.fromkeys(SPLIT_NAMES, 0)
    schema: pa.Schema | None = None
    try:
        for table in tables:
            if isinstance(table, pa.RecordBatch):
                table = pa.Table.from_batches([table])
            if table.num_rows == 0:
                continue
            if pc.any(table["changed"]).as_py():
                bad = table.filter(table["changed"])["path"][0].as_py()
                raise DatasetError(
                    f"{bad}: the file changed while the dataset was being prepared; run again"
                )
            table = table.drop_columns(
                [c for c in ("changed", "row_key") if c in table.schema.names]
            )
            schema = schema or table.schema
            for split in SPLIT_NAMES:
                part = table.filter(pc.equal(table["split"], split))
                if part.num_rows == 0:
                    continue
                if split not in writers:
                    writers[split] = pq.ParquetWriter(data_dir / f"{split}.parquet", schema)
                writers[split].write_table(part.cast(schema))
                counts[split] += part.num_rows
    finally:
        for writer in writers.values():
            writer.close()
    if schema is not None:
        for split in SPLIT_NAMES:
            if split not in writers:
                pq.write_table(schema.empty_table(), data_dir / f"{split}.parquet")
    return counts


def _where(resolved: Any, i: int) -> tuple[str, int, int | None]:
    """Where file `i` of a source is read, its size and modification time (a scan's cache key)."""
    f = resolved.files[i]
    return f.path, f.size, f.mtime_ns


def _scan(
    resolved: Any,
    settings: DatasetSettings,
    config: CodecConfig,
    cache: Any,
    progress: Any,
    listed_at_ns: int,
    batch_size: int,
    say: Callable[[str], None],
) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]]]:
    """Every file of the source described (status, reason, note, group...), with the scan results
    by file index. A file that `cache` (a ScanCache) knows is not scanned again; each batch that
    is scanned is kept in `progress` as it comes back. Duplicates are marked rejected."""
    from samplegen.platform.dataset_pipeline import SCAN_INPUT_SCHEMA, run_scan
    from samplegen.platform.names import midi_to_hz
    from samplegen.platform.progress_count import Counter

    files = [_describe_file(resolved, f, settings) for f in resolved.files]
    to_scan = [i for i, e in enumerate(files) if e["status"] is None]
    scans: dict[int, dict[str, Any]] = {}
    for i in to_scan:
        hit = cache.get(*_where(resolved, i))
        if hit is not None:
            scans[i] = hit
    need = [i for i in to_scan if i not in scans]
    before = f", {len(scans)} scanned before" if scans else ""
    say(
        f"scanning {len(need)} of {len(files)} audio files from {resolved.spec} "
        f"({len(files) - len(to_scan)} filtered by note{before})"
    )
    scanned_count = Counter(len(need), "scanned", say)

    def keep_scans(table: pa.Table) -> None:
        done = [(*_where(resolved, r["index"]), r) for r in table.to_pylist()]
        progress.keep_scan(cache.table(done, listed_at_ns))
        scanned_count.add(len(done))

    if need:
        items = pa.Table.from_pylist(
            [
                {
                    "index": i,
                    "path": resolved.files[i].path,
                    "name": files[i]["name"],
                    "note": files[i]["note"],
                }
                for i in need
            ],
            schema=SCAN_INPUT_SCHEMA,
        )
        targets = None
        if settings.pitch_check:
            targets = [midi_to_hz(n) for n in settings.notes] if settings.notes else []
        scanned = run_scan(
            items,
            resolved.filesystem,
            config,
            targets,
            settings.pitch_tolerance,
            rows_per_block=max(batch_size, 16),
            on_table=keep_scans,
        )
        for result in scanned.to_pylist():
            scans[result.pop("index")] = result
    for i, result in scans.items():
        files[i].update(
            {k: v for k, v in result.items() if v is not None or k in ("reason", "detail")}
        )
    _reject_duplicates(files)
    return files, scans


def _dataset_rows(
    resolved: Any,
    files: list[dict[str, Any]],
    settings: DatasetSettings,
    config: CodecConfig,
    library_cache: str | os.PathLike[str] | None,
    say: Callable[[str], None],
) -> tuple[list[dict[str, Any]], list[str]]:
    """The dataset's rows (the kept files, their mixes, the variation presets' notes), each with
    its `row_key`, and the build's warnings. No kept file is a DatasetError saying why."""
    from samplegen.platform.prepare_cache import row_key

    if not any(e["status"] == "kept" for e in files):
        reasons: dict[str, int] = {}
        for e in files:
            reasons[e["reason"]] = reasons.get(e["reason"], 0) + 1
        summary = ", ".join(f"{r} {n}" for r, n in sorted(reasons.items()))
        # Named here, since no report is written for a dataset that is not made.
        shown = [f"{e['path']} ({e['reason']})" for e in files[:NAMED_IN_ERRORS]]
        more = len(files) - len(shown)
        raise DatasetError(
            f"source {resolved.spec}: no usable audio file among {len(files)} ({summary}): "
            + ", ".join(shown)
            + (f" and {more} more" if more else "")
        )
    rows = [_row(e, resolved.files[i].path) for i, e in enumerate(files) if e["status"] == "kept"]
    rows += _mix_rows(rows, settings)
    warnings: list[str] = []
    if settings.variations:
        extra, warnings = _variation_rows(rows, settings, config, library_cache)
        rows += extra
        say(f"added {len(extra)} training notes of variation presets of the training programs")
    warnings += [
        f"split {s!r} is empty (too few instrument groups for the fractions)"
        for s in SPLIT_NAMES
        if getattr(settings.splits, s) > 0 and not any(r["split"] == s for r in rows)
    ]
    for w in warnings:
        say(f"warning: {w}")
    codec_fingerprint = config.fingerprint()
    for r in rows:
        r["row_key"] = row_key(r["sha_a"], r["sha_b"], r["mix"], codec_fingerprint)
    return rows, warnings


def _encode_rows(
    rows: list[dict[str, Any]],
    filesystem: Any,
    config: CodecConfig,
    batch_size: int,
    progress: Any,
    say: Callable[[str], None],
) -> Iterator[pa.Table]:
    """The encode stage's output for `rows`, a batch at a time, each batch kept in `progress`
    (a prepare_cache.Progress) as it comes back."""
    from samplegen.platform.dataset_pipeline import ENCODE_INPUT_SCHEMA, run_encode
    from samplegen.platform.progress_count import Counter

    if not rows:
        return
    items = pa.Table.from_pylist(rows, schema=ENCODE_INPUT_SCHEMA)
    encoded_count = Counter(len(rows), "encoded", say)
    for table in run_encode(items, filesystem, config, rows_per_batch=batch_size):
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        progress.keep_encoded(table.filter(pc.invert(table["changed"])))
        encoded_count.add(table.num_rows)
        yield table


def _write_records(
    build: Path,
    resolved: Any,
    config: CodecConfig,
    settings: DatasetSettings,
    files: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    warnings: list[str],
    counts: dict[str, int],
    *,
    fingerprint: str,
    listing_key: str | None,
) -> dict[str, Any]:
    """Write the dataset's report (report.json, report.md) and, last, dataset.json, whose presence
    marks a whole build, into `build`; returns the report's counts."""
    from samplegen.platform.dataset_report import build_report, render_markdown

    public_rows = [
        {k: v for k, v in r.items() if k in ("split", "group", "category", "augmented")}
        for r in rows
    ]
    report = build_report(
        source=redact(resolved.spec),
        fingerprint=fingerprint,
        codec=config.to_dict(),
        settings={**settings.to_dict(), "source_kind": resolved.kind},
        files=files,
        rows=public_rows,
        other_files=resolved.other_files,
        warnings=warnings,
    )
    write_json_atomic(build / "report.json", report, default=str)
    write_text_atomic(build / "report.md", render_markdown(report))
    info = {
        "format": DATASET_FORMAT,
        "version": DATASET_VERSION,
        "fingerprint": fingerprint,
        "listing_key": listing_key,
        "source": redact(resolved.spec),
        "source_kind": resolved.kind,
        "codec": config.to_dict(),
        "codec_fingerprint": config.fingerprint(),
        "shape": list(config.shape),
        "settings": settings.to_dict(),
        "split_fractions": settings.splits.as_dict(),
        "counts": report["counts"],
        "rows_per_split": counts,
        "files": {s: f"data/{s}.parquet" for s in SPLIT_NAMES},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    write_json_atomic(build / "dataset.json", info, default=str)
    return dict(report["counts"])


@contextlib.contextmanager
def _building(out_path: Path) -> Iterator[Path]:
    """A new build folder (with its `data/`) for the dataset at `out_path`, moved into place when
    the block ends, and removed if it raises."""
    try:
        build = new_build_folder(out_path)
    except OSError as exc:
        raise DatasetError(
            f"output {out_path}: cannot write there ({exc.strerror or exc})"
        ) from exc
    try:
        (build / "data").mkdir()
        yield build
        replace_folder(build, out_path)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise


def prepare_dataset(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    config: CodecConfig | None = None,
    *,
    notes: str | Sequence[str] | Sequence[int] | None = DEFAULT_NOTES,
    pitch_check: bool = False,
    pitch_tolerance: float = 0.1,
    augment_mixes: int = 0,
    mix_range: str | Sequence[float] = (0.3, 0.7),
    splits: str | Sequence[float] | SplitFractions = (0.8, 0.1, 0.1),
    seed: int = 0,
    force: bool = False,
    library_cache: str | os.PathLike[str] | None = None,
    batch_size: int = 16,
    echo: Callable[[str], None] | None = print,
    variations: bool = False,
) -> Path:
    """Build the dataset of `source` at `out` (or reuse it when inputs and settings are unchanged).

    `source`: a folder (searched recursively), ``builtin`` / ``builtin:fluidr3`` /
    ``builtin:timgm6mb`` (the rendered library), or a pyarrow filesystem URI (``file://``, ``s3://``,
    ``gs://``). `notes`: the notes to keep, by name tokens in the file name (``"C3,C4,C5"``; None or
    ``"all"`` keeps every file); with `pitch_check` the audio must also sound within
    ±`pitch_tolerance` (relative) of the named note. `augment_mixes` training-only mixes of two
    training samples with a mix amount ~ U(`mix_range`), seeded by `seed`. `variations` (the
    built-in FluidR3 library only): add, as training-only rows of their program's group, the notes
    of the SoundFonts' variation presets of the training programs (samplegen.dsp.variations).
    `splits`: train, validation, test fractions of instrument groups. Runs on the current Ray cluster (Ray Data
    starts a local one if none is running). Returns `out`. Raises SamplegenError when the source
    is missing or has no usable file, a setting is invalid, or `out` cannot be written.
    """
    from samplegen.platform.prepare_cache import (
        SCAN_FILE,
        SETTLE_NS,
        EncodedRows,
        Progress,
        ScanCache,
        scan_key,
    )
    from samplegen.platform.progress_parts import progress_folder
    from samplegen.platform.sources import resolve_source

    say = echo or (lambda _msg: None)
    config = config or CodecConfig()
    if batch_size < 1:
        raise DatasetError(f"batch size: must be >= 1, got {batch_size}")
    settings = _settings_from_args(
        notes, pitch_check, pitch_tolerance, augment_mixes, mix_range, splits, seed, variations
    )
    if settings.variations and str(source) not in VARIATION_SOURCES:
        raise DatasetError(
            f"variations: source {source} has no variation presets; only the built-in FluidR3 "
            f"library does ({' or '.join(VARIATION_SOURCES)})"
        )
    out_path = Path(out).expanduser().absolute()
    _check_output(out_path)
    listed_at_ns = time.time_ns()
    resolved = resolve_source(str(source), library_cache=library_cache)

    # A listing that holds a file modified just before it was taken is not remembered: a rewrite
    # that soon could keep its size and (on a coarse clock) its time, and pass for the same file.
    settled = all(
        f.mtime_ns is not None and f.mtime_ns < listed_at_ns - SETTLE_NS for f in resolved.files
    )
    listing_key = _listing_key(resolved, settings, config) if settled else None
    existing = read_dataset_info(out_path)
    if (
        existing
        and not force
        and listing_key is not None
        and existing.get("listing_key") == listing_key
        and _complete(out_path, existing)
    ):
        say(
            f"reusing dataset {out_path} (inputs and settings unchanged; fingerprint {existing['fingerprint']})"
        )
        return out_path

    progress = Progress(progress_folder(out_path))
    # --force rebuilds without the finished dataset's work; an interrupted build's is still used.
    earlier = existing if existing is not None and not force else None
    scan_files = progress.scan_parts()
    if earlier is not None:
        scan_files.append(out_path / SCAN_FILE)
    scan_cache = ScanCache.load(scan_key(config, settings.to_dict()), scan_files)
    files, scans = _scan(
        resolved, settings, config, scan_cache, progress, listed_at_ns, batch_size, say
    )
    fingerprint = _content_fingerprint(resolved, settings, config, files)
    if (
        existing
        and not force
        and existing.get("fingerprint") == fingerprint
        and _complete(out_path, existing)
    ):
        # Same content, only timestamps moved: remember the new listing so the next check is cheap.
        write_json_atomic(
            out_path / "dataset.json", {**existing, "listing_key": listing_key}, default=str
        )
        say(
            f"reusing dataset {out_path} (content and settings unchanged; fingerprint {fingerprint})"
        )
        return out_path

    rows, warnings = _dataset_rows(resolved, files, settings, config, library_cache, say)
    dataset_files = []
    if earlier is not None and earlier.get("codec_fingerprint") == config.fingerprint():
        dataset_files = [out_path / rel for rel in earlier.get("files", {}).values()]
    encoded = EncodedRows.find(config, progress.encoded_parts(), dataset_files)
    fresh = [r for r in rows if r["row_key"] not in encoded.where]
    reused = [r for r in rows if r["row_key"] in encoded.where]
    with _building(out_path) as build:
        of = f" of {len(rows)}" if reused else ""
        before = f"; {len(reused)} encoded before" if reused else ""
        say(
            f"encoding {len(fresh)}{of} rows ({config.representation}, shape {config.shape}{before})"
        )
        counts = _write_splits(
            itertools.chain(
                _encode_rows(fresh, resolved.filesystem, config, batch_size, progress, say),
                encoded.tables(reused),
            ),
            build / "data",
        )
        kept_scans = [(*_where(resolved, i), result) for i, result in sorted(scans.items())]
        pq.write_table(scan_cache.table(kept_scans, listed_at_ns), build / SCAN_FILE)
        c = _write_records(
            build,
            resolved,
            config,
            settings,
            files,
            rows,
            warnings,
            counts,
            fingerprint=fingerprint,
            listing_key=listing_key,
        )
    progress.remove()
    say(
        f"wrote dataset {out_path}: {c['rows']} rows "
        f"(train {counts['train']}, validation {counts['validation']}, test {counts['test']}); "
        f"files seen {c['seen']}, kept {c['kept']}, rejected {c['rejected']}, filtered {c['filtered']}"
    )
    return out_path


def _complete(path: Path, info: Mapping[str, Any]) -> bool:
    return all((path / rel).is_file() for rel in info.get("files", {}).values())


# ----------------------------------------------------------------------------------------------
# loading

_SORT_KEYS = ("augmented", "name", "path", "parent_b")


def tensor_values(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Flat float32 values of a tensor column (Ray's extension type or its plain list storage)."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    parts = []
    for chunk in chunks:
        storage = chunk.storage if isinstance(chunk, pa.ExtensionArray) else chunk
        parts.append(storage.flatten().to_numpy(zero_copy_only=False))
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _load_split(path: Path, name: str, shape: tuple[int, ...]) -> SplitData:
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise DatasetError(f"{path}: unreadable split file ({exc})") from exc
    meta_names = [n for n in parquet.schema_arrow.names if n != "x"]
    meta_rows = parquet.read(columns=meta_names).to_pylist()
    n = len(meta_rows)
    order = sorted(
        range(n),
        key=lambda i: tuple("" if meta_rows[i][k] is None else meta_rows[i][k] for k in _SORT_KEYS),
    )
    position = np.empty(n, dtype=np.int64)
    position[np.asarray(order, dtype=np.int64)] = np.arange(n)
    x = np.empty((n, *shape), dtype=np.float32)
    offset = 0
    for batch in parquet.iter_batches(columns=["x"], batch_size=64):
        values = tensor_values(batch.column(0))
        m = batch.num_rows
        if values.size != m * int(np.prod(shape)):
            raise DatasetError(f"{path}: tensor size does not match the dataset shape {shape}")
        x[position[offset : offset + m]] = values.reshape(m, *shape)
        offset += m
    return SplitData(name, x, [meta_rows[i] for i in order])


def load_dataset(
    path: str | os.PathLike[str],
    *,
    splits: Sequence[str] | None = None,
    train_subset: int | None = None,
) -> LoadedDataset:
    """Load a prepared dataset's splits into memory (no Ray needed).

    `splits` limits which splits are read (default: all three). `train_subset=k` replaces the
    training split by its `k` most diverse rows (the original's diverse subset, for quick searches).
    """
    root = Path(path).expanduser()
    info = require_dataset_info(root)
    codec = CodecConfig.from_dict(info["codec"])
    shape = tuple(info["shape"])
    if shape != codec.shape:
        raise DatasetError(
            f"{root}: dataset.json shape {shape} does not match its codec {codec.shape}"
        )
    wanted = list(splits) if splits is not None else list(SPLIT_NAMES)
    unknown = [s for s in wanted if s not in info["files"]]
    if unknown:
        raise DatasetError(
            f"{root}: no split named {', '.join(unknown)} (have {', '.join(info['files'])})"
        )
    data = {s: _load_split(root / info["files"][s], s, shape) for s in wanted}
    if train_subset is not None and "train" in data:
        data["train"] = data["train"].diverse_subset(train_subset)
    return LoadedDataset(root, codec, info["fingerprint"], info, data)


def object_store_splits(dataset: LoadedDataset) -> dict[str, Any]:
    """Put each split (SplitData) into Ray's object store once: {split name: ObjectRef}.

    Pass the refs to trials (e.g. through `tune.with_parameters` or the config); `ray.get` on a node
    returns a SplitData whose `x` is a zero-copy, read-only numpy view of that node's shared memory,
    so every trial on the node shares one copy. Needs a running Ray (ray.init).
    """
    import ray

    return {name: ray.put(split) for name, split in dataset.splits.items()}


def with_splits(dataset: LoadedDataset, splits: Mapping[str, SplitData]) -> LoadedDataset:
    """A copy of `dataset` with some splits replaced (e.g. those fetched from the object store)."""
    return replace(dataset, splits={**dataset.splits, **splits})
