"""The chain's speed-up and the quick preset's cost and result.

Usage: .venv/bin/python benchmarks/chain.py [--run RUN_DIR] [--epochs 3] [--no-append]

1. Speed-up: seconds per epoch of the inner VAE trained on the frozen outer model's encodings
   (what `samplegen tune vae` does) against seconds per epoch of the same combined model trained
   end to end on the STFT samples, both on the run's training split, same batch size and threads.
2. The quick preset: wall time per stage (from RUN/.stages, written by `samplegen run`) and the test
   metrics of its combined model. Without --run it runs `samplegen run --preset quick --out
   runs/quick` first (or reuses it stage by stage).
Appends a dated section to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path

from results_file import publish


def _epoch_seconds(model, x, epochs: int, batch_exp: int = 4, lr_exp: float = -5) -> float:
    """Median seconds per training epoch of `model` on `x` (validation: a small slice)."""
    import statistics

    from samplegen.platform.training import Trainer, split_config

    optim, _ = split_config({"batch_exp": batch_exp, "lr_exp": lr_exp})
    trainer = Trainer(model, optim, x, x[:8], seed=0)
    times = []
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        trainer.train_epoch(epoch)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default=None, help="a finished `samplegen run` folder")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--no-append", action="store_true")
    args = p.parse_args(argv)

    import numpy as np
    import torch

    from samplegen.models.artifact import load_model
    from samplegen.models.base import InnerModel
    from samplegen.models.combined import CombinedModel
    from samplegen.models.registry import build_model
    from samplegen.platform.datasets import load_dataset
    from samplegen.platform.encoded import load_encoded

    torch.set_num_threads(2)
    if args.run is None:
        from samplegen.platform.pipeline import run_pipeline
        from samplegen.platform.presets import get_preset

        args.run = run_pipeline(get_preset("quick"), "runs/quick")["run_dir"]
    run = Path(args.run)
    combined = load_model(run / "models" / "combined").model
    hp = combined.hparams
    train_x = load_dataset(run / "dataset", splits=("train",)).splits["train"].x
    train_z = load_encoded(run / "vae_study-encoded", splits=("train",)).splits["train"].z

    inner = build_model(hp.inner, hp.inner_hparams, train_z.shape[1:])
    latent_s = _epoch_seconds(inner, np.ascontiguousarray(train_z), args.epochs)
    fresh_outer = build_model(hp.outer, hp.outer_hparams, train_x.shape[1:])
    fresh_inner = build_model(hp.inner, hp.inner_hparams, train_z.shape[1:])
    assert isinstance(fresh_inner, InnerModel)  # a combined model's inner part is one
    fresh = CombinedModel.from_parts(fresh_outer, fresh_inner)
    e2e_s = _epoch_seconds(fresh, train_x, args.epochs)

    stages = {
        f.stem: json.loads(f.read_text())["seconds"]
        for f in sorted((run / ".stages").glob("*.json"))
    }
    metrics = json.loads((run / "evaluation" / "metrics.json").read_text())
    outer = json.loads((run / "evaluation" / "outer" / "metrics.json").read_text())
    settings = json.loads((run / "run.json").read_text())
    order = ["dataset", "outer_study", "outer_model", "vae_study", "evaluation", "sounds", "report"]
    lines = [
        f"## Chain speed-up and the quick preset (benchmarks/chain.py), {dt.date.today().isoformat()}",
        "",
        f"- Command: `.venv/bin/python benchmarks/chain.py --run {args.run} --epochs {args.epochs}`",
        f"- Machine: {platform.machine()} 2-core CPU, no GPU, torch {torch.__version__}, 2 threads",
        f"- Model: {hp.outer} {json.dumps(hp.outer_hparams)} + {hp.inner} "
        f"{json.dumps(hp.inner_hparams)}; {len(train_x)} training samples, batch 16",
        "",
        f"| training | seconds per epoch (median of {args.epochs}) |",
        "|---|---:|",
        f"| inner VAE on the encodings ({train_z.shape[1]} values each) | {latent_s:.2f} |",
        f"| the same combined model end to end ({'x'.join(map(str, train_x.shape[1:]))}) | "
        f"{e2e_s:.2f} |",
        f"| speed-up | {e2e_s / latent_s:.1f}x |",
        "",
        f"Quick preset run `{run}` (preset {settings['preset']['name']}, source "
        f"{settings['source']}): stage wall times in seconds, as that run measured them "
        "(a stage reused from an earlier run keeps its first time):",
        "",
        "| " + " | ".join(s for s in order if s in stages) + " | total |",
        "|" + "---:|" * (sum(s in stages for s in order) + 1),
        "| "
        + " | ".join(f"{stages[s]:.0f}" for s in order if s in stages)
        + f" | {sum(stages.values()):.0f} |",
        "",
        f"Test split ({metrics['loss']['count']} notes of instruments never trained on): combined "
        f"model RMS {metrics['loss']['rms_percent']:.3f}% (mean loss {metrics['loss']['mean']:.2f}), "
        f"outer model alone {outer['loss']['rms_percent']:.3f}%; latent active units "
        f"{metrics['latent']['active_units']} of {metrics['latent']['dims']}; test/train loss "
        f"{metrics['overfit']['ratio']:.2f}.",
        "",
    ]
    text = "\n".join(lines)
    publish(text, append=not args.no_append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
