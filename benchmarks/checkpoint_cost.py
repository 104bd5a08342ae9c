"""What one training checkpoint costs: the time `save_checkpoint` takes for a configuration's model.

Usage:
  .venv/bin/python benchmarks/checkpoint_cost.py --config STUDY/best_config.json [--repeats 5]
      [--no-append]

Builds the configuration's model at its study's input shape, trains it one epoch on 8 random
notes (so the optimiser holds its state), and saves a checkpoint with best weights `--repeats`
times: the median time and the checkpoint's size. `samplegen train` checkpoints every epoch by
default; set this beside an epoch's time to see what that costs. Appends a dated section to
RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import publish  # noqa: E402


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True, help="a study's best_config.json")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-append", action="store_true")
    a = p.parse_args(argv)

    import numpy as np

    from samplegen.models.registry import build_model
    from samplegen.platform.training import Trainer, model_tensors, save_checkpoint, split_config

    best = json.loads(Path(a.config).read_text())
    optim, hp = split_config(best["config"])
    shape = tuple(best["input_shape"])
    model = build_model(best["model"], hp, shape)
    x = np.random.default_rng(0).random((8, *shape), dtype=np.float32)
    trainer = Trainer(model, optim, x, x)
    trainer.run_epoch(1)
    weights = model_tensors(model)
    seconds = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "checkpoint"
        for i in range(a.repeats):
            start = time.perf_counter()
            save_checkpoint(folder, trainer, {"epoch": i}, weights)
            seconds.append(time.perf_counter() - start)
        size = sum(f.stat().st_size for f in folder.iterdir())
    given = " ".join(sys.argv[1:] if argv is None else argv)
    lines = [
        f"## What one training checkpoint costs ({dt.date.today().isoformat()})",
        "",
        f"Command: `.venv/bin/python benchmarks/checkpoint_cost.py {given}`",
        f"Machine: {platform.machine()}, {platform.system()} (no GPU).",
        "",
        f"{best['model']} of {a.config} ({model.num_params():,} parameters): a checkpoint with "
        f"its best weights is {size / 1e6:.1f} MB and takes {statistics.median(seconds) * 1e3:.0f}"
        f" ms to save (median of {a.repeats}; min {min(seconds) * 1e3:.0f} ms, max "
        f"{max(seconds) * 1e3:.0f} ms).",
    ]
    publish("\n".join(lines) + "\n", append=not a.no_append)


if __name__ == "__main__":
    main()
