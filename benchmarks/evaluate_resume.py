"""What a stopped evaluation keeps, and what running it again costs.

Usage: .venv/bin/python benchmarks/evaluate_resume.py MODEL --data DATASET [--stop-after 30]
       [--split test] [--no-append]

Each step is `samplegen evaluate` in a process of its own, as a user would run it:
1. the whole evaluation, timed;
2. the same evaluation into another folder, stopped by SIGINT (Ctrl-C) once `--stop-after`
   batches of the model's outputs are kept (polled every 0.2 s, so a batch or two more may be);
3. the same command as 2 again, timed: it runs only the batches the stopped one had not kept.
The rerun's metrics.json is compared with step 1's, figure by figure. Appends a dated section
to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from results_file import cpu_name, publish

_SECTIONS = ("loss", "spectral", "per_category", "worst", "latent", "overfit", "pca_reference")


def _evaluate(
    model: str, data: str, split: str, out: Path, stop_after: int | None = None
) -> tuple[float, str, int]:
    """Run one evaluation (SIGINT once `stop_after` parts are kept): wall s, stderr, return code."""
    cmd = [sys.executable, "-m", "samplegen.cli.main", "evaluate", model, "--data", data]
    started = time.perf_counter()
    proc = subprocess.Popen(
        [*cmd, "--split", split, "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    progress = out.parent / f".{out.name}.progress"
    while stop_after is not None and proc.poll() is None:
        if progress.is_dir() and len(list(progress.glob("*.safetensors"))) >= stop_after:
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.2)
    _, err = proc.communicate()
    return time.perf_counter() - started, err, proc.returncode


def _numbers(value: Any, path: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        return {
            k: v for key, item in value.items() for k, v in _numbers(item, f"{path}.{key}").items()
        }
    if isinstance(value, list):
        return {
            k: v for i, item in enumerate(value) for k, v in _numbers(item, f"{path}.{i}").items()
        }
    return {path: value}


def _largest_difference(a: dict[str, Any], b: dict[str, Any]) -> tuple[int, float]:
    """How many values of the compared sections differ, and the largest relative difference."""
    left = _numbers({k: a.get(k) for k in _SECTIONS})
    right = _numbers({k: b.get(k) for k in _SECTIONS})
    if left.keys() != right.keys():
        return -1, math.inf
    differ, largest = 0, 0.0
    for key, u in left.items():
        v = right[key]
        if u == v:
            continue
        differ += 1
        if isinstance(u, float) and isinstance(v, float):
            largest = max(largest, abs(u - v) / max(abs(u), abs(v), 1e-12))
        else:
            largest = math.inf
    return differ, largest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="an outer or combined model folder")
    p.add_argument("--data", required=True, help="its prepared dataset")
    p.add_argument("--split", default="test")
    p.add_argument("--stop-after", type=int, default=30, help="batches kept before the stop")
    p.add_argument("--no-append", action="store_true")
    args = p.parse_args(argv)
    if args.stop_after < 1:
        p.error(f"--stop-after: must be >= 1, got {args.stop_after}")
    with tempfile.TemporaryDirectory() as tmp:
        whole_s, _, code = _evaluate(args.model, args.data, args.split, Path(tmp) / "whole")
        if code:
            raise SystemExit(f"the whole evaluation failed (exit {code})")
        stopped = Path(tmp) / "stopped"
        stopped_s, _, code = _evaluate(args.model, args.data, args.split, stopped, args.stop_after)
        if code == 0:
            raise SystemExit("the evaluation finished before the stop reached it")
        kept = len(list(Path(tmp).glob(".stopped.progress/*.safetensors")))
        rerun_s, said, code = _evaluate(args.model, args.data, args.split, stopped)
        if code:
            raise SystemExit(f"the rerun failed (exit {code}):\n{said}")
        whole = json.loads((Path(tmp) / "whole" / "metrics.json").read_text())
        rerun = json.loads((stopped / "metrics.json").read_text())
        leftover = list(Path(tmp).glob(".*.progress"))
    differ, largest = _largest_difference(whole, rerun)
    batches = math.ceil(whole["dataset"]["count"] / 16) + math.ceil(
        whole["dataset"]["train_count"] / 16
    )
    resumed = next((line for line in said.splitlines() if line.startswith("going on")), "")
    text = "\n".join(
        [
            f"## A stopped evaluation goes on where it stopped (benchmarks/evaluate_resume.py), "
            f"{dt.date.today()}",
            "",
            f"- Command: `.venv/bin/python benchmarks/evaluate_resume.py {args.model} --data "
            f"{args.data} --split {args.split} --stop-after {args.stop_after}`",
            f"- Machine: {platform.machine()}, {cpu_name()}, no GPU; each step is `samplegen "
            "evaluate` in a process of its own, batches of 16 notes",
            "",
            "| step | wall s |",
            "|---|---:|",
            f"| the whole evaluation ({batches} batches: {whole['dataset']['count']} "
            f"{args.split} notes, {whole['dataset']['train_count']} train notes) | {whole_s:.1f} |",
            f"| stopped by SIGINT once {kept} batches were kept | {stopped_s:.1f} |",
            f"| the same command again | {rerun_s:.1f} |",
            "",
            f"- The rerun said: `{resumed or '(nothing)'}`",
            f"- Its figures against the whole evaluation's ({', '.join(_SECTIONS)}): {differ} "
            f"values differ" + (f", by at most {largest:.2g} relative" if differ else ""),
            f"- Progress folders left behind: {len(leftover)}",
        ]
    )
    publish(text, append=not args.no_append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
