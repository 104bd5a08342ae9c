"""Encoded datasets: every sample of every split run once through a frozen outer encoder.

The chained VAE study trains only on these encodings. Encoding runs as a Ray Data `map_batches`
stage (one actor holding the model, on a GPU when the cluster has one), and the result is written as
Parquet with the dataset's metadata and split, so the inner study inherits the outer dataset's split
and never trains on a sample the outer model was tested on.

Folder layout::

    ENCODED/
      data/train.parquet, data/validation.parquet, data/test.parquet   columns: meta + `z`
      encoded.json   outer model (path, weights hash), dataset (path, fingerprint), latent shape,
                     counts, and the fingerprint of what was encoded (weights hash, dataset
                     fingerprint, EQ copies; not paths): a later call reuses a matching folder

While it runs, each encoded batch is kept in `.ENCODED.progress/` (samplegen.platform.progress_parts),
so an interrupted encoding goes on where it stopped.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from samplegen.atomic import (
    file_in_the_way,
    new_build_folder,
    recover_folder,
    replace_folder,
    write_json_atomic,
)
from samplegen.errors import SamplegenError

ENCODED_JSON = "encoded.json"
ENCODED_FORMAT = "samplegen-encoded"
SPLITS = ("train", "validation", "test")
# Metadata carried from the dataset into the encodings (the rest stays in the dataset).
CARRIED = (
    "name",
    "path",
    "category",
    "note",
    "velocity",
    "program",
    "group",
    "split",
    "augmented",
    "parent_b",
)
# The row order of load_dataset, so encodings line up with dataset rows.
SORT_KEYS = ("augmented", "name", "path", "parent_b")
# In kept batches only: the dataset row each encoded row came from (an EQ copy: its original's).
SOURCE_KEY = "source_row"
# Ray Data's blocks while encoding, each kept as it comes back: about 45 STFT notes, so that an
# encoding stopped half-way has kept about half of its work. With Ray's own 128 MiB blocks the
# quick preset's first one came back 16.7 s into a 20.5 s encoding, and the whole took as long
# (RESULTS.md, "A stopped chain encoding goes on where it stopped").
BLOCK_BYTES = 16 * 2**20
# The schema metadata of a kept batch that names the encodings it belongs to.
PART_FINGERPRINT = b"samplegen.encodings"


class EncodedError(SamplegenError):
    """An encoded dataset that cannot be built or loaded."""


@dataclass(frozen=True)
class EqAugment:
    """Training-only copies of each training note through random EQ curves, for the inner study.

    `variants` copies per original training note (0: none), each curve's cosine terms with standard
    deviation `db` (samplegen.dsp.equalise), drawn from `seed` and the row's name, so a copy does
    not depend on batch order. Validation and test rows are never touched.
    """

    variants: int = 0
    db: float = 4.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.variants < 0:
            raise EncodedError(f"eq variants: must be >= 0, got {self.variants}")
        if not (0 <= self.db <= 24):
            raise EncodedError(f"eq db: must be in [0, 24] (a curve's dB per term), got {self.db}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (recorded with the encodings)."""
        return {"variants": self.variants, "db": self.db, "seed": self.seed}

    def check_model(self, model: Any, codec: Any) -> None:
        """Refuse copies for a model of anything but STFT notes (`model` names it in the error)."""
        if self.variants and codec.representation != "stft":
            raise EncodedError(
                f"eq variants: {model} encodes {codec.representation!r} notes; EQ copies need "
                "an STFT outer model"
            )

    def outputs(self, row: Mapping[str, Any]) -> int:
        """How many encoded rows a dataset row gives: itself, and its copies if it is a training
        note (see `copies`)."""
        note = row.get("split") == "train" and not row.get("parent_b")
        return 1 + self.variants if note else 1

    def copies(
        self, x: np.ndarray, meta: Sequence[dict[str, Any]], codec: Any
    ) -> tuple[list[dict[str, Any]], np.ndarray]:
        """The EQ copies of the training notes among `x` (N, bins, frames) and `meta`.

        A training note is a training row that is not a mix: the library's own notes and its
        variation presets' (training-only rows, flagged `augmented` but with no `parent_b`), whose
        copies lowered validation at seed 1 and tied at seed 0 (benchmarks/RESULTS.md, "EQ
        copies of the variation presets' notes too"). Returns their metadata (named NAME#eqK,
        flagged `augmented`) and their encoded notes: copy 1 of every such row, then copy 2, and
        so on. A copy depends only on its row's name and path, `k` and `seed`, so the inner
        study's encodings and fine-tuning see the same ones.
        """
        from samplegen.dsp.equalise import eq_curve_db, eq_seed, equalise

        idx = [i for i, m in enumerate(meta) if self.outputs(m) > 1]
        if not idx:
            return [], np.zeros((0, *np.shape(x)[1:]), np.float32)
        originals = np.asarray(x)[idx]
        rows: list[dict[str, Any]] = []
        notes: list[np.ndarray] = []
        for k in range(1, self.variants + 1):
            curves = [
                eq_curve_db(
                    eq_seed(meta[i]["name"], meta[i].get("path"), k, self.seed), codec, self.db
                )
                for i in idx
            ]
            notes.append(equalise(originals, np.stack(curves), codec))
            rows += [
                dict(meta[i], name=f"{meta[i]['name']}{EQ_SUFFIX}{k}", augmented=True) for i in idx
            ]
        return rows, np.concatenate(notes)


