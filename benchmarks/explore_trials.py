"""Would the VAE study pick another trial if it judged trials as evaluation does? (not a target).

Usage: .venv/bin/python benchmarks/explore_trials.py RUN [--refine-steps 100] [--study DIR]
The chained VAE study ranks its trials by the validation loss of the encoder's mean, in the outer
encoding space; `samplegen evaluate` scores codes refined end to end through the outer decoder.
This rebuilds every trial of RUN/vae_study from its best-epoch weights (its last checkpoint), joins
it to RUN/models/outer as the pipeline's export does, and prints validation and test RMS% with
codes refined end to end, next to the study's own loss. `--study DIR` scores another VAE study run
over RUN's outer model instead (e.g. `samplegen tune vae --encoded RUN/vae_study-encoded`).
The package makes this choice itself for the study's best N trials with `samplegen tune vae
--rescore N` (samplegen.platform.selection); this script scores every trial, and test too.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from samplegen.dsp.metrics import rms_percent
from samplegen.models.artifact import load_model
from samplegen.platform.datasets import load_dataset
from samplegen.platform.selection import latest_checkpoint, refined_loss
from samplegen.platform.study import read_results
from samplegen.platform.training import load_best_weights


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("--refine-steps", type=int, default=100)
    p.add_argument("--study", type=Path, default=None, help="default RUN/vae_study")
    args = p.parse_args()
    torch.set_num_threads(2)
    outer = load_model(args.run / "models/outer").model
    data = load_dataset(args.run / "dataset", splits=("validation", "test"))
    study = args.study or args.run / "vae_study"
    rows = {r["trial_id"]: r for r in read_results(study)}
    best_config = json.loads((study / "best_config.json").read_text())
    best, model_name = best_config["trial_id"], best_config["model"]
    values = int(np.prod(data.splits["validation"].x.shape[1:]))

    def rms(params: dict, weights: dict, split: str) -> float:
        """RMS% of the trial's combined model on `split`, codes refined as evaluate's."""
        x = data.splits[split].x
        loss = refined_loss(model_name, params, weights, outer, x, refine_steps=args.refine_steps)
        return rms_percent(loss, values)

    for trial in sorted(study.glob("trial_*")):
        params = json.loads((trial / "params.json").read_text())
        weights = load_best_weights(latest_checkpoint(trial))
        tid = trial.name.removeprefix("trial_")
        row = rows.get(tid, {})
        print(
            f"{tid}{' (kept)' if tid == best else ''}: study loss {row.get('best_val_loss', 'nan'):.2f}"
            f" (epoch {row.get('best_epoch')}) | refined validation"
            f" {rms(params, weights, 'validation'):.3f}%"
            f" test {rms(params, weights, 'test'):.3f}%",
            flush=True,
        )


if __name__ == "__main__":
    main()
