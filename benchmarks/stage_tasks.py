"""What running a single-model stage as a Ray task costs, against running it in the driver.

Usage: .venv/bin/python benchmarks/stage_tasks.py MODEL --data DATASET [--cpus 2] [--split test]
       [--tasks 5] [--no-append]

On a local Ray of `--cpus` CPUs:
1. `--tasks` stage tasks that do nothing, each timed from submission to result (the fixed cost
   of `run_in_task`: the task, the actor that carries what it says, the polling);
2. `samplegen evaluate`'s work (`evaluate_model`) on MODEL in this process, torch on `--cpus`
   threads, timed;
3. the same evaluation as a stage task holding `--cpus` CPUs (so as many threads), timed.
Step 3's figures are compared with step 2's, value for value. Appends a dated section to
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from results_file import cpu_name, publish

from samplegen.platform.evaluation import evaluate_model
from samplegen.platform.stage_tasks import StagePlacement, run_in_task
from samplegen.platform.study import ensure_ray


def _evaluation(
    model: str, data: str, split: str, out: Path, threads: int
) -> Callable[[Callable[[str], None]], dict[str, Any]]:
    def evaluate(say: Callable[[str], None]) -> dict[str, Any]:
        import torch

        torch.set_num_threads(threads)
        return evaluate_model(model, data, split, out=out, echo=say)

    return evaluate


def main(argv: list[str] | None = None) -> None:
    """Run the three steps and publish the section."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--data", required=True)
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--split", default="test")
    p.add_argument("--tasks", type=int, default=5)
    p.add_argument("--no-append", action="store_true")
    args = p.parse_args(argv)

    ensure_ray(num_cpus=args.cpus)
    placement = StagePlacement(tasks=True, cpus=args.cpus, gpus=0)
    overheads = []
    for _ in range(args.tasks):
        started = time.perf_counter()
        run_in_task(lambda say: None, placement, echo=lambda _line: None)
        overheads.append(time.perf_counter() - started)

    with tempfile.TemporaryDirectory() as tmp:
        said: list[str] = []
        started = time.perf_counter()
        here = _evaluation(args.model, args.data, args.split, Path(tmp, "here"), args.cpus)(
            said.append
        )
        in_driver = time.perf_counter() - started
        started = time.perf_counter()
        task = _evaluation(args.model, args.data, args.split, Path(tmp, "task"), args.cpus)
        there, where = run_in_task(task, placement, echo=said.append, name="evaluation")
        in_task = time.perf_counter() - started

    sections = ("loss", "spectral", "per_category", "worst", "latent", "overfit", "pca_reference")
    same = all(
        json.dumps(here.get(k), sort_keys=True) == json.dumps(there.get(k), sort_keys=True)
        for k in sections
    )
    rms = here["loss"]["rms_percent"]
    command = " ".join(["benchmarks/stage_tasks.py", *(argv if argv is not None else sys.argv[1:])])
    text = f"""
## A single-model stage as a Ray task (benchmarks/stage_tasks.py), {dt.date.today()}

- Command: `.venv/bin/python {command}`
- Machine: {cpu_name()}, no GPU, Python {platform.python_version()}; a local Ray of {args.cpus} CPUs
- The task ran in process {where["pid"]}, the driver in process {os.getpid()}; the task held {args.cpus} CPU(s)

| step | wall s |
|---|---:|
| a stage task that does nothing, submitted to result: median / max of {args.tasks} | {statistics.median(overheads):.2f} / {max(overheads):.2f} |
| the evaluation ({args.split} split, RMS {rms:.3f}%) in the driver, torch on {args.cpus} threads | {in_driver:.1f} |
| the same evaluation as a stage task holding {args.cpus} CPUs | {in_task:.1f} |

Every figure of the task's evaluation ({", ".join(sections)}) equals the driver's: {"yes" if same else "NO"}.
"""
    print(text)
    if not args.no_append:
        publish(text)


if __name__ == "__main__":
    main()