EQ_SUFFIX = "#eq"


@dataclass(frozen=True, eq=False)
class EncodedSplit:
    """One split of encodings: `z` float32 (N, D) and one metadata dict per row."""

    name: str
    z: np.ndarray
    meta: list[dict[str, Any]]


@dataclass(frozen=True, eq=False)
class EncodedDataset:
    """Encodings of a dataset by one outer model."""

    path: Path
    info: dict[str, Any]
    splits: dict[str, EncodedSplit]

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """Shape of the outer model's latent (before flattening)."""
        return tuple(self.info["latent_shape"])


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes (identifies a model's weights)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class _Encoder:
    """Ray Data actor: loads the frozen outer model once and encodes batches of `x`."""

    def __init__(
        self, model_files: dict[str, bytes], device: str, eq: dict[str, Any] | None = None
    ) -> None:
        import torch

        from samplegen.models.artifact import load_model_files

        torch.set_num_threads(1)
        self.device = device
        # By value: the actor may run on a node where the driver's model folder does not exist.
        loaded = load_model_files(model_files, device=device)
        self.model = loaded.model.eval()
        self.codec = loaded.codec
        self.eq = EqAugment(**eq) if eq else EqAugment()

    def _encode(self, x: np.ndarray) -> np.ndarray:
        import torch

        # One note at a time: batched kernels are chosen by batch size, so a note's code would
        # change in its last bits with the notes Ray Data happened to batch it with, and a refit
        # would not repeat its study's training exactly. Batching saved little: 0.36 s against
        # 0.47 s per 256 notes of the quick preset's outer model (RESULTS.md, "Encoding one note
        # at a time").
        notes = torch.from_numpy(np.array(x, dtype=np.float32)).to(self.device)
        with torch.no_grad():
            z = [self.model.encode(notes[i : i + 1]).flatten(1) for i in range(len(notes))]
        return torch.cat(z).float().cpu().numpy()

    def __call__(self, batch: Any) -> Any:
        """pyarrow batch in (meta + `x`), pyarrow batch out (meta unchanged + flat `z`), then the
        EQ copies of the batch's original training rows (`augmented`, named NAME#eqK)."""
        import pyarrow as pa

        from samplegen.platform.datasets import tensor_values

        n = batch.num_rows
        x = tensor_values(batch.column("x")).reshape(n, *self.model.input_shape)
        meta = batch.select([c for c in CARRIED if c in batch.column_names])
        # Carried into the copies' metadata with the rest: a kept batch says which rows it holds.
        meta = meta.append_column(SOURCE_KEY, pa.array(source_rows(batch), pa.string()))
        z = self._encode(x)
        if self.eq.variants:
            rows, notes = self.eq.copies(x, meta.to_pylist(), self.codec)
            if rows:
                meta = pa.concat_tables([meta, pa.Table.from_pylist(rows, schema=meta.schema)])
                z = np.concatenate([z, self._encode(notes)])
        z_col = pa.FixedSizeListArray.from_arrays(pa.array(z.reshape(-1)), z.shape[1])
        return meta.append_column("z", z_col)


def source_rows(table: Any) -> list[str]:
    """Each dataset row's identity among its dataset's rows (its name, file and mix partner)."""
    columns = [
        table.column(c).to_pylist() if c in table.column_names else [None] * table.num_rows
        for c in ("name", "path", "parent_b")
    ]
    return [json.dumps(key) for key in zip(*columns, strict=True)]


def _pending(batch: Any, done: frozenset[str]) -> Any:
    """The rows of a dataset batch that no kept batch holds (a Ray Data map stage)."""
    import pyarrow as pa

    return batch.filter(pa.array([key not in done for key in source_rows(batch)]))


def _kept(folder: Path, fingerprint: str, eq: EqAugment) -> tuple[list[Any], set[str]]:
    """What an interrupted encoding of these encodings kept: a table of the encoded rows of every
    dataset row it finished, and those dataset rows (as `source_rows` names them)."""
    import pyarrow as pa

    from samplegen.platform.progress_parts import kept_parts, read_part

    tables = []
    for path in kept_parts(folder, "encoded"):
        table = read_part(path)
        if table is None or (table.schema.metadata or {}).get(PART_FINGERPRINT) != (
            fingerprint.encode()
        ):
            continue  # damaged, or of another model, dataset or EQ copies
        tables.append(table.replace_schema_metadata(None))
    if not tables:
        return [], set()
    table = pa.concat_tables(tables, promote_options="default")
    rows = table.select([SOURCE_KEY, "name", "split", "parent_b"]).to_pylist()
    # Ray Data may cut a note's encoded rows (the note, its EQ copies) across two blocks, so a
    # part can hold some of them: a note is done when all of its rows are kept, once each.
    first: dict[tuple[str, str], int] = {}
    for i, row in enumerate(rows):
        first.setdefault((row[SOURCE_KEY], row["name"]), i)
    found = Counter(source for source, _name in first)
    wanted = {row[SOURCE_KEY]: eq.outputs(row) for row in rows}
    done = {source for source, n in found.items() if n == wanted[source]}
    keep = sorted(i for (source, _name), i in first.items() if source in done)
    return [table.take(pa.array(keep, pa.int64()))], done


def _encoded_batches(
    files: Sequence[str],
    done: set[str],
    model_path: Path,
    device: str,
    eq: EqAugment,
    batch_size: int,
) -> Iterator[Any]:
    """The encoded rows of every row of the dataset's `files` not in `done` (a set of
    `source_rows`), a Ray Data block at a time, with `z` plain (see `_plain`)."""
    import pyarrow as pa
    import ray

    from samplegen.models.artifact import model_files
    from samplegen.platform.raydata import blocks_of_at_most, quiet_ray_data

    quiet_ray_data()
    # Around the dataset's making: read_parquet keeps a copy of Ray Data's settings as they are then.
    with blocks_of_at_most(BLOCK_BYTES):
        ds = ray.data.read_parquet(list(files))
        if done:
            ds = ds.map_batches(
                functools.partial(_pending, done=frozenset(done)), batch_format="pyarrow"
            )
        encoded = ds.map_batches(
            _Encoder,
            fn_constructor_kwargs={
                "model_files": model_files(model_path),
                "device": device,
                "eq": eq.to_dict(),
            },
            batch_size=batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=1),
            num_gpus=1 if device.startswith("cuda") else 0,
            # The one encoder actor reserves no CPU: on a 1-CPU cluster a reserved CPU left Ray
            # Data's Parquet read tasks unschedulable and the encoding hung forever.
            num_cpus=0,
        )
        for batch in encoded.iter_batches(batch_format="pyarrow", batch_size=None):
            table = cast(pa.Table, batch)  # Ray's annotation names every batch format
            if table.num_rows:
                yield _plain(table, _width(table.column("z")))


