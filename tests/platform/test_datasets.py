"""Dataset preparation end to end on real audio files, real Ray Data and real Parquet."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from dataset_helpers import SMALL, age_files, assert_same_dataset, instrument_folder, write_tone

from samplegen.cli.main import main
from samplegen.dsp.audio import load_wave
from samplegen.dsp.codec import encode_batch
from samplegen.dsp.config import CodecConfig
from samplegen.errors import SamplegenError
from samplegen.platform.augment import mix_waves
from samplegen.platform.datasets import load_dataset, object_store_splits, prepare_dataset
from samplegen.platform.splits import SplitFractions, split_for_group

pytestmark = pytest.mark.usefixtures("ray_session")


def _prepare(
    src: str | Path, out: Path, config: CodecConfig = SMALL, **kw: Any
) -> tuple[Path, list[str]]:
    # Any: the keywords pass straight on to prepare_dataset, each with its own type.
    said: list[str] = []
    path = prepare_dataset(src, out, config, echo=said.append, **kw)
    return path, said


def _report(ds: Path) -> dict[str, Any]:
    return json.loads((ds / "report.json").read_text())


@pytest.fixture(scope="module")
def folder_dataset(
    tmp_path_factory: pytest.TempPathFactory, ray_session: None
) -> tuple[Path, Path]:
    """12 instruments x C3/C4/C5, one A3 and 4 training mixes."""
    root = tmp_path_factory.mktemp("folder")
    instrument_folder(root / "src", 12)
    write_tone(root / "src" / "extra" / "Oboe 1_A3.wav", 57)
    (root / "src" / "notes.txt").write_text("not audio")
    ds, _ = _prepare(root / "src", root / "ds", augment_mixes=4)
    return root / "src", ds


def test_counts_add_up_and_splits_are_disjoint_by_group(folder_dataset: tuple[Path, Path]) -> None:
    _, ds = folder_dataset
    report = _report(ds)
    c = report["counts"]
    assert (c["seen"], c["kept"], c["rejected"], c["filtered"]) == (37, 36, 0, 1)
    assert c["kept"] + c["rejected"] + c["filtered"] == c["seen"]
    assert c["other_files_ignored"] == 1
    assert [f["path"] for f in report["files"] if f["status"] == "filtered"] == [
        "extra/Oboe 1_A3.wav"
    ]
    data = load_dataset(ds)
    groups = {
        name: {m["group"] for m in s.meta if not m["augmented"]} for name, s in data.splits.items()
    }
    assert sum(len(s) for s in data.splits.values()) == c["kept"] + c["augmented"]
    assert not groups["train"] & groups["validation"]
    assert not groups["train"] & groups["test"]
    assert not groups["validation"] & groups["test"]
    for name, split in data.splits.items():
        for m in split.meta:
            assert m["split"] == name
            if not m["augmented"]:
                assert name == split_for_group(m["group"], SplitFractions())
                assert m["note_name"] in ("C3", "C4", "C5") and m["velocity"] == 100
                assert len(m["sha256"]) == 64 and m["peak"] > 0
    info = json.loads((ds / "dataset.json").read_text())
    assert info["rows_per_split"] == {n: len(s) for n, s in data.splits.items()}


def test_parquet_round_trip_equals_direct_encoding(folder_dataset: tuple[Path, Path]) -> None:
    src, ds = folder_dataset
    data = load_dataset(ds)
    assert data.codec == SMALL
    for split in data.splits.values():
        originals = [i for i, m in enumerate(split.meta) if not m["augmented"]]
        waves = np.stack([load_wave(src / split.meta[i]["path"], SMALL)[0] for i in originals])
        np.testing.assert_allclose(split.x[originals], encode_batch(waves, SMALL), atol=1e-6)
        assert split.x.shape[1:] == SMALL.shape and split.x.dtype == np.float32
    # The stored column is a fixed-shape tensor column, readable without Ray's loader.
    schema = pq.read_schema(ds / "data" / "train.parquet")
    assert "ArrowTensorType" in str(schema.field("x").type)


def test_augmentation_mixes_audio_and_stays_in_train(folder_dataset: tuple[Path, Path]) -> None:
    src, ds = folder_dataset
    data = load_dataset(ds)
    assert not any(m["augmented"] for s in ("validation", "test") for m in data.splits[s].meta)
    train = data.splits["train"]
    mixes = [i for i, m in enumerate(train.meta) if m["augmented"]]
    assert len(mixes) == 4
    train_groups = {m["group"] for m in train.meta if not m["augmented"]}
    for i in mixes:
        m = train.meta[i]
        first, second = m["path"], m["parent_b"]
        assert first != second and 0.3 <= m["mix"] <= 0.7
        assert set(m["group"].split("+")) <= train_groups
        a, b = load_wave(src / first, SMALL)[0], load_wave(src / second, SMALL)[0]
        expected = encode_batch(mix_waves(a, b, m["mix"])[None], SMALL)[0]
        np.testing.assert_allclose(train.x[i], expected, atol=1e-5)


def test_cache_reuse_fingerprint_and_rebuild(tmp_path: Path) -> None:
    instrument_folder(tmp_path / "src", 3)
    ds, said = _prepare(tmp_path / "src", tmp_path / "ds")
    first = json.loads((ds / "dataset.json").read_text())
    _, said = _prepare(tmp_path / "src", tmp_path / "ds")
    assert any(line.startswith("reusing dataset") for line in said)
    assert json.loads((ds / "dataset.json").read_text())["created"] == first["created"]
    # Same bytes, new modification time: still reused (content fingerprint).
    victim = next((tmp_path / "src").glob("*.wav"))
    victim.write_bytes(victim.read_bytes())
    _, said = _prepare(tmp_path / "src", tmp_path / "ds")
    assert any("content and settings unchanged" in line for line in said)
    # A changed setting rebuilds with a new fingerprint.
    _, said = _prepare(tmp_path / "src", tmp_path / "ds", config=SMALL.replace(mu=16.0))
    assert not any(line.startswith("reusing") for line in said)
    second = json.loads((ds / "dataset.json").read_text())
    assert second["fingerprint"] != first["fingerprint"] and second["codec"]["mu"] == 16.0
    # Changed content rebuilds too, and force always does.
    write_tone(victim, 48, seed=99)
    _, said = _prepare(tmp_path / "src", tmp_path / "ds", config=SMALL.replace(mu=16.0))
    third = json.loads((ds / "dataset.json").read_text())
    assert third["fingerprint"] != second["fingerprint"]
    _, said = _prepare(tmp_path / "src", tmp_path / "ds", config=SMALL.replace(mu=16.0), force=True)
    assert not any(line.startswith("reusing") for line in said)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ds.")]  # no build leftovers


def test_adding_files_never_moves_existing_ones(tmp_path: Path) -> None:
    instrument_folder(tmp_path / "src", 10)
    ds, _ = _prepare(tmp_path / "src", tmp_path / "ds1")
    before = {f["path"]: f["split"] for f in _report(ds)["files"]}
    write_tone(tmp_path / "src" / "Kazoo 77_C4.wav", 60, seed=5)
    write_tone(
        tmp_path / "src" / "Piano 3_C4_v64.wav", 60, seed=6
    )  # a new render of a known instrument
    ds2, _ = _prepare(tmp_path / "src", tmp_path / "ds2")
    after = {f["path"]: f["split"] for f in _report(ds2)["files"]}
    assert len(after) == len(before) + 2
    assert all(after[p] == s for p, s in before.items())
    assert after["Piano 3_C4_v64.wav"] == after["Piano 3_C4_v100.wav"]


def test_broken_files_are_each_reported_and_the_rest_is_kept(tmp_path: Path) -> None:
    src = tmp_path / "src"
    good = instrument_folder(src, 3)
    (src / "Empty_C4.wav").write_bytes(b"")
    (src / "Text_C4.wav").write_text("this is not a wav file\n")
    whole = write_tone(tmp_path / "whole.wav", 60).read_bytes()
    (src / "Truncated_C4.wav").write_bytes(whole[:30])
    (src / "Tiny_C4.wav").write_bytes(whole[:60])  # a header and 8 samples
    sf.write(src / "Nan_C4.wav", np.full(8000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    sf.write(src / "Silence_C4.wav", np.zeros(8000, dtype=np.float32), 16000)
    write_tone(src / "Liar_C4.wav", 69)  # says C4, plays A4
    write_tone(src / "Violin 9_A3.wav", 57)
    write_tone(src / "Untitled.wav", 60)
    shutil.copy(good[0], src / "Zcopy 1_C3.wav")

    ds, _ = _prepare(src, tmp_path / "ds", pitch_check=True, pitch_tolerance=0.1)
    report = _report(ds)
    status = {f["path"]: (f["status"], f["reason"]) for f in report["files"]}
    expected = {
        "Empty_C4.wav": ("rejected", {"empty", "unreadable"}),
        "Text_C4.wav": ("rejected", {"unreadable", "unsupported"}),
        "Truncated_C4.wav": ("rejected", {"unreadable", "empty", "too_short"}),
        "Tiny_C4.wav": ("rejected", {"too_short", "unreadable"}),
        "Nan_C4.wav": ("rejected", {"non_finite"}),
        "Silence_C4.wav": ("rejected", {"silent"}),
        "Liar_C4.wav": ("rejected", {"wrong_pitch"}),
        "Zcopy 1_C3.wav": ("rejected", {"duplicate"}),
        "Violin 9_A3.wav": ("filtered", {"note_not_wanted"}),
        "Untitled.wav": ("filtered", {"no_note"}),
    }
    for path, (want_status, reasons) in expected.items():
        assert status[path][0] == want_status, (path, status[path])
        assert status[path][1] in reasons, (path, status[path])
    assert all(f["detail"] for f in report["files"] if f["status"] != "kept")
    c = report["counts"]
    assert (c["seen"], c["kept"], c["rejected"], c["filtered"]) == (19, 9, 8, 2)
    md = (ds / "report.md").read_text()
    assert all(name in md for name in expected)
    assert sum(len(s) for s in load_dataset(ds).splits.values()) == 9


def test_with_every_note_wanted_a_file_naming_none_has_no_pitch_to_fail(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for seed, (name, midi) in enumerate(
        (("Tone A_C4.wav", 60), ("Tone B.wav", 60), ("Liar_C4.wav", 69))
    ):
        write_tone(src / name, midi, seed=seed)
    ds, _ = _prepare(src, tmp_path / "ds", notes="all", pitch_check=True)
    status = {f["path"]: (f["status"], f["reason"]) for f in _report(ds)["files"]}
    assert status["Tone A_C4.wav"] == ("kept", None)
    assert status["Tone B.wav"] == ("kept", None)  # was refused: "expected  Hz"
    assert status["Liar_C4.wav"] == ("rejected", "wrong_pitch")


def test_library_slice_uses_its_metadata(tmp_path: Path) -> None:
    from samplegen.dsp.library import ensure_library

    library = Path(ensure_library("fluidr3"))
    rows = (library / "metadata.csv").read_text().splitlines()
    header, body = rows[0], rows[1:]
    # Every note at two velocities of a handful of programs and the drum kit (program empty).
    columns = header.split(",")
    file_i, program_i, vel_i = (
        columns.index("file"),
        columns.index("program"),
        columns.index("velocity"),
    )
    programs = sorted({r.split(",")[program_i] for r in body})[:6]
    picked = [
        r
        for r in body
        if r.split(",")[program_i] in programs and r.split(",")[vel_i] in ("64", "127")
    ]
    src = tmp_path / "lib"
    src.mkdir()
    for r in picked:
        (src / r.split(",")[file_i]).symlink_to(library / r.split(",")[file_i])
    (src / "metadata.csv").write_text("\n".join([header, *picked]) + "\n")
    shutil.copy(library / "library.json", src / "library.json")
    ds, _ = _prepare(src, tmp_path / "ds", notes="all")
    report = _report(ds)
    assert report["settings"]["source_kind"] == "library"
    assert report["counts"]["kept"] + report["counts"]["rejected"] == len(picked)
    data = load_dataset(ds)
    for split in data.splits.values():
        for m in split.meta:
            if m["program"] is None:
                assert m["group"].startswith("drums")
            else:
                assert m["group"] == f"p{m['program']:03d}"
            assert m["category"] and m["note"] is not None
    by_group: dict[str, set[str]] = {}
    for split in data.splits.values():
        for m in split.meta:
            by_group.setdefault(m["group"], set()).add(m["split"])
    assert all(len(s) == 1 for s in by_group.values())


def test_object_store_splits_are_shared_read_only(folder_dataset: tuple[Path, Path]) -> None:
    import ray

    data = load_dataset(folder_dataset[1])
    refs = object_store_splits(data)
    assert set(refs) == {"train", "validation", "test"}
    got = ray.get(refs["train"])
    np.testing.assert_array_equal(got.x, data.splits["train"].x)
    assert not got.x.flags.writeable  # a view of shared memory
    assert got.meta == data.splits["train"].meta


def test_load_with_a_diverse_training_subset(folder_dataset: tuple[Path, Path]) -> None:
    data = load_dataset(folder_dataset[1], train_subset=5)
    assert len(data.splits["train"]) == 5
    assert len({m["name"] for m in data.splits["train"].meta}) == 5


def test_check_source_lists_nothing_and_refuses_what_is_not_there(tmp_path: Path) -> None:
    from samplegen.platform.sources import check_source

    check_source("builtin")  # rendered on first use: only its SoundFont must be there
    with pytest.raises(SamplegenError, match="soundfont nosuch: not a known name"):
        check_source("builtin:nosuch")
    check_source(str(tmp_path))
    check_source(tmp_path.as_uri())
    for missing in (str(tmp_path / "nope"), (tmp_path / "nope").as_uri()):
        with pytest.raises(SamplegenError, match=f"source {missing}: no such file or folder"):
            check_source(missing)


def test_errors_for_bad_sources_and_outputs(tmp_path: Path) -> None:
    with pytest.raises(SamplegenError, match="no such file or folder"):
        _prepare(tmp_path / "missing", tmp_path / "ds")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "Bad_C4.wav").write_text("nope")
    # No report is written for a dataset not made, so the error names the files.
    with pytest.raises(
        SamplegenError,
        match=r"no usable audio file among 1 \(unreadable 1\): Bad_C4.wav \(unreadable\)$",
    ):
        _prepare(tmp_path / "junk", tmp_path / "ds")
    assert not (tmp_path / "ds").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("precious")
    with pytest.raises(SamplegenError, match="refusing to replace"):
        _prepare(tmp_path / "junk", tmp_path / "mine")
    with pytest.raises(SamplegenError, match="not a samplegen dataset"):
        load_dataset(tmp_path / "mine")


def test_cli_prepare_info_and_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    instrument_folder(tmp_path / "src", 2)
    (tmp_path / "afile").write_text("x")
    base = ["data", "prepare", str(tmp_path / "src"), "--duration", "0.25", "--sample-rate", "8000"]
    cases = [
        ([*base, "--out", str(tmp_path / "ds"), "--repr", "mel"], "representation"),
        (["data", "prepare", str(tmp_path / "nowhere"), "--out", str(tmp_path / "ds")], "nowhere"),
        ([*base, "--out", str(tmp_path / "afile" / "ds")], "afile"),
        ([*base, "--out", str(tmp_path / "ds"), "--splits", "0.5,0.2"], "splits"),
    ]
    for argv, needle in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("samplegen: error:") and needle in err[0], err
    assert main([*base, "--out", str(tmp_path / "ds"), "--repr", "wave", "--notes", "C3,C4"]) == 0
    assert main(["data", "info", str(tmp_path / "ds")]) == 0
    out = capsys.readouterr().out
    assert "kept 4" in out and "wave shape (2000,)" in out
    assert load_dataset(tmp_path / "ds").codec.representation == "wave"


def test_variations_are_training_only_rows_of_training_programs(tmp_path: Path) -> None:
    with pytest.raises(SamplegenError, match="variations: source .* has no variation presets"):
        instrument_folder(tmp_path / "src")
        prepare_dataset(tmp_path / "src", tmp_path / "x", variations=True)

    ds, said = _prepare("builtin", tmp_path / "ds", notes="C4", variations=True)
    data = load_dataset(ds)
    train = data.splits["train"].meta
    extra = [m for m in train if m["augmented"]]
    real = [m for m in train if not m["augmented"]]
    assert any(f"added {len(extra)} training notes of variation presets" in s for s in said)
    # Only FluidR3's variations of training programs, each in its program's group, at C4.
    assert len(extra) >= 20
    assert {m["group"] for m in extra} <= {m["group"] for m in real}
    assert all(m["group"] == f"p{m['program']:03d}" and m["note"] == 60 for m in extra)
    held_out = {m["program"] for s in ("validation", "test") for m in data.splits[s].meta}
    assert held_out and not held_out & {m["program"] for m in extra}
    assert not any(m["augmented"] for s in ("validation", "test") for m in data.splits[s].meta)
    settings = json.loads((ds / "dataset.json").read_text())["settings"]
    assert settings["variations"] is True
    # With --pitch-check the variations are held to it as the library's notes are: those whose
    # sound is not at C4 (drum kits, sound effects, a 16' organ) are left out, each named.
    checked, said = _prepare(
        "builtin", tmp_path / "checked", notes="C4", variations=True, pitch_check=True
    )
    kept = [m for m in load_dataset(checked).splits["train"].meta if m["augmented"]]
    dropped = [s for s in said if s.startswith("warning: variation") and "wrong_pitch" in s]
    assert dropped and len(kept) + len(dropped) <= len(extra)
    # Without the option the same source gives the real rows alone, and no `variations` key.
    plain, _ = _prepare("builtin", tmp_path / "plain", notes="C4")
    assert "variations" not in json.loads((plain / "dataset.json").read_text())["settings"]
    assert len(load_dataset(plain).splits["train"]) == len(real)


def test_a_rebuild_scans_and_encodes_only_the_new_and_changed_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    instrument_folder(src, 6)
    age_files(src)
    # Say how far each stage has come at every batch (a long build says it every 30 s).
    monkeypatch.setattr("samplegen.platform.progress_count.REPORT_EVERY_S", 0.0)
    _, said = _prepare(src, tmp_path / "ds", batch_size=4)
    counts = [int(line.split()[1]) for line in said if line.startswith("encoded ")]
    assert all(f"encoded {n} of 18" in said for n in counts)
    # Batches of at most 4 rows, in whatever order Ray Data finishes them; none when all is done.
    assert len(counts) >= 4 and counts == sorted(set(counts)) and counts[-1] < 18
    monkeypatch.undo()
    write_tone(src / "Kazoo 77_C4.wav", 60, seed=5)
    changed = src / "Flute 0_C3_v100.wav"
    write_tone(changed, 48, seed=123)
    _, said = _prepare(src, tmp_path / "ds")
    assert "scanning 2 of 19 audio files from" in said[0] and "17 scanned before" in said[0]
    encoding = next(line for line in said if line.startswith("encoding"))
    assert encoding.startswith("encoding 2 of 19 rows") and "17 encoded before" in encoding
    _prepare(src, tmp_path / "fresh")
    assert_same_dataset(tmp_path / "ds", tmp_path / "fresh")
    # The two files written just now are not trusted to the kept scan (a rewrite this soon could
    # leave size and modification time as they are): they are scanned again, not encoded again.
    write_tone(src / "Kazoo 78_C4.wav", 60, seed=6)
    _, said = _prepare(src, tmp_path / "ds")
    assert "scanning 3 of 20" in said[0] and "17 scanned before" in said[0]
    assert any(line.startswith("encoding 1 of 20 rows") for line in said)
    _, said = _prepare(src, tmp_path / "ds", config=SMALL.replace(mu=16.0))
    assert "scanning 20 of 20" in said[0]  # the scan depends on the codec
    age_files(src)
    _, said = _prepare(src, tmp_path / "ds", config=SMALL.replace(mu=16.0), force=True)
    assert "scanning 20 of 20" in said[0]  # --force does it all again
    assert any(line.startswith("encoding 20 rows") for line in said)
    write_tone(src / "Kazoo 79_C4.wav", 60, seed=7)
    _, said = _prepare(src, tmp_path / "ds", config=SMALL.replace(mu=16.0))
    assert "scanning 1 of 21" in said[0] and "20 scanned before" in said[0]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ds.")]  # no progress left


def test_a_rebuild_encodes_only_the_mixes_it_has_not_encoded(tmp_path: Path) -> None:
    # A finished dataset records a mix's two files by path and their content on their own rows, so
    # its mixes serve a rebuild as its plain rows do.
    src = tmp_path / "src"
    instrument_folder(src, 6)
    age_files(src)
    _prepare(src, tmp_path / "ds", augment_mixes=3)
    _, said = _prepare(src, tmp_path / "ds", augment_mixes=5)  # the first 3 mixes stay as planned
    encoding = next(line for line in said if line.startswith("encoding"))
    assert encoding.startswith("encoding 2 of 23 rows") and "21 encoded before" in encoding
    # A training file that two mixes are made of is rewritten: it and those mixes are encoded again.
    meta = load_dataset(tmp_path / "ds").splits["train"].meta
    mixes = [m for m in meta if m["mix"] is not None]
    parent = Counter(p for m in mixes for p in {m["path"], m["parent_b"]}).most_common(1)[0][0]
    involved = sum(parent in (m["path"], m["parent_b"]) for m in mixes)
    note = next(m["note"] for m in meta if m["path"] == parent and m["mix"] is None)
    write_tone(src / parent, note, seed=99)
    age_files(src)
    _, said = _prepare(src, tmp_path / "ds", augment_mixes=5)
    encoding = next(line for line in said if line.startswith("encoding"))
    assert encoding.startswith(f"encoding {1 + involved} of 23 rows"), encoding
    _prepare(src, tmp_path / "fresh", augment_mixes=5)
    assert_same_dataset(tmp_path / "ds", tmp_path / "fresh")


def test_a_file_rewritten_just_after_a_build_with_its_size_and_time_is_seen(
    tmp_path: Path,
) -> None:
    # On a clock coarser than the rewrite (FAT's 2 s, an object store's 1 s), a file rewritten
    # right after a build keeps its size and modification time. The build's listing then matched
    # the new one, and the old dataset was reused.
    import os

    src = tmp_path / "src"
    instrument_folder(src, 3)
    _prepare(src, tmp_path / "ds")
    victim = src / "Flute 0_C4_v100.wav"
    stat = victim.stat()
    write_tone(victim, 60, seed=77)
    assert victim.stat().st_size == stat.st_size
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    _, said = _prepare(src, tmp_path / "ds")
    assert not any(line.startswith("reusing") for line in said), said
    _prepare(src, tmp_path / "fresh")
    assert_same_dataset(tmp_path / "ds", tmp_path / "fresh")
    # Once the files have settled, an unchanged folder is reused from its listing alone.
    age_files(src)
    _prepare(src, tmp_path / "ds")
    _, said = _prepare(src, tmp_path / "ds")
    assert any("inputs and settings unchanged" in line for line in said)
