"""benchmarks/RESULTS.md, where every benchmark script leaves its dated section."""

from __future__ import annotations

import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def publish(text: str, *, append: bool = True) -> None:
    """Print a benchmark's section and, unless `append` is False (--no-append), add it to RESULTS.md."""
    print(text)
    if append:
        with RESULTS.open("a", encoding="utf-8") as fh:
            fh.write("\n" + text)


def cpu_name() -> str:
    """The machine's CPU model, as RESULTS.md sections name their machine."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "CPU"
