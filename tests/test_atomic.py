"""Atomic writes: whole files or nothing, ordinary permissions, no temporary files left behind."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from samplegen.atomic import (
    recover_folder,
    replace_folder,
    write_atomic,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)


def test_text_is_written_exactly_and_parents_are_made(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "notes.csv"
    write_text_atomic(target, "x,y\r\n1,2\r\n")
    assert target.read_bytes() == b"x,y\r\n1,2\r\n"
    write_bytes_atomic(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert [p.name for p in target.parent.iterdir()] == ["notes.csv"]


def test_files_get_the_permissions_of_a_plain_open(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "f.txt", "hi")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_failing_writer_keeps_the_old_file_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")

    def broken(tmp: str) -> None:
        Path(tmp).write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(target, broken)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_json_options(tmp_path: Path) -> None:
    path = write_json_atomic(
        tmp_path / "d.json", {"b": 1, "a": Path("/x")}, sort_keys=True, default=str
    )
    text = path.read_text()
    assert text.endswith("\n") and text.index('"a"') < text.index('"b"')
    assert json.loads(text) == {"a": "/x", "b": 1}
    compact = write_json_atomic(tmp_path / "c.json", [1, 2], indent=None).read_text()
    assert compact == "[1, 2]\n"


def test_replace_folder_and_recovery_after_a_kill_between_its_renames(tmp_path: Path) -> None:
    target = tmp_path / "ds"
    for generation in ("1", "2"):
        build = tmp_path / f".ds.building-{generation}"
        build.mkdir()
        (build / "dataset.json").write_text(generation)
        replace_folder(build, target)
        assert (target / "dataset.json").read_text() == generation
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    # The state a kill leaves between `target -> .ds.old-*` and `build -> target`:
    target.rename(tmp_path / ".ds.old-1234")
    (tmp_path / ".ds.old-0000").mkdir()  # an unrelated leftover without the marker file
    recover_folder(target, "dataset.json")
    assert (target / "dataset.json").read_text() == "2"
    recover_folder(target, "dataset.json")  # nothing to do when the target exists
    assert (target / "dataset.json").read_text() == "2"
    recover_folder(tmp_path / "absent", "dataset.json")  # nor when nothing was moved aside
    assert not (tmp_path / "absent").exists()


def test_a_new_build_clears_what_killed_builds_left(tmp_path: Path) -> None:
    import socket

    from samplegen.atomic import new_build_folder

    target = tmp_path / "ds"
    host = socket.gethostname()
    dead = _dead_pid()
    dead_build = tmp_path / f".ds.build-{host}-{dead}-abc"
    live_build = tmp_path / f".ds.build-{host}-{os.getpid()}-def"  # a save under way here
    other_host = tmp_path / f".ds.build-elsewhere.example-{dead}-ghi"  # cannot be checked here
    aside = tmp_path / ".ds.old-1234"  # set aside by a replace killed between its renames
    unrelated = tmp_path / ".dsx.build-x"
    for path in (dead_build, live_build, other_host, aside, unrelated):
        path.mkdir()
    (aside / "dataset.json").write_text("1")
    # With no target, the copy set aside is all there is: recover_folder still needs it.
    build = new_build_folder(target)
    assert not dead_build.exists() and aside.exists()
    assert live_build.exists() and other_host.exists() and unrelated.exists()
    assert build.name.startswith(f".ds.build-{host}-{os.getpid()}-")
    assert build.stat().st_mode & 0o777 == 0o777 & ~_umask()
    replace_folder(build, target)
    new_build_folder(target).rmdir()
    assert not aside.exists() and live_build.exists()


def _dead_pid() -> int:
    import subprocess

    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
