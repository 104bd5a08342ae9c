"""The main job's single-model stages as Ray tasks: placement, what they say, errors, Ctrl-C."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from samplegen.errors import SamplegenError
from samplegen.platform.resources import ResourceError
from samplegen.platform.stage_tasks import StagePlacement, check_placement, run_in_task

ON_CPUS = StagePlacement(tasks=True, cpus=1, gpus=0)


def test_a_stage_task_runs_elsewhere_and_what_it_says_is_said_here_in_order(
    ray_session: None,
) -> None:
    def stage(say: Callable[[str], None]) -> dict[str, int]:
        for i in range(5):
            say(f"line {i}")
        return {"pid": os.getpid()}

    said: list[str] = []
    result, where = run_in_task(stage, ON_CPUS, echo=said.append, name="test")
    assert said == [f"line {i}" for i in range(5)]
    assert result["pid"] == where["pid"] != os.getpid()
    assert where["gpus"] == 0 and where["gpu_ids"] == [] and where["node"]


def test_a_task_no_node_takes_yet_says_it_is_waiting_then_where_it_started(
    ray_session: None, tmp_path: Path
) -> None:
    import ray

    release = tmp_path / "release"

    @ray.remote(num_cpus=ray.cluster_resources()["CPU"])
    def hold_every_cpu() -> None:
        while not release.exists():
            time.sleep(0.05)

    holder = hold_every_cpu.remote()
    timer = threading.Timer(3.0, release.touch)
    timer.start()
    said: list[str] = []
    starts: list[dict] = []
    try:

        def stage(say: Callable[[str], None]) -> None:
            say("working")

        run_in_task(
            stage, ON_CPUS, echo=said.append, name="late", on_start=starts.append, wait_note_s=1
        )
    finally:
        timer.cancel()
        release.touch()
        ray.get(holder)
    assert said == [
        "[late] waiting for a node to take its task (1 CPU, 0 GPU); an autoscaling cluster may "
        "be launching one",
        "working",
    ]
    assert len(starts) == 1 and starts[0]["pid"] != os.getpid()


def test_a_stage_tasks_error_is_raised_here_as_itself(ray_session: None) -> None:
    def stage(say: Callable[[str], None]) -> None:
        say("reading x.wav")
        raise SamplegenError("x.wav: not audio")

    said: list[str] = []
    with pytest.raises(SamplegenError) as caught:
        run_in_task(stage, ON_CPUS, echo=said.append)
    # The stage's own error and message, not Ray's wrapper with a remote traceback.
    assert type(caught.value) is SamplegenError and str(caught.value) == "x.wav: not audio"
    assert said == ["reading x.wav"]


def test_ctrl_c_in_the_driver_stops_the_task_as_ctrl_c_would_stop_the_stage(
    ray_session: None, tmp_path: Path
) -> None:
    saved = tmp_path / "saved"

    def stage(say: Callable[[str], None]) -> None:
        epoch = 0
        try:
            while epoch < 150:  # 30 s: a task that was never cancelled ends unsaved
                epoch += 1
                say(f"epoch {epoch}")
                time.sleep(0.2)
        except KeyboardInterrupt:
            # As training does: keep the last whole epoch, say so, and stop. Saving takes a while:
            # Ray marks a cancelled task done at once, and the driver used to go on (and its Ray
            # could shut down) while the task was still saving.
            time.sleep(1.5)
            saved.write_text(str(epoch))
            say(f"saved epoch {epoch}")
            raise

    said: list[str] = []

    def echo(line: str) -> None:
        said.append(line)
        if line == "epoch 2":
            raise KeyboardInterrupt  # Ctrl-C in the driver while it waits

    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_in_task(stage, ON_CPUS, echo=echo)
    assert time.monotonic() - start < 60
    # The task stopped, saved, and what it said while stopping still reached the driver.
    assert saved.is_file()
    assert said[-1] == f"saved epoch {saved.read_text()}"


def test_the_default_placement_follows_the_trials() -> None:
    assert StagePlacement.for_trials(1, 0) == StagePlacement(tasks=False, cpus=1, gpus=0)
    assert StagePlacement.for_trials(2, 0.25) == StagePlacement(tasks=True, cpus=2, gpus=1)
    assert StagePlacement.for_trials(1, 0, gpus=0.5) == StagePlacement(True, 1, 0.5)
    assert StagePlacement.for_trials(1, 0, tasks=True) == StagePlacement(True, 1, 0)
    assert StagePlacement.for_trials(1, 0, cpus=2) == StagePlacement(True, 2, 0)
    assert not StagePlacement.for_trials(1, 0.25, tasks=False).tasks
    # Sizes for tasks that are not to be: refused, not ignored.
    with pytest.raises(ResourceError, match="--stage-gpus and --no-stage-tasks: "):
        StagePlacement.for_trials(1, 0, tasks=False, gpus=1)
    with pytest.raises(ResourceError, match="--stage-cpus and --no-stage-tasks: "):
        StagePlacement.for_trials(1, 0, tasks=False, cpus=2)
    assert StagePlacement.for_trials(1, 0.25).describe() == (
        "as Ray tasks holding 1 CPU and 1 GPU each"
    )
    with pytest.raises(ResourceError, match="--stage-gpus: must be >= 0, got -1"):
        StagePlacement.for_trials(1, 0, gpus=-1)
    with pytest.raises(ResourceError, match="whole number of GPUs, got 1.5"):
        StagePlacement.for_trials(1, 0, gpus=1.5)
    with pytest.raises(ResourceError, match="--stage-cpus: must be positive, got 0"):
        StagePlacement.for_trials(1, 0, cpus=0)


def test_stage_tasks_that_no_node_can_hold_are_refused(ray_session: None) -> None:
    import ray

    gpu_node = {"CPU": 8.0, "GPU": 1.0}
    cpu_head = {"CPU": 2.0}
    one_gpu = StagePlacement(tasks=True, cpus=1, gpus=1)
    check_placement(one_gpu, [cpu_head, gpu_node])
    check_placement(StagePlacement(True, 1, 0.5), [gpu_node])
    with pytest.raises(ResourceError) as caught:
        check_placement(StagePlacement(True, 1, 2), [cpu_head, gpu_node])
    assert str(caught.value) == (
        "--stage-gpus 2: no node of the Ray cluster holds 1 CPU and 2 GPU for the run's "
        "single-model stages (nodes: 2 CPU + 0 GPU, 8 CPU + 1 GPU); use --stage-gpus 0, or "
        "--no-stage-tasks to run them in this process, or pass --autoscaling if GPU workers are "
        "still to be launched"
    )
    # CPUs and GPUs on one node: a GPU node with too few CPUs does not count.
    with pytest.raises(ResourceError) as caught:
        check_placement(StagePlacement(True, 9, 1), [{"CPU": 16.0}, gpu_node])
    # The GPU is there: the CPUs asked are named, not --stage-gpus.
    assert str(caught.value) == (
        "--stage-cpus 9: no node of the Ray cluster holds 9 CPU and 1 GPU for the run's "
        "single-model stages (nodes: 16 CPU + 0 GPU, 8 CPU + 1 GPU); use --stage-cpus 8 or "
        "fewer, or --no-stage-tasks to run them in this process"
    )
    # The autoscaler may still launch a GPU node; in the driver, nothing is asked of the cluster.
    check_placement(one_gpu, [cpu_head], autoscaling=True)
    check_placement(StagePlacement(tasks=False, gpus=1), [cpu_head])
    # By default the live cluster's nodes are checked.
    if not ray.cluster_resources().get("GPU"):
        with pytest.raises(ResourceError, match="--stage-gpus 1: no node"):
            check_placement(one_gpu)
    check_placement(ON_CPUS)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_stage_task_holding_a_gpu_trains_on_it(ray_session: None) -> None:
    def stage(say: Callable[[str], None]) -> dict[str, object]:
        from samplegen.platform.resources import trial_device

        device = trial_device(1.0)
        x = torch.ones(4, device=device)
        return {"device": device, "sum": float((x * 2).sum())}

    result, where = run_in_task(stage, StagePlacement(tasks=True, cpus=1, gpus=1))
    assert result == {"device": "cuda", "sum": 8.0} and len(where["gpu_ids"]) == 1
