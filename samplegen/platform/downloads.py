"""Local copies of what a study on a storage URI (s3://, gs://, file://) holds.

Models load from folders, and the chained study reads trial checkpoints, an outer study's best
model and its own best model from them; a study kept on a URI has them copied into a local folder
first. Ray Tune itself reads and writes the URI directly.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from samplegen.errors import SamplegenError


def is_uri(location: str | os.PathLike[str]) -> bool:
    """Whether `location` names a storage URI rather than a local path."""
    return "://" in str(location)


def join_location(location: str | os.PathLike[str], *parts: str) -> str:
    """`location` (a folder or URI) with `parts` appended to its path. A URI keeps its options
    after the path (s3://bucket/studies?endpoint_override=host:9000), where a plain string join
    would have put the parts inside them."""
    from urllib.parse import urlsplit, urlunsplit

    text = str(location)
    if not is_uri(text):
        return str(Path(text, *parts))
    split = urlsplit(text)
    path = "/".join([split.path.rstrip("/"), *parts])
    return urlunsplit(split._replace(path=path))


def location_name(location: str | os.PathLike[str]) -> str:
    """The last name in the path of a folder or URI (a study's name)."""
    from urllib.parse import urlsplit

    text = str(location)
    path = urlsplit(text).path if is_uri(text) else text
    return path.rstrip("/").rsplit("/", 1)[-1]


def location_fs(location: str | os.PathLike[str]) -> tuple[Any, str]:
    """(pyarrow file system, path on it) of a folder or URI; SamplegenError naming a URI that
    pyarrow cannot open (an unknown scheme, a malformed address)."""
    import pyarrow as pa
    import pyarrow.fs as pafs

    if is_uri(location):
        try:
            fs, path = pafs.FileSystem.from_uri(str(location))
        except (pa.ArrowException, ValueError) as exc:
            raise SamplegenError(f"{location}: cannot open this storage URI ({exc})") from None
        return fs, path.rstrip("/")
    return pafs.LocalFileSystem(), str(Path(location).expanduser().resolve())


def write_file(fs: Any, path: str, data: bytes) -> None:
    """Write `data` at `path` on `fs`: atomically on a local (or mounted) folder, whose parent is
    made; an object store replaces the whole object."""
    import pyarrow.fs as pafs

    if isinstance(fs, pafs.LocalFileSystem):
        from samplegen.atomic import write_bytes_atomic

        write_bytes_atomic(path, data)
        return
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as fh:
        fh.write(data)


def local_copy(location: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """A folder as a local path: `location` itself when it is local, else its copy at `dest`
    (made afresh: what was there is replaced)."""
    import pyarrow.fs as pafs

    if not is_uri(location):
        return Path(location).expanduser()
    fs, path = location_fs(location)
    target = Path(dest)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    pafs.copy_files(path, str(target), source_filesystem=fs)
    return target


def copy_latest_checkpoint(
    study: str | os.PathLike[str], trial_id: str, dest_study: str | os.PathLike[str]
) -> Path:
    """The newest checkpoint of trial `trial_id` in the study at URI `study`, copied to
    `dest_study/trial_ID/` under its own name (the layout `selection.latest_checkpoint` reads)."""
    import pyarrow.fs as pafs

    from samplegen.platform.checkpoint_folders import checkpoints_newest_first

    fs, root = location_fs(study)
    trial = f"trial_{trial_id}"
    found = [
        info.path
        for info in fs.get_file_info(pafs.FileSelector(f"{root}/{trial}", allow_not_found=True))
        if info.type == pafs.FileType.Directory and info.base_name.startswith("checkpoint_")
    ]
    target = Path(dest_study) / trial
    if not found:
        target.mkdir(parents=True, exist_ok=True)
        return target  # the reader names the trial that kept no checkpoint
    newest = checkpoints_newest_first(fs, found)[0].rstrip("/").rsplit("/", 1)[-1]
    return local_copy(join_location(study, trial, newest), target / newest).parent