def _choose_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _content(
    weights: Path, outer_name: str, dataset_fingerprint: str, eq: EqAugment
) -> dict[str, Any]:
    content: dict[str, Any] = {
        "outer_weights_sha256": file_sha256(weights),
        "outer_name": outer_name,
        "dataset_fingerprint": dataset_fingerprint,
    }
    if eq.variants:
        content["eq"] = eq.to_dict()
    return content


def chain_content(
    model_dir: str | os.PathLike[str], dataset_dir: str | os.PathLike[str], eq: EqAugment | None
) -> dict[str, Any]:
    """What encodings of `dataset_dir` by the outer model `model_dir` with `eq` would be made of
    (the outer model's weights and name, the dataset's fingerprint, the EQ copies), and their
    "fingerprint": a study over them records it, so other ones can be told from them unencoded."""
    from samplegen.models.artifact import WEIGHTS_NAME, read_meta
    from samplegen.platform.datasets import read_dataset_info

    meta, _ = read_meta(Path(model_dir))
    info = read_dataset_info(Path(dataset_dir))
    if info is None:
        raise EncodedError(f"{dataset_dir}: not a samplegen dataset (no dataset.json)")
    content = _content(
        Path(model_dir) / WEIGHTS_NAME, meta.name, info["fingerprint"], eq or EqAugment()
    )
    return {**content, "fingerprint": _fingerprint(content)}


