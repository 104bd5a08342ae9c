"""A study on a private multi-node Ray cluster on this machine (ray.cluster_utils.Cluster), with a
worker node removed while its trials run. Run as a script (its own process, own RAY_TMPDIR):

    python cluster_study.py OUT [--trials N] [--epochs E] [--fail-probability P] [--remove-at K]

The head has no CPU (trials run on the workers only, as on a real cluster with a CPU-only head);
study storage is OUT/studies, shared by every node. With --remove-at K, the first worker node
running a trial that has reported K epochs is removed (all its processes killed). Writes
OUT/summary.json: the results rows, which trials ran on the removed node, and the wall time.
Used by test_multinode.py and benchmarks/faults.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _trial_workers(raylet_pid: int) -> list[int]:
    """Pids of this node's worker processes that are running a trial right now."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            title = (proc / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if title.startswith("ray::ImplicitFunc") and _ppid(int(proc.name)) == raylet_pid:
            pids.append(int(proc.name))
    return pids


def _cwd_name(pid: int) -> str | None:
    """The folder name a process runs in (a Tune trial runs in a folder named after it)."""
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd")).name
    except OSError:
        return None


def _epochs_reported(study: Path) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for f in study.glob("trial_*/result.json"):
        rows = []
        for line in f.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        out[f.parent.name.removeprefix("trial_")] = rows
    return out


def data(train: int, seed: int = 0) -> Any:
    """Random samples with some structure, like tests/platform/tune_helpers.tiny_data."""
    from samplegen.dsp.config import CodecConfig
    from samplegen.platform.study import StudyData

    shape = (32, 16)
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, shape[0], dtype=np.float32)[:, None] * np.ones(shape, np.float32)
    x = (0.5 * ramp + 0.5 * rng.random((train + 16, *shape), dtype=np.float32)).astype(np.float32)
    return StudyData(x[:train], x[train:], CodecConfig(), "cluster-fp", "random")


SPACE = """model: conv2d_ae
params:
  layers: {type: const, value: 2}
  kernels: {type: int, low: 3, high: 6}
  kernel_size: {type: const, value: 3}
  batch_exp: {type: const, value: 3}
  lr_exp: {type: float, low: -4.5, high: -3.5}
"""


def main(argv: list[str] | None = None) -> int:
    """Start the cluster, run the study, maybe remove a node, write summary.json."""
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--train", type=int, default=256, help="training samples (epoch length)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--cpus-per-worker", type=int, default=1)
    p.add_argument("--fail-probability", type=float, default=0.0)
    p.add_argument("--fail-seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=1)
    p.add_argument(
        "--replace-node", action="store_true", help="add a fresh worker node after the removal"
    )
    p.add_argument(
        "--remove-delay", type=float, default=0.0, help="seconds from --remove-at to the removal"
    )
    p.add_argument(
        "--remove-at", type=int, default=0, help="remove a node at this epoch (0: never)"
    )
    args = p.parse_args(argv)

    import ray
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    from samplegen.platform.study import StudyConfig, run_study

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "space.yaml").write_text(SPACE)
    mib = 1024 * 1024
    t_start = time.time()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "object_store_memory": 100 * mib,
            "include_dashboard": False,
        },
    )
    workers = [
        cluster.add_node(num_cpus=args.cpus_per_worker, object_store_memory=80 * mib)
        for _ in range(args.workers)
    ]
    cluster.wait_for_nodes()
    cluster.connect()
    t_ready = time.time()
    config = StudyConfig(
        name="cluster",
        model="conv2d_ae",
        search="random",
        trials=args.trials,
        epochs=args.epochs,
        storage=str(out / "studies"),
        space=str(out / "space.yaml"),
        stall_window=None,
        overfit_limit=None,
        max_params=None,
        max_failures=3,
        checkpoint_every=args.checkpoint_every,
        fail_probability=args.fail_probability,
        fail_seed=args.fail_seed,
        progress=False,
        export_best=False,
    )
    study = out / "studies" / "cluster"
    removed: dict[str, Any] = {}

    def mid_training(trial_dir: str) -> bool:
        """Whether the trial has checkpointed epoch >= remove_at and is not finished."""
        ckpts = sorted((study / trial_dir).glob("checkpoint_*/state.json"))
        try:
            state = json.loads(ckpts[-1].read_text()) if ckpts else None
        except (OSError, ValueError):
            return False
        if not state:
            return False
        return state["epoch"] >= args.remove_at and not state.get("final_metrics")

    def remove_a_busy_node() -> None:
        # Workers write checkpoints straight to the shared storage and run in their trial's
        # folder, so the trial a node is training (and how far it got) is seen at once.
        while not removed.get("done"):
            time.sleep(0.05)
            for node in workers:
                raylet = node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
                busy = {pid: _cwd_name(pid) for pid in _trial_workers(raylet)}
                if any(name and mid_training(name) for name in busy.values()):
                    if args.remove_delay:
                        # A node dies at any moment, not just after a checkpoint.
                        time.sleep(args.remove_delay)
                        busy = {pid: _cwd_name(pid) for pid in _trial_workers(raylet)}
                    removed["pids"] = sorted(busy)
                    removed["trials"] = sorted(n for n in busy.values() if n)
                    removed["at"] = time.time() - t_ready
                    cluster.remove_node(node, allow_graceful=False)
                    if args.replace_node:  # as an autoscaler would
                        cluster.add_node(
                            num_cpus=args.cpus_per_worker, object_store_memory=80 * mib
                        )
                    removed["done"] = True
                    return

    watcher = None
    if args.remove_at:
        watcher = threading.Thread(target=remove_a_busy_node, daemon=True)
        watcher.start()
    result = run_study(config, data(args.train))
    removed["done"] = True
    t_end = time.time()
    # Trials that ran on the removed node at some point (its workers are reused across trials).
    lost = [
        t
        for t, rows in _epochs_reported(study).items()
        if any(r.get("pid") in removed.get("pids", ()) for r in rows)
    ]
    summary = {
        "rows": result.rows,
        "interrupted": result.interrupted,
        "removed_node_trials": sorted(lost),
        "removed_pids": removed.get("pids", []),
        "removed_at_s": removed.get("at"),
        "running_on_removed_node": removed.get("trials", []),
        "cluster_start_s": t_ready - t_start,
        "study_s": t_end - t_ready,
        "alive_nodes": sum(1 for n in ray.nodes() if n["Alive"]),
    }
    tmp = out / ".summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1, default=str))
    os.replace(tmp, out / "summary.json")
    ray.shutdown()
    cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
