"""Where samples come from: a local folder, the built-in rendered library, or a pyarrow filesystem URI.

Resolving a source only lists files (path, size, modification time) and, for the built-in library,
reads its metadata.csv; nothing is decoded here.
"""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pyarrow.fs as pafs

from samplegen.errors import SamplegenError

AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {".wav", ".wave", ".flac", ".aif", ".aiff", ".aifc", ".ogg", ".oga", ".mp3"}
)
BUILTIN_PREFIX = "builtin"


class SourceError(SamplegenError):
    """A sample source that does not exist or cannot be listed."""


@dataclass(frozen=True)
class LibraryInfo:
    """What the built-in library's metadata.csv says about one file."""

    program: int | None
    program_name: str | None
    category: str | None
    note: int | None
    velocity: int | None


@dataclass(frozen=True)
class SourceFile:
    """One audio file of a source; `path` is what `filesystem` opens, `rel` is relative to the root."""

    path: str
    rel: str
    size: int
    mtime_ns: int | None
    library: LibraryInfo | None = None

    @property
    def name(self) -> str:
        """The file name without folder or extension."""
        return PurePosixPath(self.rel).stem


@dataclass(frozen=True)
class ResolvedSource:
    """A listed source: its filesystem, root, audio files and the other files it skipped."""

    spec: str
    kind: str  # "library", "folder" or "uri"
    filesystem: pafs.FileSystem
    root: str
    files: tuple[SourceFile, ...]
    other_files: tuple[str, ...] = field(default=())
    metadata_digest: str = ""


def _note_value(text: str) -> int | None:
    from samplegen.platform.names import note_to_midi

    text = text.strip()
    if not text:
        return None
    try:
        return int(float(text))
    except ValueError:
        return note_to_midi(text)


def _int_or_none(text: str | None) -> int | None:
    if text is None or not str(text).strip():
        return None
    return int(float(text))


def read_library_metadata(folder: Path) -> tuple[dict[str, LibraryInfo], str]:
    """metadata.csv of a rendered library: {file name: LibraryInfo} and the csv's sha256."""
    path = folder / "metadata.csv"
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SourceError(
            f"{path}: cannot read the library's metadata: {exc.strerror or exc}"
        ) from exc
    rows = csv.DictReader(raw.decode("utf-8").splitlines())
    info: dict[str, LibraryInfo] = {}
    try:
        for row in rows:
            info[row["file"]] = LibraryInfo(
                program=_int_or_none(row.get("program")),
                program_name=(row.get("program_name") or None),
                category=(row.get("category") or None),
                note=_note_value(row.get("note") or ""),
                velocity=_int_or_none(row.get("velocity")),
            )
    except (KeyError, ValueError) as exc:
        raise SourceError(f"{path}: malformed library metadata ({exc})") from exc
    return info, hashlib.sha256(raw).hexdigest()


def _list(fs: pafs.FileSystem, root: str, spec: str) -> tuple[list[pafs.FileInfo], list[str]]:
    top = _top_info(fs, root, spec)
    if top.type == pafs.FileType.File:
        infos = [top]
    else:
        try:
            if isinstance(fs, pafs.LocalFileSystem):
                infos = _walk_local(root)
            else:
                infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
        except OSError as exc:
            raise SourceError(f"source {spec}: cannot be listed: {exc}") from exc
    audio, other = [], []
    for info in infos:
        if info.type != pafs.FileType.File:
            continue
        if PurePosixPath(info.path).suffix.lower() in AUDIO_EXTENSIONS:
            audio.append(info)
        else:
            other.append(info.path)
    return audio, other


def _walk_local(root: str) -> list[pafs.FileInfo]:
    """Every file under the local folder `root`, as pyarrow's listing gives them, but with two
    differences. A link to nothing is listed as a file, so reading it reports it (pyarrow drops
    it: the file would vanish without a word). A link to a folder is followed, except into a
    folder it is already inside (a link back up the tree, which pyarrow follows until the path
    is too long, listing every file again at each depth). Other special files (pipes, devices)
    are left out, as pyarrow leaves them: reading a pipe would wait for ever."""
    found: list[pafs.FileInfo] = []
    stack: list[tuple[str, frozenset[tuple[int, int]]]] = [(root, frozenset())]
    while stack:
        folder, above = stack.pop()
        st = os.stat(folder)
        here = (st.st_dev, st.st_ino)
        if here in above:
            continue
        with os.scandir(folder) as entries:
            listed = sorted(entries, key=lambda e: e.name)
        for entry in listed:
            path = f"{folder.rstrip('/')}/{entry.name}"
            try:
                if entry.is_dir():
                    stack.append((path, above | {here}))
                    continue
                if entry.is_file():
                    info = entry.stat()
                    found.append(
                        pafs.FileInfo(
                            path, pafs.FileType.File, size=info.st_size, mtime_ns=info.st_mtime_ns
                        )
                    )
                    continue
            except OSError:
                pass  # a link whose target cannot be looked at: as a link to nothing, below
            if entry.is_symlink():
                link = entry.stat(follow_symlinks=False)
                found.append(
                    pafs.FileInfo(path, pafs.FileType.File, size=0, mtime_ns=link.st_mtime_ns)
                )
    return found