def _fingerprint(content: dict[str, Any]) -> str:
    # What was encoded, not where it lay: a run folder moved elsewhere keeps its encodings, and a
    # study over them still resumes (a study refuses to resume on other data by this fingerprint).
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:32]


def encodings_fingerprint(
    model_dir: str | os.PathLike[str], dataset_dir: str | os.PathLike[str], eq: EqAugment | None
) -> str:
    """The fingerprint `encode_dataset` would give these encodings, without encoding anything
    (a resumed chain checks it against its study's before it overwrites the encodings)."""
    from samplegen.models.artifact import WEIGHTS_NAME, read_meta
    from samplegen.platform.datasets import require_dataset_info

    meta, _ = read_meta(model_dir)
    info = require_dataset_info(dataset_dir)
    content = _content(
        Path(model_dir) / WEIGHTS_NAME, meta.name, info["fingerprint"], eq or EqAugment()
    )
    return _fingerprint(content)


def check_encodings_folder(out: Path) -> None:
    """Refuse to write encodings where something else is: the folder is replaced as a whole, so a
    folder of other files (a study, a dataset, the user's own) would be lost."""
    blocker = file_in_the_way(out)
    if blocker is not None:
        raise EncodedError(f"{out}: {blocker} is a file; give a folder for the encodings")
    if out.is_dir() and any(out.iterdir()) and not (out / ENCODED_JSON).is_file():
        raise EncodedError(
            f"{out}: this folder holds other files than a chain's encodings (it has no "
            f"{ENCODED_JSON}); refusing to replace it: give another --encoded folder"
        )


