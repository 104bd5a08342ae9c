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
from samplegen.redact import redact_values

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
        self.run_dir = Path(run_dir).absolute()
        self.log = log
        self.run_dir.mkdir(parents=True, exist_ok=True)
        settings_path = self.run_dir / "run.json"
        # Kept without the credentials of a storage URI: they are no setting of the run (another
        # key to the same bucket continues it).
        settings = redact_values(json.loads(json.dumps(settings, default=str)))
        if settings_path.exists():
            recorded = json.loads(settings_path.read_text())
            previous = redact_values(recorded)
            if previous != recorded:  # a run folder written before credentials were hidden
                write_json_atomic(settings_path, previous)
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
        """The outputs a finished stage recorded (paths inside the run folder as they are now)."""
        marker = json.loads(self._marker(name).read_text())
        outputs = dict(marker["outputs"])
        for key in marker.get("in_run", []):
            outputs[key] = str(self.run_dir / outputs[key])
        return outputs

    def _recorded(self, outputs: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """`outputs` as a marker keeps them: a path inside the run folder relative to it (and its
        key listed), so a run folder moved or copied elsewhere resumes from its own files."""
        kept, in_run = dict(outputs), []
        for key, value in outputs.items():
            if isinstance(value, str) and Path(value).is_absolute():
                try:
                    kept[key] = Path(value).relative_to(self.run_dir).as_posix()
                except ValueError:
                    continue
                in_run.append(key)
        return kept, in_run

    def run(self, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run stage `name` unless it already finished; returns its outputs either way."""
        if self.done(name):
            self.log(f"[{name}] already done, reusing it")
            return self.outputs(name)
        self.log(f"[{name}] running")
        start = time.monotonic()
        outputs = fn() or {}
        seconds = time.monotonic() - start
        kept, in_run = self._recorded(outputs)
        marker = {"outputs": redact_values(kept), "in_run": in_run, "seconds": round(seconds, 2)}
        write_json_atomic(self._marker(name), marker)
        self.log(f"[{name}] done in {seconds:.1f} s")
        return outputs
