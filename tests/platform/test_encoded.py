"""Encoding a real dataset once with a frozen outer model (Ray Data map_batches, Parquet out)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from dataset_helpers import SMALL, instrument_folder

from samplegen.dsp.equalise import eq_curve_db, eq_seed, equalise
from samplegen.models.artifact import save_model
from samplegen.models.base import SampleModel
from samplegen.models.registry import build_model
from samplegen.platform.datasets import load_dataset, prepare_dataset
from samplegen.platform.encoded import EncodedError, EqAugment, encode_dataset, load_encoded

pytestmark = pytest.mark.usefixtures("ray_session")

# (root folder, dataset, saved outer model, that model in memory)
OuterAndDataset: TypeAlias = tuple[Path, Path, Path, SampleModel]


@pytest.fixture(scope="module")
def outer_and_dataset(
    tmp_path_factory: pytest.TempPathFactory, ray_session: None
) -> OuterAndDataset:
    root = tmp_path_factory.mktemp("enc")
    instrument_folder(root / "src", 10)
    ds = prepare_dataset(root / "src", root / "ds", SMALL, augment_mixes=3, echo=None)
    torch.manual_seed(0)
    model = build_model("conv2d_ae", {"layers": 3, "kernels": 4, "kernel_size": 4}, SMALL.shape)
    outer = save_model(root / "outer", model, codec=SMALL, dataset_fingerprint="x")
    return root, ds, outer, model


def test_every_split_is_encoded_once_and_lines_up_with_the_dataset(
    outer_and_dataset: OuterAndDataset,
) -> None:
    root, ds, outer, model = outer_and_dataset
    said: list[str] = []
    enc_path = encode_dataset(outer, ds, root / "enc", batch_size=8, echo=said.append)
    enc = load_encoded(enc_path)
    data = load_dataset(ds)
    for split in ("train", "validation", "test"):
        x = data.splits[split].x
        assert enc.splits[split].z.shape == (len(x), int(np.prod(model.latent_shape)))
        with torch.no_grad():
            want = model.eval().encode(torch.from_numpy(x)).flatten(1).numpy()
        np.testing.assert_allclose(enc.splits[split].z, want, rtol=1e-4, atol=1e-5)
        assert enc.splits[split].meta == [
            {k: row.get(k) for k in enc.splits[split].meta[0]} for row in data.splits[split].meta
        ]
        assert {m["split"] for m in enc.splits[split].meta} <= {split}
    assert any(m["augmented"] for m in enc.splits["train"].meta)
    info = json.loads((enc_path / "encoded.json").read_text())
    assert info["dataset_fingerprint"] == data.fingerprint
    assert info["latent_shape"] == list(model.latent_shape)

    # Unchanged weights and dataset: reused, not recomputed.
    mtime = (enc_path / "encoded.json").stat().st_mtime_ns
    encode_dataset(outer, ds, root / "enc", echo=said.append)
    assert (enc_path / "encoded.json").stat().st_mtime_ns == mtime
    assert "reusing" in said[-1]

    # The same weights found elsewhere (a moved run folder): still reused, and encoded.json names
    # where the model is now, since readers load the outer model from there.
    moved = shutil.copytree(outer, root / "outer-moved")
    parquet = (enc_path / "data" / "train.parquet").stat().st_mtime_ns
    encode_dataset(moved, ds, root / "enc", echo=said.append)
    assert "reusing" in said[-1]
    assert (enc_path / "data" / "train.parquet").stat().st_mtime_ns == parquet
    moved_info = json.loads((enc_path / "encoded.json").read_text())
    assert moved_info["outer_model"] == str(moved.absolute())
    assert moved_info["fingerprint"] == info["fingerprint"]


def test_eq_copies_of_the_training_notes_join_the_train_split_only(
    outer_and_dataset: OuterAndDataset,
) -> None:
    root, ds, outer, model = outer_and_dataset
    plain = load_encoded(encode_dataset(outer, ds, root / "enc", batch_size=8, echo=None))
    said: list[str] = []
    eq = EqAugment(variants=2, db=6.0, seed=5)
    enc_path = encode_dataset(outer, ds, root / "enc-eq", batch_size=8, eq=eq, echo=said.append)
    enc = load_encoded(enc_path)
    data = load_dataset(ds)
    for split in ("validation", "test"):  # never touched
        np.testing.assert_array_equal(enc.splits[split].z, plain.splits[split].z)
        assert enc.splits[split].meta == plain.splits[split].meta
    train, originals = enc.splits["train"], data.splits["train"]
    notes = [i for i, m in enumerate(originals.meta) if not m["parent_b"]]  # mixes get no copies
    assert 0 < len(notes) < len(originals.meta)
    assert len(train.z) == len(originals.meta) + 2 * len(notes)
    by_name = {m["name"]: (m, z) for m, z in zip(train.meta, train.z, strict=True)}
    for i in notes:
        parent = originals.meta[i]
        for k in (1, 2):
            meta, z = by_name[f"{parent['name']}#eq{k}"]
            assert meta["augmented"] is True
            assert {key: v for key, v in meta.items() if key not in ("name", "augmented")} == {
                key: parent.get(key) for key in meta if key not in ("name", "augmented")
            }
            curve = eq_curve_db(eq_seed(parent["name"], parent["path"], k, 5), SMALL, 6.0)
            x = equalise(originals.x[i : i + 1], curve[None], SMALL)
            with torch.no_grad():
                want = model.eval().encode(torch.from_numpy(x)).flatten(1).numpy()[0]
            np.testing.assert_allclose(z, want, rtol=1e-4, atol=1e-5)
            assert not np.allclose(z, by_name[parent["name"]][1], atol=1e-3)
    info = json.loads((enc_path / "encoded.json").read_text())
    assert info["eq"] == {"variants": 2, "db": 6.0, "seed": 5}
    assert info["fingerprint"] != plain.info["fingerprint"] and "eq" not in plain.info
    assert "2 EQ copies of each training note" in said[-1]
    # Other EQ settings are other encodings, not a reuse of these.
    encode_dataset(outer, ds, root / "enc-eq", eq=EqAugment(2, 6.0, seed=6), echo=said.append)
    assert "reusing" not in said[-1]


def test_eq_copies_are_drawn_per_training_note_and_copy(outer_and_dataset: OuterAndDataset) -> None:
    _root, ds, _outer, _model = outer_and_dataset
    data = load_dataset(ds)
    train, val = data.splits["train"], data.splits["validation"]
    eq = EqAugment(variants=2, db=6.0, seed=5)
    # Validation rows and mixes get no copies, whatever they are passed with.
    x = np.concatenate([train.x, val.x])
    rows, copies = eq.copies(x, [*train.meta, *val.meta], SMALL)
    notes = [i for i, m in enumerate(train.meta) if not m["parent_b"]]
    assert 0 < len(notes) < len(train.meta)
    assert [r["name"] for r in rows] == [
        f"{train.meta[i]['name']}#eq{k}" for k in (1, 2) for i in notes
    ]
    assert copies.shape == (2 * len(notes), *SMALL.shape) and copies.dtype == np.float32
    for j, i in enumerate(notes):
        curve = eq_curve_db(eq_seed(train.meta[i]["name"], train.meta[i]["path"], 2, 5), SMALL, 6.0)
        want = equalise(train.x[i : i + 1], curve[None], SMALL)[0]
        np.testing.assert_array_equal(copies[len(notes) + j], want)
    # A row's copies do not depend on what else is in the batch.
    _, alone = eq.copies(train.x[notes[-1] :], train.meta[notes[-1] :], SMALL)
    np.testing.assert_array_equal(alone[0], copies[len(notes) - 1])
    none_rows, none = EqAugment().copies(train.x, train.meta, SMALL)
    assert none_rows == [] and none.shape == (0, *SMALL.shape)


def test_a_variation_presets_training_notes_get_copies_like_the_librarys_own(
    outer_and_dataset: OuterAndDataset,
) -> None:
    # The library's variation presets join the train split as rows flagged `augmented` with no
    # second parent; only a mix (which has one) goes without copies.
    _root, ds, _outer, _model = outer_and_dataset
    train = load_dataset(ds).splits["train"]
    note = next(i for i, m in enumerate(train.meta) if not m["augmented"])
    mix = next(i for i, m in enumerate(train.meta) if m["parent_b"])
    variation = dict(train.meta[note], name="variation_C4", augmented=True, parent_b=None)
    meta = [train.meta[note], variation, train.meta[mix]]
    x = train.x[[note, note, mix]]
    rows, copies = EqAugment(variants=1, db=6.0, seed=5).copies(x, meta, SMALL)
    assert [r["name"] for r in rows] == [f"{train.meta[note]['name']}#eq1", "variation_C4#eq1"]
    assert all(r["augmented"] for r in rows) and copies.shape == (2, *SMALL.shape)


def test_eq_settings_are_checked() -> None:
    with pytest.raises(EncodedError, match="eq variants: must be >= 0, got -1"):
        EqAugment(variants=-1)
    with pytest.raises(EncodedError, match=r"eq db: must be in \[0, 24\]"):
        EqAugment(variants=1, db=30.0)


def test_refuses_a_non_outer_model_and_a_missing_dataset(
    outer_and_dataset: OuterAndDataset, tmp_path: Path
) -> None:
    root, ds, outer, _ = outer_and_dataset
    inner = build_model("vae", {"latent": 2, "depth": 2}, (16,))
    inner_dir = save_model(tmp_path / "inner", inner, codec=SMALL)
    with pytest.raises(EncodedError, match="not an outer auto-encoder"):
        encode_dataset(inner_dir, ds, tmp_path / "enc", echo=None)
    with pytest.raises(EncodedError, match="not a samplegen dataset"):
        encode_dataset(outer, tmp_path, tmp_path / "enc", echo=None)


ONE_CPU_SCRIPT = """
import sys
from pathlib import Path

