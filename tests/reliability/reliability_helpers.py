"""Shared pieces of the reliability tests: private Ray processes, the real console script, study
folders read back from disk, and a small prepared dataset."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SAMPLEGEN = str(Path(sys.executable).with_name("samplegen"))
PLATFORM_TESTS = REPO / "tests" / "platform"

# A search space of tiny conv2d auto-encoders over the small test codec (129 x 16).
TINY_SPACE = """model: conv2d_ae
params:
  layers: {type: int, low: 1, high: 2}
  kernels: {type: int, low: 2, high: 6}
  kernel_size: {type: const, value: 3}
  batch_exp: {type: int, low: 2, high: 4}
  lr_exp: {type: float, low: -4.5, high: -3.0}
"""
# Flags that make a study's trials run exactly --epochs epochs.
NO_EARLY_STOP = ["--stall-window", "0", "--overfit-limit", "0"]


def private_env(ray_tmp: Path, **extra: str) -> dict[str, str]:
    """Environment for a child that starts its own Ray: own temp root, no inherited address."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    env.update(
        RAY_TMPDIR=str(ray_tmp),
        RAY_USAGE_STATS_ENABLED="0",
        RAY_AIR_NEW_OUTPUT="0",
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        PYTHONPATH=os.pathsep.join([str(PLATFORM_TESTS), str(Path(__file__).parent)]),
    )
    env.update(extra)
    return env


@contextlib.contextmanager
def ray_temp_root() -> Iterator[Path]:
    """A short private temp root for a child's Ray (unix socket paths stay short); every process
    still using it afterwards is stopped, so a killed driver leaves nothing running."""
    root = Path(tempfile.mkdtemp(prefix="sgrl-", dir="/tmp"))
    try:
        yield root
    finally:
        stop_processes_using(str(root))
        import shutil

        shutil.rmtree(root, ignore_errors=True)


def processes_using(marker: str) -> list[int]:
    """Ids of processes whose command line mentions `marker` (a private temp root)."""
    out = subprocess.run(["ps", "-eww", "-o", "pid=,args="], capture_output=True, text=True).stdout
    pids = []
    for line in out.splitlines():
        pid, _, args = line.strip().partition(" ")
        if marker in args and int(pid) != os.getpid():
            pids.append(int(pid))
    return pids


def stop_processes_using(marker: str) -> None:
    """SIGTERM, then SIGKILL, the processes of one private Ray (never anyone else's)."""
    pids = processes_using(marker)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.time() + 5
    while pids and time.time() < deadline:
        time.sleep(0.2)
        pids = [p for p in pids if _alive(p)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return False
    return True


def run_cli(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """The real console script, to completion."""
    return subprocess.run(
        [SAMPLEGEN, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def kill_when(
    cmd: list[str],
    env: dict[str, str],
    cwd: Path,
    ready: Callable[[], bool],
    log: Path,
    timeout: float = 240,
    sig: int = signal.SIGKILL,
    poll: float = 0.1,
) -> int:
    """Start `cmd`, poll `ready()` and send `sig` (SIGKILL unless told) the moment it is true;
    after another signal, wait up to 2 minutes for the process to end. Returns its exit code.

    Fails if the process ends by itself first (it must be stopped mid-work).
    """
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        try:
            while not ready():
                if proc.poll() is not None:
                    raise AssertionError(
                        f"{cmd[:3]} ended (rc {proc.returncode}) before the kill point:\n"
                        + log.read_text()[-3000:]
                    )
                if time.time() > deadline:
                    raise AssertionError(f"kill point not reached in {timeout} s")
                time.sleep(poll)
            proc.send_signal(sig)
            if sig != signal.SIGKILL:
                proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    return proc.returncode


def result_lines(trial_dir: Path) -> list[dict[str, Any]]:
    """A trial's reported results (result.json), skipping a line a kill cut short."""
    path = trial_dir / "result.json"
    rows: list[dict[str, Any]] = []
    if not path.is_file():
        return rows
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            if line.strip():
                rows.append(json.loads(line))
    return rows


def finished_trials(study: Path) -> dict[str, list[dict[str, Any]]]:
    """{trial id: result lines} of the trials whose last result says they ended."""
    done = {}
    for trial in sorted(study.glob("trial_*")):
        rows = result_lines(trial)
        if rows and rows[-1].get("status") not in (None, "running"):
            done[trial.name.removeprefix("trial_")] = rows
    return done


def trial_params(study: Path) -> dict[str, dict[str, Any]]:
    """{trial id: searched configuration} from each trial's params.json.

    Tune writes params.json in place when it starts a trial, so a driver killed at that moment
    leaves it empty (seen in CI): such a trial is left out, as one never started. A file with
    text that is not JSON still fails.
    """
    out = {}
    for p in study.glob("trial_*/params.json"):
        text = p.read_text()
        if text.strip():
            out[p.parent.name.removeprefix("trial_")] = json.loads(text)
    return out


def make_dataset(root: Path, instruments: int = 8) -> Path:
    """A small real dataset (the platform tests' instruments at the small codec) under `root`."""
    sys.path.insert(0, str(PLATFORM_TESTS))
    from dataset_helpers import SMALL, instrument_folder

    from samplegen.platform.datasets import prepare_dataset

    instrument_folder(root / "src", instruments)
    return prepare_dataset(root / "src", root / "ds", SMALL, echo=None)


def snapshot_statuses(study: Path) -> dict[str, str]:
    """{trial id: status} in the newest experiment state in `study` (a study folder, or a kept copy
    of its snapshot): what a resume starts from."""
    states = sorted(study.glob("experiment_state-*.json"))
    if not states:
        return {}
    try:
        data = json.loads(states[-1].read_text())
        trials = [json.loads(t[0]) for t in data["trial_data"]]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return {}  # being replaced right now
    return {t["trial_id"]: t["status"] for t in trials}


def assert_resumed_not_restarted(rows: list[dict], trial: str) -> None:
    """Every (re)start of a trial begins at epoch 1 only the first time, later right after the
    checkpoint it restored from; a final result reported again (epoch == restored_from) trains
    nothing. Lines may be missing where the killed driver had not yet copied its log."""
    trained = [r for r in rows if r["epoch"] != r["restored_from"]]
    for i, r in enumerate(trained):
        prev = trained[i - 1]["epoch"] if i else 0
        if r["epoch"] == prev + 1 and (
            i == 0 or r["restored_from"] == trained[i - 1]["restored_from"]
        ):
            continue  # the next epoch of the same run
        assert r["restored_from"] >= 1, (trial, [(x["epoch"], x["restored_from"]) for x in rows])
        assert r["epoch"] == r["restored_from"] + 1, (trial, [x["epoch"] for x in rows])


@contextlib.contextmanager
def cluster_with_a_gpu_worker(head_cpus: int, worker_cpus: int) -> Iterator[str]:
    """A private Ray cluster on this machine (ray.cluster_utils), connected: a head without GPU
    and one worker node that declares one GPU (torch finds no CUDA there). Yields the worker's
    node id; disconnects and shuts the cluster down after. For scripts in their own process."""
    import ray
    from ray.cluster_utils import Cluster

    mib = 1024 * 1024
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": head_cpus,
            "num_gpus": 0,
            "object_store_memory": 100 * mib,
            "include_dashboard": False,
        },
    )
    worker = cluster.add_node(num_cpus=worker_cpus, num_gpus=1, object_store_memory=150 * mib)
    cluster.wait_for_nodes()
    cluster.connect()
    try:
        yield str(worker.node_id)
    finally:
        ray.shutdown()
        cluster.shutdown()