def encode_dataset(
    model_dir: str | os.PathLike[str],
    dataset_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    batch_size: int = 32,
    device: str = "auto",
    force: bool = False,
    eq: EqAugment | None = None,
    echo: Callable[[str], None] | None = print,
) -> Path:
    """Encode every split of `dataset_dir` with the outer model in `model_dir` into `out`.

    `eq`: training-only EQ copies of each original training note, encoded beside it (flagged
    `augmented`). Reuses `out` when it already holds the encodings of the same weights, dataset and
    `eq`. Needs a running Ray (the caller's cluster; Ray Data starts a local one otherwise).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from samplegen.models.artifact import WEIGHTS_NAME, check_codec, read_meta
    from samplegen.platform.datasets import read_dataset_info

    say = echo or (lambda _m: None)
    model_path, data_path, out_path = Path(model_dir), Path(dataset_dir), Path(out).absolute()
    meta, codec = read_meta(model_path)
    if meta.name == "combined" or not meta.name.endswith("_ae"):
        raise EncodedError(
            f"{model_path}: model {meta.name!r} is not an outer auto-encoder; "
            "the chain encodes with the outer model"
        )
    info = read_dataset_info(data_path)
    if info is None:
        raise EncodedError(f"{data_path}: not a samplegen dataset (no dataset.json)")
    from samplegen.dsp.config import CodecConfig

    check_codec(codec, CodecConfig.from_dict(info["codec"]))
    eq = eq or EqAugment()
    eq.check_model(model_path, codec)
    weights = model_path / WEIGHTS_NAME
    if not weights.is_file():
        raise EncodedError(f"{weights}: the model's weights file is missing")
    content = _content(weights, meta.name, info["fingerprint"], eq)
    fingerprint = _fingerprint(content)
    source = {
        "outer_model": str(model_path.absolute()),
        "dataset": str(data_path.absolute()),
        **content,
    }
    recover_folder(out_path, ENCODED_JSON)
    check_encodings_folder(out_path)
    existing = out_path / ENCODED_JSON
    if existing.is_file() and not force:
        previous = json.loads(existing.read_text())
        if previous.get("fingerprint") == fingerprint:
            if any(previous.get(k) != v for k, v in source.items()):
                # The same encodings, with their model or dataset found elsewhere (a moved run
                # folder): readers take the outer model's path from here.
                write_json_atomic(existing, {**previous, **source}, sort_keys=True)
            say(f"encodings at {out_path} are up to date, reusing them")
            return out_path

    from samplegen.platform.progress_parts import progress_folder, write_part

    device = _choose_device(device)
    files = [str(data_path / info["files"][s]) for s in SPLITS if s in info["files"]]
    progress = progress_folder(out_path)
    kept, done = _kept(progress, fingerprint, eq)
    total = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    if done:
        say(
            f"encoding {total - len(done)} of {total} rows of the dataset "
            f"({len(done)} encoded before, by an encoding that was stopped)"
        )
    if len(done) < total:
        marked = {PART_FINGERPRINT: fingerprint.encode()}
        for batch in _encoded_batches(files, done, model_path, device, eq, batch_size):
            write_part(progress, "encoded", batch.replace_schema_metadata(marked))
            kept.append(batch)
    if not kept:
        raise EncodedError(f"{data_path}: the dataset has no rows to encode")
    everything = pa.concat_tables(kept, promote_options="default").drop_columns([SOURCE_KEY])
    latent_dim = _width(everything.column("z"))

    build = new_build_folder(out_path)
    (build / "data").mkdir(parents=True)
    try:
        counts = {}
        for split in SPLITS:
            table = everything.filter(pa.compute.equal(everything.column("split"), split))
            counts[split] = table.num_rows
            if table.num_rows:  # `z` is plain already: each batch was made so as it came back
                pq.write_table(table, build / "data" / f"{split}.parquet")
        doc = {
            "format": ENCODED_FORMAT,
            "version": 1,
            "fingerprint": fingerprint,
            **source,
            "latent_shape": list(
                json.loads((model_path / "config.json").read_text())["latent_shape"]
            ),
            "latent_dim": latent_dim,
            "counts": counts,
            "device": device,
        }
        (build / ENCODED_JSON).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        replace_folder(build, out_path)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    shutil.rmtree(progress, ignore_errors=True)
    copies = f", {eq.variants} EQ copies of each training note among them" if eq.variants else ""
    say(
        f"encoded {sum(counts.values())} samples ({latent_dim} values each{copies}) into {out_path}"
    )
    return out_path


def _width(column: Any) -> int:
    import pyarrow as pa

    chunk = column.chunk(0) if isinstance(column, pa.ChunkedArray) else column
    storage = chunk.storage if isinstance(chunk, pa.ExtensionArray) else chunk
    return len(storage.flatten()) // max(1, len(storage))


def _plain(table: Any, width: int) -> Any:
    """The table with `z` as a plain fixed-size float32 list column (readable by any Parquet tool)."""
    import pyarrow as pa

    if table is None:
        return None
    column = table.column("z")
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    flat = [
        (c.storage if isinstance(c, pa.ExtensionArray) else c).flatten().cast(pa.float32())
        for c in chunks
    ]
    values = pa.concat_arrays(flat) if len(flat) > 1 else flat[0]
    z = pa.FixedSizeListArray.from_arrays(values, width)
    return table.set_column(table.schema.get_field_index("z"), "z", z)


def load_encoded(path: str | os.PathLike[str], splits: Sequence[str] = SPLITS) -> EncodedDataset:
    """Load an encoded dataset's splits into memory (no Ray needed)."""
    import pyarrow.parquet as pq

    root = Path(path)
    recover_folder(root, ENCODED_JSON)
    doc_path = root / ENCODED_JSON
    if not doc_path.is_file():
        raise EncodedError(f"{root}: not an encoded dataset (no {ENCODED_JSON})")
    info = json.loads(doc_path.read_text())
    width = int(info["latent_dim"])
    out = {}
    for split in splits:
        file = root / "data" / f"{split}.parquet"
        if not file.is_file():
            out[split] = EncodedSplit(split, np.zeros((0, width), np.float32), [])
            continue
        table = pq.read_table(file)
        meta_cols = [c for c in table.column_names if c != "z"]
        rows = table.select(meta_cols).to_pylist()
        z = table.column("z").combine_chunks().flatten().to_numpy().astype(np.float32)
        z = z.reshape(-1, width)
        keys = [tuple("" if r.get(k) is None else r.get(k) for k in SORT_KEYS) for r in rows]
        order = sorted(range(len(rows)), key=lambda i: keys[i])
        out[split] = EncodedSplit(split, z[order], [rows[i] for i in order])
    return EncodedDataset(root, info, out)
