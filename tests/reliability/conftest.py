"""The reliability tests reuse the platform tests' small audio and study helpers."""

from __future__ import annotations

import sys
from pathlib import Path

_PLATFORM = str(Path(__file__).resolve().parents[1] / "platform")
if _PLATFORM not in sys.path:
    sys.path.insert(0, _PLATFORM)
