"""A resumable sequence of pipeline stages: each finished stage leaves a marker with its outputs.

Running the same pipeline again skips every stage whose marker exists, so an interrupted run
continues at the stage it was in, and nothing finished is recomputed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from samplegen import atomic
from samplegen.errors import SamplegenError

MARKER_DIR = ".stages"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON as run folders keep it (sorted keys, str() for other values), atomically."""
    atomic.write_json_atomic(path, data, sort_keys=True, default=str)


class StageRunner:
    """Runs named stages in a run folder, remembering the ones that finished.

    `settings` are the run's settings; a folder started with other settings is refused, so a
    resumed run never mixes results made under different settings.
    """

    def __init__(
        self, run_dir: str | Path, settings: dict[str, Any], log: Callable[[str], None] = print
    ):
        self.run_dir = Path(run_dir)
        self.log = log
        self.run_dir.mkdir(parents=True, exist_ok=True)
        settings_path = self.run_dir / "run.json"
        settings = json.loads(json.dumps(settings, default=str))
        if settings_path.exists():
            previous = json.loads(settings_path.read_text())
            if previous != settings:
                changed = sorted(
                    k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k)
                )
                raise SamplegenError(
                    f"{self.run_dir}: this run folder was started with other settings "
                    f"({', '.join(changed)} differ); use another --out, or delete the folder to restart"
                )
        else:
            write_json_atomic(settings_path, settings)

    def _marker(self, name: str) -> Path:
        return self.run_dir / MARKER_DIR / f"{name}.json"

    def done(self, name: str) -> bool:
        """Whether stage `name` finished in an earlier or this run."""
        return self._marker(name).exists()

    def outputs(self, name: str) -> dict[str, Any]:
        """The outputs a finished stage recorded."""
        return json.loads(self._marker(name).read_text())["outputs"]

    def run(self, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run stage `name` unless it already finished; returns its outputs either way."""
        if self.done(name):
            self.log(f"[{name}] already done, reusing it")
            return self.outputs(name)
        self.log(f"[{name}] running")
        start = time.monotonic()
        outputs = fn() or {}
        seconds = time.monotonic() - start
        write_json_atomic(self._marker(name), {"outputs": outputs, "seconds": round(seconds, 2)})
        self.log(f"[{name}] done in {seconds:.1f} s")
        return outputs
