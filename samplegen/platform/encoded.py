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
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from samplegen.atomic import new_build_folder, recover_folder, replace_folder, write_json_atomic
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

        idx = [i for i, m in enumerate(meta) if m.get("split") == "train" and not m.get("parent_b")]
        if not self.variants or not idx:
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
        z = self._encode(x)
        if self.eq.variants:
            rows, notes = self.eq.copies(x, meta.to_pylist(), self.codec)
            if rows:
                meta = pa.concat_tables([meta, pa.Table.from_pylist(rows, schema=meta.schema)])
                z = np.concatenate([z, self._encode(notes)])
        z_col = pa.FixedSizeListArray.from_arrays(pa.array(z.reshape(-1)), z.shape[1])
        return meta.append_column("z", z_col)


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
    import ray

    from samplegen.models.artifact import WEIGHTS_NAME, check_codec, model_files, read_meta
    from samplegen.platform.datasets import read_dataset_info
    from samplegen.platform.raydata import quiet_ray_data

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

    device = _choose_device(device)
    gpus = 1 if device.startswith("cuda") else 0
    files = [str(data_path / info["files"][s]) for s in SPLITS if s in info["files"]]
    quiet_ray_data()
    ds = ray.data.read_parquet(files)
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
        num_gpus=gpus,
        # The one encoder actor reserves no CPU: on a 1-CPU cluster a reserved CPU left Ray Data's
        # Parquet read tasks unschedulable and the encoding hung forever.
        num_cpus=0,
    )
    tables: dict[str, list[pa.Table]] = {s: [] for s in SPLITS}
    latent_dim = None
    for batch_any in encoded.iter_batches(batch_format="pyarrow", batch_size=None):
        batch = cast(pa.Table, batch_any)  # Ray's annotation names every batch format
        z = batch.column("z")
        latent_dim = latent_dim or _width(z)
        for split in SPLITS:
            mask = pa.compute.equal(batch.column("split"), split)
            part = batch.filter(mask)
            if part.num_rows:
                tables[split].append(part)
    if latent_dim is None:
        raise EncodedError(f"{data_path}: the dataset has no rows to encode")

    build = new_build_folder(out_path)
    (build / "data").mkdir(parents=True)
    try:
        counts = {}
        for split, parts in tables.items():
            table = _plain(pa.concat_tables(parts) if parts else None, latent_dim)
            counts[split] = 0 if table is None else table.num_rows
            if table is not None:
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
