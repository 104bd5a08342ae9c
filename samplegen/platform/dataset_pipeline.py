"""The Ray Data stages of dataset preparation: scan (read, hash, decode, check) and encode.

Both stages run as Ray Data `map_batches` over Arrow tables built on the driver with explicit
schemas, so no column's type depends on which block happens to hold a missing value. A bad file
never stops the pipeline: the scan stage turns every per-file failure into a status row.

Files are decoded twice (scan, then encode): the scan keeps no audio, so memory stays bounded by
the encode stage's small batches, and the driver can make every decision that needs the whole set
(duplicates, augmentation pairs) between the two.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from samplegen.dsp.config import CodecConfig

KEPT, REJECTED, FILTERED = "kept", "rejected", "filtered"

SCAN_INPUT_SCHEMA = pa.schema(
    [("index", pa.int64()), ("path", pa.string()), ("name", pa.string()), ("note", pa.int16())]
)
SCAN_OUTPUT_SCHEMA = pa.schema(
    [
        ("index", pa.int64()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("sha256", pa.string()),
        ("peak", pa.float32()),
        ("input_sample_rate", pa.int32()),
        ("loudest_hz", pa.float32()),
        ("fundamental_hz", pa.float32()),
    ]
)

# Metadata columns of every dataset row, in file order; `x` (the tensor) is appended after them.
META_SCHEMA = pa.schema(
    [
        ("name", pa.string()),
        ("path", pa.string()),
        ("category", pa.string()),
        ("note", pa.int16()),
        ("note_name", pa.string()),
        ("velocity", pa.int16()),
        ("program", pa.int16()),
        ("group", pa.string()),
        ("split", pa.string()),
        ("sha256", pa.string()),
        ("peak", pa.float32()),
        ("augmented", pa.bool_()),
        ("parent_b", pa.string()),
        ("mix", pa.float32()),
    ]
)
# What the encode stage needs beyond the metadata: where to read and what to expect there.
ENCODE_INPUT_SCHEMA = pa.schema(
    list(META_SCHEMA)
    + [
        ("read_a", pa.string()),
        ("read_b", pa.string()),
        ("sha_a", pa.string()),
        ("sha_b", pa.string()),
        # samplegen.platform.prepare_cache.row_key: passed through to the output, so that each
        # encoded row can be kept for a rerun.
        ("row_key", pa.string()),
    ]
)


def table_blocks(table: pa.Table, rows_per_block: int) -> list[pa.Table]:
    """Slices of `table` (zero-copy) so that Ray Data has one task per slice to spread."""
    return [
        table.slice(i, rows_per_block) for i in range(0, max(table.num_rows, 1), rows_per_block)
    ]


def _read_bytes(fs: pafs.FileSystem, path: str) -> bytes:
    with fs.open_input_file(path) as handle:
        return handle.read()


def _scan_one(
    fs: pafs.FileSystem,
    path: str,
    name: str,
    note: int | None,
    config: CodecConfig,
    pitch_targets: Sequence[float] | None,
    pitch_tolerance: float,
) -> dict[str, Any]:
    from samplegen.dsp.audio import decode_audio, prepare_wave
    from samplegen.dsp.errors import AudioError
    from samplegen.platform.names import midi_to_hz
    from samplegen.platform.pitch import check_pitch

    out: dict[str, Any] = {"status": REJECTED}
    try:
        data = _read_bytes(fs, path)
    except OSError as exc:
        return {**out, "reason": "unreadable", "detail": f"cannot read the file: {exc}"}
    out["sha256"] = hashlib.sha256(data).hexdigest()
    try:
        mono, sr = decode_audio(data, path)
        out["input_sample_rate"] = int(sr)
        wave, peak = prepare_wave(mono, sr, config, name=path)
    except AudioError as exc:
        return {**out, "reason": exc.reason, "detail": exc.detail}
    except Exception as exc:  # noqa: BLE001 - a file that breaks the decoder must not stop the run
        return {**out, "reason": "decoder_error", "detail": f"{type(exc).__name__}: {exc}"}
    out["peak"] = float(peak)
    targets = [] if pitch_targets is None else list(pitch_targets)
    if pitch_targets is not None and note is not None:
        targets = [midi_to_hz(note)]
    # No target when every note is wanted (--notes all) and the name names none: such a file has
    # no pitch to be held to (it used to be refused as "wrong_pitch", expected " Hz").
    if targets:
        result = check_pitch(wave, config.sample_rate, targets, pitch_tolerance)
        out["loudest_hz"] = result.loudest_hz
        out["fundamental_hz"] = result.fundamental_hz
        if not result.ok:
            found = f"loudest peak {result.loudest_hz:.1f} Hz"
            if result.fundamental_hz is not None:
                found += f", first strong peak {result.fundamental_hz:.1f} Hz"
            if result.f0_hz is not None:
                found += f", fundamental {result.f0_hz:.1f} Hz"
            wanted = ", ".join(f"{t:.1f}" for t in targets)
            return {
                **out,
                "reason": "wrong_pitch",
                "detail": f"{found}; expected {wanted} Hz ± {pitch_tolerance:.0%}",
            }
    return {**out, "status": KEPT}


def scan_batch(
    batch: pa.Table,
    *,
    filesystem: pafs.FileSystem,
    config: dict[str, Any],
    pitch_targets: Sequence[float] | None,
    pitch_tolerance: float,
) -> pa.Table:
    """Ray Data map: read, hash, decode, prepare and (optionally) pitch-check each file of `batch`."""
    codec = CodecConfig.from_dict(config)
    rows = []
    for index, path, name, note in zip(
        batch.column("index").to_pylist(),
        batch.column("path").to_pylist(),
        batch.column("name").to_pylist(),
        batch.column("note").to_pylist(),
        strict=True,
    ):
        rows.append(
            {
                "index": index,
                **_scan_one(filesystem, path, name, note, codec, pitch_targets, pitch_tolerance),
            }
        )
    return pa.Table.from_pylist(rows, schema=SCAN_OUTPUT_SCHEMA)


def _prepared(
    fs: pafs.FileSystem, path: str, expected_sha: str, codec: CodecConfig
) -> np.ndarray | None:
    from samplegen.dsp.audio import decode_audio, prepare_wave

    try:
        data = _read_bytes(fs, path)
    except OSError:
        return None  # gone (or unreadable) since the scan: a changed file, as the driver says
    if hashlib.sha256(data).hexdigest() != expected_sha:
        return None
    mono, sr = decode_audio(data, path)
    wave, _ = prepare_wave(mono, sr, codec, name=path)
    return wave


def encode_batch_rows(
    batch: pa.Table, *, filesystem: pafs.FileSystem, config: dict[str, Any]
) -> pa.Table:
    """Ray Data map: prepare (or mix) each row's audio and encode the batch into the `x` tensor column.

    A row whose file changed since the scan gets `changed` = True (and zeros in `x`); the driver
    stops the build when it sees one.
    """
    from ray.data.extensions import ArrowTensorArray

    from samplegen.dsp.codec import encode_batch
    from samplegen.platform.augment import mix_waves

    codec = CodecConfig.from_dict(config)
    waves = np.zeros((batch.num_rows, codec.num_samples), dtype=np.float32)
    changed = np.zeros(batch.num_rows, dtype=bool)
    peaks = batch.column("peak").to_numpy(zero_copy_only=False).astype(np.float32)
    columns = {
        name: batch.column(name).to_pylist()
        for name in ("read_a", "read_b", "sha_a", "sha_b", "mix")
    }
    for i in range(batch.num_rows):
        first = _prepared(filesystem, columns["read_a"][i], columns["sha_a"][i], codec)
        if columns["read_b"][i] is None:
            wave = first
        else:
            second = _prepared(filesystem, columns["read_b"][i], columns["sha_b"][i], codec)
            if first is None or second is None:
                wave = None
            else:
                amount = float(columns["mix"][i])
                raw = amount * first.astype(np.float64) + (1 - amount) * second.astype(np.float64)
                # The mix of two unit-peak waves: its own peak says how much they cancelled.
                peaks[i] = float(np.max(np.abs(raw)))
                wave = mix_waves(first, second, amount)
        if wave is None:
            changed[i] = True
        else:
            waves[i] = wave
    encoded = np.asarray(encode_batch(waves, codec), dtype=np.float32)
    meta = batch.select(META_SCHEMA.names).set_column(
        META_SCHEMA.get_field_index("peak"), "peak", pa.array(peaks, pa.float32())
    )
    return (
        meta.append_column("changed", pa.array(changed))
        .append_column("row_key", batch.column("row_key"))
        .append_column("x", ArrowTensorArray.from_numpy(encoded))
    )


def run_scan(
    items: pa.Table,
    filesystem: pafs.FileSystem,
    config: CodecConfig,
    pitch_targets: Sequence[float] | None,
    pitch_tolerance: float,
    rows_per_block: int = 16,
    on_table: Callable[[pa.Table], None] | None = None,
) -> pa.Table:
    """Run the scan stage over `items` (SCAN_INPUT_SCHEMA); returns SCAN_OUTPUT_SCHEMA rows by index.

    `on_table` is called with each table of results as it arrives (to keep them for a rerun)."""
    import ray.data

    from samplegen.platform.raydata import quiet_ray_data

    quiet_ray_data()
    ds = ray.data.from_arrow(table_blocks(items, rows_per_block)).map_batches(
        scan_batch,  # type: ignore[arg-type]  # Ray's annotation has no room for fn_kwargs
        batch_size=rows_per_block,
        batch_format="pyarrow",
        fn_kwargs={
            "filesystem": filesystem,
            "config": config.to_dict(),
            "pitch_targets": None if pitch_targets is None else list(pitch_targets),
            "pitch_tolerance": pitch_tolerance,
        },
    )
    # batch_format="pyarrow" yields Arrow tables; Ray's annotations name every batch format.
    tables = []
    for b in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        table = pa.Table.from_batches([b]) if isinstance(b, pa.RecordBatch) else cast(pa.Table, b)
        tables.append(table)
        if on_table is not None:
            on_table(table)
    if not tables:
        return SCAN_OUTPUT_SCHEMA.empty_table()
    return pa.concat_tables([t.cast(SCAN_OUTPUT_SCHEMA) for t in tables]).sort_by("index")


def run_encode(
    items: pa.Table, filesystem: pafs.FileSystem, config: CodecConfig, rows_per_batch: int = 16
) -> Iterator[pa.Table]:
    """Run the encode stage over `items` (ENCODE_INPUT_SCHEMA), streaming tables of encoded rows."""
    import ray.data

    from samplegen.platform.raydata import quiet_ray_data

    quiet_ray_data()
    ds = ray.data.from_arrow(table_blocks(items, rows_per_batch)).map_batches(
        encode_batch_rows,  # type: ignore[arg-type]  # Ray's annotation has no room for fn_kwargs
        batch_size=rows_per_batch,
        batch_format="pyarrow",
        fn_kwargs={"filesystem": filesystem, "config": config.to_dict()},
    )
    yield from ds.iter_batches(batch_size=None, batch_format="pyarrow")
