"""A finished `samplegen run` folder, as the benchmarks that retrain its VAE need it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def chosen_trial(run: Path) -> dict[str, Any]:
    """The VAE study's best_config.json of `run`; exits naming what is missing when `run` has
    no chosen trial, encodings or dataset."""
    needed = [run / "vae_study" / "best_config.json", run / "vae_study-encoded", run / "dataset"]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise SystemExit(f"--run {run}: not a finished `samplegen run` (no {', '.join(missing)})")
    return json.loads(needed[0].read_text())
