"""Atomic file writes, shared by every package: the content goes to a temporary file in the target's
folder, which is then renamed over the target. A reader, or a run resumed after a crash, sees the old
file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_atomic(path: str | os.PathLike[str], writer: Callable[[str], object]) -> Path:
    """Call `writer(tmp_path)` to fill a temporary file beside `path`, then rename it into place.

    The parent folder is created if missing. The file gets the permissions a plain open() would
    give it (mkstemp makes it private). On any error the temporary file is removed.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        writer(tmp)
        os.chmod(tmp, _plain_mode(0o666))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _plain_mode(bits: int) -> int:
    """`bits` less the process umask: what a plain open() or mkdir() would give."""
    umask = os.umask(0)
    os.umask(umask)
    return bits & ~umask


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` atomically."""
    return write_atomic(path, lambda tmp: Path(tmp).write_bytes(data))


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write `text` as UTF-8 to `path` atomically, exactly as given (no newline translation)."""

    def _write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)

    return write_atomic(path, _write)


def write_json_atomic(
    path: str | os.PathLike[str],
    data: Any,
    *,
    indent: int | None = 2,
    sort_keys: bool = False,
    default: Callable[[Any], Any] | None = None,
) -> Path:
    """Write `data` as JSON plus a final newline to `path` atomically."""
    text = json.dumps(data, indent=indent, sort_keys=sort_keys, default=default) + "\n"
    return write_text_atomic(path, text)


def new_build_folder(target: Path) -> Path:
    """A new empty folder beside `target` in which to build its next version for `replace_folder`.

    Its name holds this host and process, so that a later call can tell the half-built folders
    of processes that died on this host and remove them, with the copies a killed
    `replace_folder` left aside: a process killed mid-save would otherwise leave them for
    good (a dataset's or a checkpoint's worth of disk each time)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(target)
    build = Path(
        tempfile.mkdtemp(prefix=f"{_build_prefix(target)}{os.getpid()}-", dir=target.parent)
    )
    build.chmod(_plain_mode(0o777))  # mkdtemp makes it private; what is built here is ordinary data
    return build


def _build_prefix(target: Path) -> str:
    return f".{target.name}.build-{socket.gethostname()}-"


def remove_leftovers(target: Path) -> None:
    """Remove what killed builds of `target` left beside it: build folders of this host's dead
    processes and, once `target` itself is there again, the copies set aside while replacing it
    (with no `target`, `recover_folder` still needs them)."""
    prefix = _build_prefix(target)
    for path in target.parent.glob(f".{glob.escape(target.name)}.*"):
        name = path.name
        if name.startswith(prefix):
            pid = name[len(prefix) :].split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(path, ignore_errors=True)
        elif name.startswith(f".{target.name}.old-") and target.is_dir():
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def replace_folder(build: Path, target: Path) -> None:
    """Move the finished folder `build` to `target`, replacing any folder there.

    Folders cannot be swapped in one rename: the old one moves aside to `.NAME.old-*` first. A
    crash between the two renames leaves no `target`; `recover_folder` puts the old one back.
    """
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(target, old)
    try:
        os.replace(build, target)
    except OSError:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def recover_folder(target: Path, marker: str) -> None:
    """Undo a `replace_folder` killed between its renames: when `target` is missing, move back its
    newest `.NAME.old-*` sibling that holds `marker` (the file every whole folder has)."""
    if target.exists() or not target.parent.is_dir():
        return
    olds = [
        p
        for p in target.parent.glob(f".{glob.escape(target.name)}.old-*")
        if (p / marker).is_file()
    ]
    if not olds:
        return
    newest = max(olds, key=lambda p: p.stat().st_mtime_ns)
    # Another process may have recovered it first, or the folder is read-only: read as it is.
    with contextlib.suppress(OSError):
        os.replace(newest, target)


def file_in_the_way(path: Path) -> Path | None:
    """The file that keeps `path` from being a folder: `path` itself or its nearest existing
    ancestor, when that is not a folder (None when the folder can be made or is there)."""
    for folder in (path, *path.parents):
        if folder.exists():
            return None if folder.is_dir() else folder
    return None
