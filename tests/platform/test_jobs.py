"""jobs/tune_outer.py submitted with the Ray Jobs API to a private local head (not the session's)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dataset_helpers import SMALL, instrument_folder
from tune_helpers import write_space

from samplegen.platform.datasets import prepare_dataset

REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))
JOB_STOP_WAIT_S = "60"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _head_command(temp_dir: str) -> tuple[list[str], int]:
    """`ray start --head` on ports free a moment ago; returns it and the dashboard's port."""
    dash = _free_port()
    cmd = [RAY, "start", "--head", f"--port={_free_port()}", "--num-cpus=2"]
    cmd += ["--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", f"--temp-dir={temp_dir}"]
    cmd += [
        f"--ray-client-server-port={_free_port()}",
        f"--dashboard-agent-listen-port={_free_port()}",
    ]
    cmd += [f"--runtime-env-agent-port={_free_port()}", f"--metrics-export-port={_free_port()}"]
    cmd += ["--object-store-memory=200000000", "--disable-usage-stats"]
    return cmd, dash


def _stop_head(temp_dir: str) -> None:
    # `ray stop` would stop every Ray on the machine; stop only this head's processes.
    session = Path(temp_dir) / "session_latest"
    pids: list[int] = []
    for line in subprocess.run(
        ["ps", "-eww", "-o", "pid,args"], capture_output=True, text=True
    ).stdout.splitlines()[1:]:
        pid_text, _, args = line.strip().partition(" ")
        if temp_dir in args or str(session) in args:
            pids.append(int(pid_text))
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 15)
    time.sleep(2)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)


@pytest.fixture()
def private_head() -> Iterator[str]:
    """`ray start --head` on free ports with its own temp dir and auth off; yields the jobs URL."""
    temp_dir = tempfile.mkdtemp(prefix="sgjob-", dir="/tmp")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    # As cluster.yaml starts its nodes: `ray job stop` leaves a study time to save (Ray's default
    # is 3 s between its SIGTERM and its SIGKILL).
    env["RAY_JOB_STOP_WAIT_TIME_S"] = JOB_STOP_WAIT_S
    env.pop("RAY_ADDRESS", None)
    try:
        # A port found free can be taken by another process before Ray binds it: a head that
        # fails to start is stopped and started again on other ports.
        for _attempt in range(3):
            cmd, dash = _head_command(temp_dir)
            started = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
            if started.returncode == 0:
                break
            _stop_head(temp_dir)
        assert started.returncode == 0, started.stderr[-2000:]
        yield f"http://127.0.0.1:{dash}"
    finally:
        _stop_head(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _submit(client: Any, args: list[str]) -> str:
    return str(
        client.submit_job(
            entrypoint=f"{sys.executable} jobs/tune_outer.py {' '.join(args)}",
            runtime_env={
                # As `ray job submit --working-dir .` uploads it: what stays out is what
                # .gitignore names (the 2 GB .venv, the README's output folders).
                "working_dir": str(REPO),
                "env_vars": {"RAY_AIR_NEW_OUTPUT": "0", "RAY_USAGE_STATS_ENABLED": "0"},
            },
        )
    )


def _wait(client: Any, job: str, until: Callable[[], bool]) -> None:
    # A safety net, not a timing: the whole test took 51 s on 2 cores beside a training run.
    deadline = time.time() + 600
    while not until():
        assert time.time() < deadline, client.get_job_logs(job)[-3000:]
        time.sleep(0.5)


def test_tune_outer_jobs_succeed_or_stop_with_their_study_saved_on_a_private_head(
    private_head: str, tmp_path: Path, ray_session: None
) -> None:
    from ray.job_submission import JobStatus, JobSubmissionClient

    ended = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED)
    instrument_folder(tmp_path / "src", 8)
    dataset = prepare_dataset(tmp_path / "src", tmp_path / "ds", SMALL, echo=None)
    space = write_space(tmp_path / "space.yaml")
    storage = tmp_path / "studies"
    args = ["--data", str(dataset), "--storage", str(storage), "--space", str(space)]
    args += ["--stall-window", "0", "--overfit-limit", "0"]
    client = JobSubmissionClient(private_head)
    job = _submit(client, [*args, "--name", "job", "--trials", "2", "--epochs", "2"])
    _wait(client, job, lambda: client.get_job_status(job) in ended)
    logs = client.get_job_logs(job)
    assert client.get_job_status(job) == JobStatus.SUCCEEDED, logs[-3000:]
    assert "[job] done: 2 trials" in logs
    best = json.loads((storage / "job" / "best_config.json").read_text())
    assert best["model"] == "conv2d_ae"
    assert (storage / "job" / "best_model" / "config.json").exists()

    # `ray job stop` sends SIGTERM, and SIGKILL when JOB_STOP_WAIT_S have passed: the study stops
    # as on Ctrl-C.
    job = _submit(client, [*args, "--name", "stopped", "--trials", "8", "--epochs", "3"])
    _wait(client, job, lambda: "finished: completed" in client.get_job_logs(job))
    client.stop_job(job)
    _wait(client, job, lambda: client.get_job_status(job) in ended)
    logs = client.get_job_logs(job)
    assert client.get_job_status(job) == JobStatus.STOPPED, logs[-3000:]
    assert "study interrupted; continue it with --resume (same --name stopped)" in logs, logs
    assert "SIGTERM received" not in logs
    assert not (storage / "stopped" / "best_model").exists()


def test_every_folder_the_readme_writes_in_the_checkout_stays_out_of_a_job_upload() -> None:
    """`ray job submit --working-dir .` uploads the checkout less what .gitignore names, and Ray
    refuses an upload over 100 MB: a study folder left by the README's commands (135 MB after one
    study) made the documented submit fail."""
    import re

    readme = (REPO / "README.md").read_text()
    ignored = {
        line.strip().strip("/")
        for line in (REPO / ".gitignore").read_text().splitlines()
        if line.startswith("/")
    }
    # Relative outputs (placeholders such as DIR are upper case).
    written = set(re.findall(r"--(?:out|storage|encoded) (?!s3:|gs:|file:)([a-z][\w.-]*)", readme))
    assert written >= {"runs", "data", "studies", "models", "lib", "export"}
    assert written <= ignored, written - ignored
