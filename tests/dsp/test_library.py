"""The built-in sample library: real FluidSynth renders of the Debian General MIDI SoundFonts."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import TypedDict

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from samplegen.cli.main import main
from samplegen.dsp.categories import CATEGORIES
from samplegen.dsp.library import (
    DEFAULT_VELOCITIES,
    LibraryError,
    LibraryReport,
    default_cache_root,
    ensure_library,
    find_soundfont,
    midi_to_note,
    note_to_midi,
    render_library,
)
from samplegen.errors import SamplegenError

# Piano, nylon guitar, Contrabass (silent above its key range), trumpet, flute.
PROGRAMS = (0, 24, 43, 56, 73)
VELOCITIES = (64, 127)


class _Settings(TypedDict):
    """The render settings the cache tests pass to ensure_library by keyword."""

    notes: tuple[str, ...]
    velocities: tuple[int, ...]
    include_drums: bool


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> LibraryReport:
    out = tmp_path_factory.mktemp("small")
    return render_library(out, programs=PROGRAMS, velocities=VELOCITIES)


def _rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "metadata.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_counts_and_silent_renders(small: LibraryReport) -> None:
    # 5 programs + the drum kit, 3 notes, 2 velocities.
    assert small.rendered == (len(PROGRAMS) + 1) * 3 * 2
    assert small.rendered == small.kept + len(small.silent)
    silent = {(s.program, s.note, s.velocity) for s in small.silent}
    assert silent == {(43, note, v) for note in ("C4", "C5") for v in VELOCITIES}
    assert all(s.peak < 1e-3 and s.file == "" for s in small.silent)
    wavs = sorted(p.name for p in small.out_dir.glob("*.wav"))
    assert wavs == sorted(s.file for s in small.samples)
    assert not any(p.name.startswith("p043_contrabass_C5") for p in small.out_dir.iterdir())
    assert "p043_contrabass_C3_v64.wav" in wavs
    assert "p000_acoustic_grand_piano_C4_v127.wav" in wavs
    assert "drums_standard_kit_C4_v64.wav" in wavs
    info = json.loads((small.out_dir / "library.json").read_text())
    assert info["counts"]["kept"] == small.kept and info["counts"]["silent"] == len(small.silent)
    assert {(s["program"], s["note"], s["velocity"]) for s in info["silent"]} == silent
    assert info["settings"]["velocities"] == list(VELOCITIES)
    assert info["soundfont"]["path"].endswith("FluidR3_GM.sf2")
    assert len(info["soundfont"]["sha256"]) == 64


def test_metadata_matches_files(small: LibraryReport) -> None:
    rows = _rows(small.out_dir)
    assert len(rows) == small.kept
    for row in rows:
        data, rate = sf.read(small.out_dir / row["file"], dtype="float32")
        info = sf.info(small.out_dir / row["file"])
        assert (rate, info.channels, info.subtype, data.shape) == (44100, 1, "PCM_24", (88200,))
        peak = float(np.max(np.abs(data)))
        assert peak == pytest.approx(float(row["peak"]), abs=2e-6)
        assert peak >= 1e-3  # no silent file kept
        assert row["note"] in row["file"] and f"_v{row['velocity']}.wav" in row["file"]
        if row["bank"] == "128":
            assert row["program"] == "" and row["category"] == "Percussion"
        else:
            assert row["file"].startswith(f"p{int(row['program']):03d}_")
        assert note_to_midi(row["note"]) == int(row["midi_key"])
    piano = {r["file"]: r for r in rows if r["program"] == "0"}
    row = piano["p000_acoustic_grand_piano_C4_v64.wav"]
    assert (row["program_name"], row["family"], row["category"]) == (
        "Acoustic Grand Piano",
        "Piano",
        "Piano",
    )


def test_velocity_and_pitch_are_applied(small: LibraryReport) -> None:
    by = {(s.program, s.note, s.velocity): s for s in small.samples}
    for note in ("C3", "C4", "C5"):
        assert by[(0, note, 127)].peak > 1.5 * by[(0, note, 64)].peak
    # The flute's strongest partial at C4 is its fundamental, 261.6 Hz.
    wave, rate = sf.read(small.out_dir / by[(73, "C4", 127)].file, dtype="float32")
    spectrum = np.abs(np.fft.rfft(wave[: rate // 2 * 2]))
    freq = np.argmax(spectrum) * rate / (rate // 2 * 2)
    assert freq == pytest.approx(261.63, rel=0.02)


def test_levels_are_real_not_normalised(small: LibraryReport) -> None:
    peaks = [s.peak for s in small.samples]
    assert max(peaks) < 0.99 and min(peaks) < 0.2
    assert len({round(p, 4) for p in peaks}) > len(peaks) // 2


def test_a_folder_of_other_files_is_never_rendered_into(tmp_path: Path) -> None:
    # A render removes the notes an earlier render left: it used to remove a user's files named
    # like them too, in any folder.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "p000_my_piano.wav").write_bytes(b"mine")
    with pytest.raises(LibraryError, match="holds other files and no library rendered here"):
        render_library(mine, programs=(0,), notes=("C4",), velocities=(100,), include_drums=False)
    assert [p.name for p in mine.iterdir()] == ["p000_my_piano.wav"]
    # Its own folder is rendered into again, and keeps no marker once finished.
    lib = tmp_path / "lib"
    render_library(lib, programs=(0,), notes=("C4",), velocities=(100,), include_drums=False)
    render_library(lib, programs=(1,), notes=("C4",), velocities=(100,), include_drums=False)
    names = sorted(p.name for p in lib.iterdir())
    assert names == ["library.json", "metadata.csv", "p001_bright_acoustic_piano_C4_v100.wav"]


def test_render_is_deterministic_and_history_free(tmp_path: Path) -> None:
    a = render_library(tmp_path / "a", programs=(0, 43), notes=("C4",), velocities=(100,))
    b = render_library(tmp_path / "b", programs=(0, 43), notes=("C4",), velocities=(100,))
    # Another history before the same note (other programs, notes, drums off) changes nothing.
    render_library(
        tmp_path / "c",
        programs=(81, 0),
        notes=("C5", "C4"),
        velocities=(127, 100),
        include_drums=False,
    )
    assert [s.file for s in a.samples] == [s.file for s in b.samples]
    for s in a.samples:
        assert (tmp_path / "a" / s.file).read_bytes() == (tmp_path / "b" / s.file).read_bytes()
    assert (tmp_path / "a" / "metadata.csv").read_bytes() == (
        tmp_path / "b" / "metadata.csv"
    ).read_bytes()
    piano = "p000_acoustic_grand_piano_C4_v100.wav"
    assert (tmp_path / "a" / piano).read_bytes() == (tmp_path / "c" / piano).read_bytes()

    # Rendered again into "c" with other settings: only this render's notes are left (the earlier
    # ones would be files metadata.csv does not list); a file of the user's own stays.
    (tmp_path / "c" / "my_note_C4.wav").write_bytes(b"mine")
    again = render_library(tmp_path / "c", programs=(0,), notes=("C4",), velocities=(100,))
    notes = {p.name for p in (tmp_path / "c").glob("*.wav")}
    assert notes == {s.file for s in again.samples} | {"my_note_C4.wav"}


def test_categories_from_gm_families(tmp_path: Path) -> None:
    # One program of each of the 16 GM families, plus the ones the keyword table moves elsewhere.
    programs = tuple(range(0, 128, 8)) + (4, 52)
    report = render_library(tmp_path, programs=programs, notes=("C4",), velocities=(100,))
    rows = _rows(tmp_path)
    present = {r["category"] for r in rows}
    assert present <= set(CATEGORIES)
    assert {
        "Piano",
        "E-Piano",
        "Bell",
        "Organ",
        "Guitar",
        "Bass",
        "Strings",
        "Vocal",
        "Brass",
    } <= present
    assert {"Wind", "Synth", "Pad", "Plucked", "Percussion", "No Category"} <= present
    assert {r["family"] for r in rows} >= {"Piano", "Sound Effects", "Drum Kit"}
    assert report.kept == len(programs) + 1


def test_timgm6mb_renders(tmp_path: Path) -> None:
    report = render_library(
        tmp_path, soundfont="timgm6mb", programs=(0, 40, 73), notes=("C4",), velocities=(100,)
    )
    assert report.soundfont.name == "TimGM6mb.sf2"
    assert report.kept == 4 and not report.silent
    assert all(s.peak > 1e-2 for s in report.samples)


def test_default_library_counts() -> None:
    # The whole default library (reused from the cache after the first render: about 10 s).
    folder = ensure_library("fluidr3")
    info = json.loads((folder / "library.json").read_text())
    assert info["settings"]["velocities"] == list(DEFAULT_VELOCITIES)
    c = info["counts"]
    assert (c["rendered"], c["kept"], c["silent"]) == (1161, 1155, 6)
    assert {(s["program"], s["note"]) for s in info["silent"]} == {(43, "C4"), (43, "C5")}
    # GM programs map to every category but the two only file names give.
    assert set(c["by_category"]) == set(CATEGORIES) - {"Pulsing", "Synth Makes"}
    assert len(list(folder.glob("*.wav"))) == 1155 == len(_rows(folder))


def test_ensure_library_reuses_and_repairs_the_cache(tmp_path: Path) -> None:
    kw: _Settings = {"notes": ("C4",), "velocities": (90,), "include_drums": False}
    folder = ensure_library("timgm6mb", cache_dir=tmp_path, **kw)
    assert folder.parent == tmp_path and folder.name.startswith("timgm6mb-")
    mtimes = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert len([n for n in mtimes if n.endswith(".wav")]) > 100
    assert ensure_library("timgm6mb", cache_dir=tmp_path, **kw) == folder
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == mtimes
    # Other settings get their own folder; no temporary folder is left behind.
    other = ensure_library(
        "timgm6mb", cache_dir=tmp_path, notes=("C5",), velocities=(90,), include_drums=False
    )
    assert other != folder
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == sorted(
        [folder.name, other.name]
    )
    # An incomplete library is rendered again, and what killed renders left beside it goes.
    killed = [tmp_path / f".{folder.name}.x1.tmp", tmp_path / f".{folder.name}.x2.old"]
    for path in killed:
        (path / "library").mkdir(parents=True)
    victim = next(folder.glob("p000_*.wav"))
    victim.unlink()
    assert ensure_library("timgm6mb", cache_dir=tmp_path, **kw) == folder
    assert victim.is_file()
    assert not any(path.exists() for path in killed)
    assert (folder / "library.json").stat().st_mtime_ns != mtimes["library.json"]


def test_ensure_library_renders_only_the_programs_asked_for(tmp_path: Path) -> None:
    kw: _Settings = {"notes": ("C4",), "velocities": (90,), "include_drums": False}
    folder = ensure_library("timgm6mb", cache_dir=tmp_path, programs=(0, 40), **kw)
    assert sorted(r["program"] for r in _rows(folder)) == ["0", "40"]
    assert ensure_library("timgm6mb", cache_dir=tmp_path, programs=(0, 40), **kw) == folder
    # Another subset is another library, in its own folder.
    other = ensure_library("timgm6mb", cache_dir=tmp_path, programs=(0,), **kw)
    assert other != folder and [r["program"] for r in _rows(other)] == ["0"]


def test_default_cache_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SAMPLEGEN_CACHE", str(tmp_path))
    assert default_cache_root() == tmp_path / "library"


def test_find_soundfont() -> None:
    assert find_soundfont(None).name == "FluidR3_GM.sf2"
    assert find_soundfont("TimGM6mb").name == "TimGM6mb.sf2"
    assert find_soundfont("/usr/share/sounds/sf2/TimGM6mb.sf2").name == "TimGM6mb.sf2"
    with pytest.raises(LibraryError, match=r"/nowhere/x\.sf2.*fluid-soundfont-gm"):
        find_soundfont("/nowhere/x.sf2")
    with pytest.raises(LibraryError, match="not a known name"):
        find_soundfont("grand_piano")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"notes": ("H4",)}, "notes: 'H4' is not a note name"),
        ({"notes": ("C10",)}, "outside 0-127"),
        ({"notes": ()}, "notes: at least one"),
        ({"velocities": (0,)}, "velocities: 0 is not a MIDI velocity"),
        ({"velocities": (128,)}, "velocities: 128"),
        ({"velocities": (64, 64)}, "repeats"),
        ({"duration": 0.0}, "duration"),
        ({"sample_rate": 4000}, "sample_rate"),
        ({"programs": (128,)}, "programs: 128"),
        ({"soundfont": "/missing/font.sf3"}, "/missing/font.sf3"),
    ],
)
def test_bad_settings(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(SamplegenError, match=re.escape(message)):
        render_library(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


@settings(deadline=None)  # a loaded CI machine can stall one example past 200 ms
@given(st.integers(0, 127))
def test_note_names_round_trip(key: int) -> None:
    assert note_to_midi(midi_to_note(key)) == key


def test_note_names() -> None:
    assert [note_to_midi(n) for n in ("C3", "C4", "C5", "A4", "C#4", "Cs4", "Db4", "C-1")] == [
        48, 60, 72, 69, 61, 61, 61, 0,
    ]  # fmt: skip


def test_cli_renders_a_library(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "lib"
    argv = [
        "library",
        "--out",
        str(out),
        "--soundfont",
        "timgm6mb",
        "--notes",
        "C4",
        "--velocities",
        "100",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "TimGM6mb.sf2" in printed
    info = json.loads((out / "library.json").read_text())
    assert f"kept {info['counts']['kept']}" in printed
    assert info["counts"]["kept"] == len(list(out.glob("*.wav"))) >= 120
    assert (out / "drums_standard_kit_C4_v100.wav").is_file()


def test_cli_renders_a_range_of_programs(tmp_path: Path) -> None:
    out = tmp_path / "lib"
    argv = ["library", "--out", str(out), "--soundfont", "timgm6mb", "--notes", "C4"]
    argv += ["--velocities", "100", "--programs", "0-2,40", "--no-drums"]
    assert main(argv) == 0
    assert sorted(int(r["program"]) for r in _rows(out)) == [0, 1, 2, 40]
    assert json.loads((out / "library.json").read_text())["settings"]["programs"] == [0, 1, 2, 40]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--programs", "3-1"], "--programs: '3-1' is an empty range"),
        (["--programs", "piano"], "--programs: 'piano' is not a program number"),
        (["--programs", ","], "--programs: no program given"),
        (["--programs", "120-130"], "programs: 128 is not a GM program"),
        (["--programs", "1,1"], "programs: [1, 1] repeats a program"),
        (["--notes", "C4,X9"], "notes: 'X9'"),
        (["--velocities", "64,200"], "velocities: 200"),
        (["--velocities", "loud"], "--velocities: 'loud'"),
        (["--soundfont", "/no/such.sf2"], "/no/such.sf2"),
    ],
)
def test_cli_bad_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(["library", "--out", str(tmp_path / "x"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("samplegen: error:") and message in err