def _relative(path: str, root: str, single_file: bool) -> str:
    if single_file:
        return PurePosixPath(path).name
    return str(PurePosixPath(path).relative_to(PurePosixPath(root)))


def check_source(spec: str) -> None:
    """Raise a SamplegenError when `spec` names a local file or folder, or a URI's object, that
    is not there, or the built-in library of a SoundFont that is not there (the library itself is
    rendered later, on first use). Cheap, since nothing is listed or rendered: a job can refuse a
    mistyped source before it records the source as one of its settings."""
    spec = str(spec)
    if spec == BUILTIN_PREFIX or spec.startswith(BUILTIN_PREFIX + ":"):
        from samplegen.dsp.library import find_soundfont

        find_soundfont(spec.partition(":")[2] or "fluidr3")  # a name or file, not rendered yet
        return
    if "://" not in spec:
        if not Path(spec).expanduser().exists():
            raise SourceError(f"source {spec}: no such file or folder")
        return
    try:
        fs, root = pafs.FileSystem.from_uri(spec)
    except (ValueError, OSError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise SourceError(f"source {spec}: not a usable filesystem URI ({exc})") from exc
    _top_info(fs, root, spec)


def _top_info(fs: pafs.FileSystem, root: str, spec: str) -> pafs.FileInfo:
    try:
        top = fs.get_file_info(root)
    except OSError as exc:
        raise SourceError(f"source {spec}: cannot be reached: {exc}") from exc
    if top.type == pafs.FileType.NotFound:
        raise SourceError(f"source {spec}: no such file or folder")
    return top


def resolve_source(
    spec: str, library_cache: str | os.PathLike[str] | None = None
) -> ResolvedSource:
    """List the audio files of `spec`.

    `spec` is ``builtin`` / ``builtin:<soundfont>`` (the rendered library, made on first use),
    a local folder or file, or a pyarrow filesystem URI (``file://``, ``s3://``, ``gs://``...).
    Raises SourceError when the source does not exist or holds no audio file.
    """
    spec = str(spec)
    library: dict[str, LibraryInfo] = {}
    digest = ""
    if spec == BUILTIN_PREFIX or spec.startswith(BUILTIN_PREFIX + ":"):
        from samplegen.dsp.library import ensure_library

        name = spec.partition(":")[2] or "fluidr3"
        folder = Path(ensure_library(name, cache_dir=library_cache))
        library, digest = read_library_metadata(folder)
        fs: pafs.FileSystem = pafs.LocalFileSystem()
        root, kind = str(folder.resolve()), "library"
    elif "://" in spec:
        try:
            fs, root = pafs.FileSystem.from_uri(spec)
        except (ValueError, OSError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise SourceError(f"source {spec}: not a usable filesystem URI ({exc})") from exc
        kind = "uri"
    else:
        local = Path(spec).expanduser()
        if not local.exists():
            raise SourceError(f"source {spec}: no such file or folder")
        fs, root, kind = pafs.LocalFileSystem(), str(local.resolve()), "folder"
        if (local / "metadata.csv").is_file() and (local / "library.json").is_file():
            # A rendered library given by its path: use its metadata too.
            library, digest = read_library_metadata(local)
            kind = "library"

    infos, other = _list(fs, root, spec)
    single = len(infos) == 1 and infos[0].path.rstrip("/") == root.rstrip("/")
    files = []
    for info in sorted(infos, key=lambda i: i.path):
        rel = _relative(info.path, root, single)
        files.append(
            SourceFile(
                path=info.path,
                rel=rel,
                size=int(info.size or 0),
                mtime_ns=info.mtime_ns,
                library=library.get(rel) or library.get(PurePosixPath(rel).name),
            )
        )
    if not files:
        raise SourceError(
            f"source {spec}: no audio file found (looked for {', '.join(sorted(AUDIO_EXTENSIONS))})"
        )
    other_rel = tuple(sorted(_relative(p, root, False) for p in other if not single))
    return ResolvedSource(spec, kind, fs, root, tuple(files), other_rel, digest)
