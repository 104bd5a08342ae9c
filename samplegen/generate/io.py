"""Small file helpers for generation outputs: atomic JSON and PNG writes, safe file names."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from samplegen.atomic import write_json_atomic

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


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write `data` (numpy values made plain) as indented JSON, atomically."""
    return write_json_atomic(path, to_jsonable(data))


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file (no pickle, no code)."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
