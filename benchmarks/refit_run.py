"""The refit stage (samplegen.platform.refit) on a finished run of the main job made without it.

Not a target benchmark: it measures what the `refit` option would give a run that already exists,
without training its outer model and studies again. It reads RUN/run.json for the run's preset and
seed, refits RUN/vae_study's selected model over RUN/models/outer on RUN/dataset (fine-tuned as
the run's own fine-tuning stage kept it) and writes the work files and the refit combined model
under OUT. The run folder is only read. Score the result with `samplegen evaluate`.

Usage: .venv/bin/python benchmarks/refit_run.py RUN --out OUT [--num-cpus N]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from samplegen.platform.encoded import EqAugment
from samplegen.platform.finetune import FINETUNE_KEY, FinetuneSettings
from samplegen.platform.refit import refit_chain
from samplegen.platform.study import ensure_ray


def run_settings(run: Path) -> tuple[dict, EqAugment, FinetuneSettings | None]:
    """A finished run's preset (run.json), its EQ copies, and the fine-tuning its refit gets: the
    run's own settings when its fine-tuning was kept on validation, else None."""
    settings = json.loads((run / "run.json").read_text())
    preset, seed = settings["preset"], int(settings["seed"])
    config = json.loads((run / "models" / "combined" / "config.json").read_text())
    kept = config["extra"].get(FINETUNE_KEY) or {}
    eq = dataclasses.replace(EqAugment(**preset["inner_eq"]), seed=seed)
    tune = (
        FinetuneSettings(epochs=int(preset["finetune_epochs"]), seed=seed, eq=eq)
        if kept.get("kept") == "fine-tuned"
        else None
    )
    return preset, eq, tune


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--num-cpus", type=int, default=None)
    a = p.parse_args()
    settings_path = a.run / "run.json"
    if not settings_path.is_file():
        p.error(f"{a.run}: no run.json; give the folder of a finished `samplegen run`")
    preset, eq, tune = run_settings(a.run)
    if preset.get("refit"):
        p.error(f"{a.run}: this run was made with the refit already")
    ensure_ray(num_cpus=a.num_cpus)
    t0 = time.time()
    path = refit_chain(
        a.run / "vae_study",
        a.run / "models" / "outer",
        a.run / "dataset",
        a.out / "models" / "combined",
        work=a.out,
        refine_steps=preset["refine_steps"],
        eq=eq,
        finetune=tune,
    )
    print(f"refit model: {path} ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
