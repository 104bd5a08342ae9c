"""What faults cost a study: 24 trials with ~25% injected crashes and one worker node removed,
against the same study without faults, on a local 3-node Ray cluster (ray.cluster_utils).

Usage: .venv/bin/python benchmarks/faults.py [--trials 24] [--epochs 6] [--crash-share 0.25]
       [--no-append]

Each study runs in its own process (tests/reliability/cluster_study.py: a head without CPUs and
two 1-CPU worker nodes, study storage on a shared local folder). Runs: fault-free; faults with a
checkpoint every epoch; faults with a checkpoint every 3 epochs (the node is removed 0.6 s after a
trial checkpoints, so work since then is lost). Reports trials finished, failures, epochs trained
again because of faults (the lost work), and the study's wall time against the fault-free run.
Appends a dated section to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_file import publish

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_STUDY = ROOT / "tests" / "reliability" / "cluster_study.py"


def _lines(trial_dir: Path) -> list[dict]:
    rows = []
    path = trial_dir / "result.json"
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def _stop_ray(marker: str) -> None:
    """Stop the processes of the private Ray under `marker` (never anyone else's)."""
    out = subprocess.run(["ps", "-eww", "-o", "pid=,args="], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        pid, _, args = line.strip().partition(" ")
        if marker in args and int(pid) != os.getpid():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), 9)


def run_one(label: str, extra: list[str], trials: int, epochs: int) -> dict:
    """One study in its own process and Ray; returns the measured numbers."""
    work = Path(tempfile.mkdtemp(prefix="sgfault-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_TMPDIR=str(work / "ray"), RAY_USAGE_STATS_ENABLED="0", RAY_AIR_NEW_OUTPUT="0")
    (work / "ray").mkdir()
    cmd = [sys.executable, str(CLUSTER_STUDY), str(work / "out"), "--trials", str(trials)]
    cmd += ["--epochs", str(epochs), *extra]
    t0 = time.time()
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise SystemExit(f"{label}: failed\n{done.stderr[-3000:]}")
        summary = json.loads((work / "out" / "summary.json").read_text())
        study = work / "out" / "studies" / "cluster"
        failures = rerun = trained = 0
        for row in summary["rows"]:
            trial = Path(row["path"])
            for err in trial.glob("error*.txt"):
                failures += err.read_text().count("Failure #")
            lines = [r for r in _lines(trial) if r["epoch"] != r["restored_from"]]
            trained += len(lines)
            rerun += len(lines) - len({r["epoch"] for r in lines})
        crashes = sum(
            1
            for row in summary["rows"]
            for err in Path(row["path"]).glob("error*.txt")
            if "injected fault" in err.read_text()
        )
        return {
            "label": label,
            "finished": sum(r["status"] == "completed" for r in summary["rows"]),
            "trials": len(summary["rows"]),
            "all_epochs": all(r["epochs"] == epochs for r in summary["rows"]),
            "failures": failures,
            "crashed_trials": crashes,
            "node_trials": len(summary.get("running_on_removed_node", [])),
            "epochs_trained": trained,
            "epochs_rerun": rerun,
            "study_s": summary["study_s"],
            "cluster_start_s": summary["cluster_start_s"],
            "total_s": time.time() - t0,
            "trial_dirs": len(list(study.glob("trial_*"))),
        }
    finally:
        _stop_ray(str(work))
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    """Run the three studies and print / append the results."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=24)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--crash-share", type=float, default=0.25, help="share of trials that crash")
    p.add_argument("--fail-seed", type=int, default=1)
    p.add_argument("--no-append", action="store_true")
    args = p.parse_args()

    # Injection fires per epoch; this per-epoch chance makes `crash_share` of trials crash once.
    per_epoch = 1 - (1 - args.crash_share) ** (1 / args.epochs)
    faults = ["--fail-probability", f"{per_epoch:.4f}", "--fail-seed", str(args.fail_seed)]
    runs = [
        run_one("fault-free", [], args.trials, args.epochs),
        run_one(
            "crashes + node lost, checkpoint every epoch",
            [*faults, "--remove-at", "2", "--replace-node"],
            args.trials,
            args.epochs,
        ),
        run_one(
            "crashes + node lost, checkpoint every 3 epochs",
            [*faults, "--remove-at", "3", "--remove-delay", "0.6", "--checkpoint-every", "3"]
            + ["--replace-node"],
            args.trials,
            args.epochs,
        ),
    ]
    base = runs[0]["study_s"]
    header = (
        "| run | trials finished | failures (crashed trials, trials on lost node) | "
        "epochs trained | epochs re-run (lost work) | study wall s | overhead |\n"
        "|---|---:|---:|---:|---:|---:|---:|\n"
    )
    table = header + "".join(
        f"| {r['label']} | {r['finished']}/{r['trials']}{'' if r['all_epochs'] else ' (short)'} | "
        f"{r['failures']} ({r['crashed_trials']}, {r['node_trials']}) | {r['epochs_trained']} | "
        f"{r['epochs_rerun']} | {r['study_s']:.1f} | {100 * (r['study_s'] / base - 1):+.0f}% |\n"
        for r in runs
    )
    print(table)
    if args.no_append:
        return 0
    load = os.getloadavg()[0]
    cmd = "  ".join(["    .venv/bin/python benchmarks/faults.py"] + sys.argv[1:]).rstrip()
    section = (
        f"\n## Faults: crashes and a lost node against a fault-free study (benchmarks/faults.py), "
        f"{dt.date.today().isoformat()}\n\n"
        f"- Command: `{cmd.strip()}`\n"
        f"- Machine: {platform.machine()} 2-core CPU, no GPU; local Ray cluster of a head (0 CPU) "
        f"and two 1-CPU worker nodes (ray.cluster_utils), load average {load:.1f} at the end\n"
        f"- Study: {args.trials} random-search trials of a small conv2d_ae, {args.epochs} epochs "
        f"each (256 samples of 32x16), 2 at a time; faults: a {per_epoch:.3f} chance per epoch "
        f"to raise once (about {args.crash_share:.0%} of trials), and one worker node removed "
        "(all its processes killed) while a trial trains on it, and a fresh node added in its "
        "place (as an autoscaler would)\n\n"
        f"{table}\n"
        "Epochs re-run count epochs reported twice (trained again after a failure); a failure "
        "also loses the part of an epoch in flight, which no result shows. Overhead is the "
        "study's wall time against the fault-free run (cluster start excluded); with one node "
        "gone until its replacement has started, the study runs on one CPU for a while.\n"
    )
    publish(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