import ray
import torch

sys.path.insert(0, {helpers!r})
from dataset_helpers import SMALL, instrument_folder

from samplegen.models.artifact import save_model
from samplegen.models.registry import build_model
from samplegen.platform.datasets import prepare_dataset
from samplegen.platform.encoded import encode_dataset, load_encoded

root = Path({root!r})
ray.init(address="local", num_cpus=1, include_dashboard=False, object_store_memory=150_000_000)
instrument_folder(root / "src", 4)
ds = prepare_dataset(root / "src", root / "ds", SMALL, echo=None)
torch.manual_seed(0)
model = build_model("conv2d_ae", {{"layers": 2, "kernels": 4, "kernel_size": 4}}, SMALL.shape)
outer = save_model(root / "outer", model, codec=SMALL, dataset_fingerprint="x")
enc = load_encoded(encode_dataset(outer, ds, root / "enc", batch_size=4, echo=None))
print("ENCODED", sum(len(s.z) for s in enc.splits.values()))
"""


def test_encoding_finishes_on_a_one_cpu_cluster(tmp_path: Path) -> None:
    # A separate Ray (1 CPU) needs its own process; the session's cluster has 2 CPUs.
    import subprocess
    import sys

    script = tmp_path / "one_cpu.py"
    script.write_text(
        ONE_CPU_SCRIPT.format(helpers=str(Path(__file__).parent), root=str(tmp_path / "run"))
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=240, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ENCODED 12" in done.stdout


def test_a_codes_bits_do_not_depend_on_which_notes_share_its_batch(
    outer_and_dataset: OuterAndDataset, tmp_path: Path
) -> None:
    # Batched CPU kernels are chosen by batch size, and Ray Data's batches differ between runs: a
    # refit would not repeat its study's training exactly if a code's last bits followed them.
    root, ds, _outer, _model = outer_and_dataset
    torch.manual_seed(0)
    model = build_model("frame_ae", {"hidden": 16, "depth": 2, "frame_latent": 6}, SMALL.shape)
    outer = save_model(tmp_path / "frame", model, codec=SMALL, dataset_fingerprint="x")
    eq = EqAugment(variants=1, db=4.0)
    runs = [
        load_encoded(encode_dataset(outer, ds, tmp_path / f"b{b}", batch_size=b, eq=eq, echo=None))
        for b in (3, 64)
    ]
    for split in ("train", "validation", "test"):
        a, b = (r.splits[split] for r in runs)
        assert [m["name"] for m in a.meta] == [m["name"] for m in b.meta]
        np.testing.assert_array_equal(a.z, b.z)


def test_an_interrupted_encoding_goes_on_where_it_stopped(
    outer_and_dataset: OuterAndDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    import samplegen.platform.encoded as encoded
    import samplegen.platform.progress_parts as progress_parts

    root, ds, outer, _model = outer_and_dataset
    eq = EqAugment(variants=2, db=6.0, seed=7)
    whole = load_encoded(encode_dataset(outer, ds, root / "whole", batch_size=4, eq=eq, echo=None))
    assert not (root / ".whole.progress").exists()  # a finished encoding keeps no parts

    # Ctrl-C arrives once two batches are kept (the real parts are written first).
    write_part, written = progress_parts.write_part, []

    def write_then_stop(folder: Path, prefix: str, table: pa.Table) -> Path:
        written.append(write_part(folder, prefix, table))
        if len(written) == 2:
            raise KeyboardInterrupt
        return written[-1]

    monkeypatch.setattr(progress_parts, "write_part", write_then_stop)
    # Blocks of one note each (the library's notes come in blocks of about 45).
    monkeypatch.setattr(encoded, "BLOCK_BYTES", 4000)
    with pytest.raises(KeyboardInterrupt):
        encode_dataset(outer, ds, root / "stopped", batch_size=4, eq=eq, echo=None)
    monkeypatch.undo()
    assert not (root / "stopped").exists()
    kept = [p.name for p in (root / ".stopped.progress").iterdir()]
    assert sorted(kept) == sorted(p.name for p in written)
    # A note is done when it and both its copies were kept: blocks of one row each cut some
    # notes' rows across parts, and the stop can fall between them.
    kept_rows: dict[str, set[str]] = {}
    wanted: dict[str, int] = {}
    for part in written:
        for row in pq.read_table(part).to_pylist():
            kept_rows.setdefault(row["source_row"], set()).add(row["name"])
            wanted[row["source_row"]] = 3 if row["split"] == "train" and not row["parent_b"] else 1
    before = sum(len(names) == wanted[source] for source, names in kept_rows.items())
    # A damaged part and a part of other encodings (other EQ copies) are not used.
    (root / ".stopped.progress" / "encoded-damaged.parquet").write_bytes(b"PAR1 cut short")
    encode_dataset(outer, ds, root / "other", batch_size=4, eq=EqAugment(2, 6.0, 8), echo=None)
    shutil.copytree(root / "other" / "data", root / "other-data")
    table = pq.read_table(root / "other-data" / "train.parquet").slice(0, 4)
    other = table.append_column("source_row", pa.array(["x"] * 4))
    meta = {
        b"samplegen.encodings": json.loads((root / "other" / "encoded.json").read_text())[
            "fingerprint"
        ].encode()
    }
    pq.write_table(
        other.replace_schema_metadata(meta),
        root / ".stopped.progress" / "encoded-other.parquet",
    )

    said: list[str] = []
    resumed = load_encoded(
        encode_dataset(outer, ds, root / "stopped", batch_size=4, eq=eq, echo=said.append)
    )
    total = len(load_dataset(ds).splits["train"].meta) + sum(
        len(load_dataset(ds).splits[s].meta) for s in ("validation", "test")
    )
    assert 0 < before < total
    assert said[0] == (
        f"encoding {total - before} of {total} rows of the dataset "
        f"({before} encoded before, by an encoding that was stopped)"
    )
    for split in ("train", "validation", "test"):
        np.testing.assert_array_equal(resumed.splits[split].z, whole.splits[split].z)
        assert resumed.splits[split].meta == whole.splits[split].meta
    assert resumed.info["fingerprint"] == whole.info["fingerprint"]
    assert not (root / ".stopped.progress").exists()
