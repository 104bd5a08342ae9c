"""Small file helpers for generation outputs: atomic JSON and PNG writes, safe file names."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_stem(name: str, fallback: str = "sound") -> str:
    """A file-name stem made of letters, digits, '.', '_' and '-' only (no path separators)."""
    stem = _UNSAFE.sub("_", Path(str(name)).stem).strip("._")
    return stem[:80] or fallback


def to_jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays and paths (recursively) into plain JSON values."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not np.isfinite(value):
        return None  # JSON has no NaN/inf; None reads back as "unknown"
    return value


def write_atomic(path: str | os.PathLike[str], writer: Callable[[str], None]) -> Path:
    """Call `writer(tmp_path)` for a temporary file in the target folder, then rename it into place."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        writer(tmp)
        # mkstemp makes the file private (0600); outputs are ordinary files, readable like any other.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write `data` as indented JSON, atomically."""
    text = json.dumps(to_jsonable(data), indent=2, sort_keys=False) + "\n"

    def _write(tmp: str) -> None:
        Path(tmp).write_text(text, encoding="utf-8")

    return write_atomic(path, _write)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write a UTF-8 text file atomically."""

    def _write(tmp: str) -> None:
        Path(tmp).write_text(text, encoding="utf-8")

    return write_atomic(path, _write)


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file (no pickle, no code)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
