"""The main job's single-model stages as Ray tasks, placed on a node with the GPU they ask for.

Why: `ray job submit` runs the job's driver on the head node, which on a cluster like
cluster.yaml's has no GPU, so the stages outside the two studies (the outer model's final
training, fine-tuning, the refit, evaluation, sounds) would train and evaluate on the head's
CPUs. As tasks they go where a GPU is, and hold it only while they run: the studies' trials get
every GPU in between. What a task says comes back through a small actor and is said by the
driver, as the stage would in the driver itself (the run's Ray does not forward workers' output).

A stopped driver (Ctrl-C, SIGTERM, `ray job stop`) asks the task to stop: KeyboardInterrupt is
raised in it at the next line it says (or by Ray's cancel, if it says nothing for 10 s), and the
stage stops as it does on Ctrl-C in the driver (training after saving its last whole epoch); the
driver waits until the task's body has ended before it stops. A task lost with its node is
run again by Ray (up to 3 times), and takes up from what the stage had kept.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

from samplegen.errors import SamplegenError
from samplegen.platform.resources import ResourceError, check_request

T = TypeVar("T")

# How often the driver collects what a running task said, in seconds.
POLL_S = 0.5
# Ray runs a task again after a system failure (its worker or node lost) this many times.
RETRIES = 3
# After this many seconds without a node taking the task, the driver says it is waiting.
WAIT_NOTE_S = 30.0
# After a cancel, how long the driver waits for a task's body to report its end once Ray has
# marked the task done (a body that saves its last epoch reports it; a lost worker never does).
STOP_WAIT_S = 120.0
# How long a stopped driver waits for the task to take the stop at its next line before it
# cancels the task through Ray.
CANCEL_AFTER_S = 10.0


@dataclasses.dataclass(frozen=True)
class StagePlacement:
    """Where the single-model stages run: in the driver's process (`tasks` False), or as Ray
    tasks that each hold `cpus` CPUs and `gpus` GPUs (0: a task on any node's CPUs)."""

    tasks: bool = False
    cpus: float = 1.0
    gpus: float = 0.0

    def __post_init__(self) -> None:
        check_request(self.cpus, self.gpus, cpus_flag="--stage-cpus", gpus_flag="--stage-gpus")

    @classmethod
    def for_trials(
        cls,
        cpus_per_trial: float,
        gpus_per_trial: float,
        *,
        tasks: bool | None = None,
        gpus: float | None = None,
        cpus: float | None = None,
    ) -> StagePlacement:
        """The placement a run gets: where the studies' trials use GPUs, the single-model stages
        run as tasks holding one whole GPU and a trial's CPUs each; otherwise in the driver.
        `gpus` or `cpus` given alone means tasks; `tasks`=False keeps them in the driver."""
        on_gpus = gpus_per_trial > 0
        if tasks is False and (gpus is not None or cpus is not None):
            flag = "--stage-gpus" if gpus is not None else "--stage-cpus"
            raise ResourceError(
                f"{flag} and --no-stage-tasks: {flag} sizes the stages' tasks, and "
                "--no-stage-tasks runs the stages in this process; give one or the other"
            )
        if tasks is None:
            tasks = on_gpus or gpus is not None or cpus is not None
        if gpus is None:
            gpus = 1.0 if on_gpus else 0.0
        return cls(tasks=tasks, cpus=cpus_per_trial if cpus is None else cpus, gpus=gpus)

    def describe(self) -> str:
        """How the stages run, in words."""
        if not self.tasks:
            return "in this process"
        return f"as Ray tasks holding {self.cpus:g} CPU and {self.gpus:g} GPU each"


def check_placement(
    placement: StagePlacement,
    nodes: list[dict[str, float]] | None = None,
    *,
    autoscaling: bool = False,
) -> None:
    """Refuse stage tasks that no node of the cluster could ever hold (Ray would leave them
    pending for good, saying nothing). `nodes`: each live node's resources; by default Ray's.

    With `autoscaling`, nodes with GPUs may still be launched, so nothing is refused.
    """
    if not placement.tasks or autoscaling:
        return
    if nodes is None:
        import ray

        nodes = [
            {k: float(v) for k, v in n.get("Resources", {}).items()}
            for n in ray.nodes()
            if n.get("Alive")
        ]
    if any(
        n.get("CPU", 0.0) >= placement.cpus and n.get("GPU", 0.0) >= placement.gpus for n in nodes
    ):
        return
    held = ", ".join(f"{n.get('CPU', 0.0):g} CPU + {n.get('GPU', 0.0):g} GPU" for n in nodes)
    asked = (
        f"no node of the Ray cluster holds {placement.cpus:g} CPU and {placement.gpus:g} GPU for "
        f"the run's single-model stages (nodes: {held or 'none'})"
    )
    if any(n.get("GPU", 0.0) >= placement.gpus for n in nodes):
        # The GPUs are there, on nodes with fewer CPUs than asked: the CPUs are what to change.
        most = max(n.get("CPU", 0.0) for n in nodes if n.get("GPU", 0.0) >= placement.gpus)
        raise ResourceError(
            f"--stage-cpus {placement.cpus:g}: {asked}; use --stage-cpus {most:g} or fewer, or "
            "--no-stage-tasks to run them in this process"
        )
    raise ResourceError(
        f"--stage-gpus {placement.gpus:g}: {asked}; use --stage-gpus 0, or --no-stage-tasks to "
        "run them in this process, or pass --autoscaling if GPU workers are still to be launched"
    )


class _Said:
    """What a running task said and the driver has yet to say (a Ray actor's class)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.where: dict[str, Any] | None = None
        self.ended = False
        self.stopping = False

    def start(self, where: dict[str, Any]) -> None:
        """Keep where the task started (again, when Ray runs it again elsewhere)."""
        self.where = where

    def put(self, line: str) -> bool:
        """Keep one line; returns whether the driver has asked the task to stop."""
        self.lines.append(line)
        return self.stopping

    def stop(self) -> None:
        """Ask the task to stop (its next line raises KeyboardInterrupt in it)."""
        self.stopping = True

    def end(self) -> None:
        """Keep that the task's body has returned or raised (its last lines came before)."""
        self.ended = True

    def take(self) -> tuple[dict[str, Any] | None, list[str], bool]:
        """Where the task started, if it did since the last call, the lines kept since, and
        whether the task's body has ended."""
        where, lines = self.where, self.lines
        self.where, self.lines = None, []
        return where, lines, self.ended


def _in_task(fn: Callable[[Callable[[str], None]], T], said: Any, gpus: float) -> tuple[T, dict]:
    """The task's body: `fn` run with an echo that reaches the driver; returns its result and
    where it ran."""
    import ray

    raised = False

    def say(line: str) -> None:
        nonlocal raised
        # Waited for, so that every line has reached the actor before the task's result does.
        stop = ray.get(said.put.remote(line))
        if stop and not raised:
            # The driver was stopped: stop as Ctrl-C stops the stage, once (a stage saving its
            # last epoch may say so, and must not be interrupted again).
            raised = True
            raise KeyboardInterrupt

    try:
        where = {
            "node": ray.get_runtime_context().get_node_id(),
            "ip": ray.util.get_node_ip_address(),
            "pid": os.getpid(),
            "gpus": gpus,
            "gpu_ids": [str(i) for i in ray.get_gpu_ids()],
        }
        ray.get(said.start.remote(where))
        return fn(say), where
    finally:
        # After every line (one caller's actor calls run in order). A cancelled task's result is
        # ready as soon as the cancel is asked for, while the body may still be saving: the
        # driver waits for this instead.
        said.end.remote()


def _wait_for_the_end(
    ref: Any, say_what_was_said: Callable[[], None], state: Callable[[], tuple[bool, bool]]
) -> None:
    """Wait, after the task was asked to stop, until its body has stopped (it may be saving its
    last epoch), or until its result says it never ran, or STOP_WAIT_S after the result is ready
    (a body that never reports its end: its worker or node is gone). A body that says nothing
    for CANCEL_AFTER_S (so is not told to stop) is cancelled through Ray, which raises
    KeyboardInterrupt in it; Ray alone is not enough, since its cancel can miss a task that is
    sleeping or waiting (ray-project/ray#32954)."""
    import ray

    asked = time.monotonic()
    cancelled = False
    ready_at: float | None = None
    while True:
        ready = bool(ray.wait([ref], timeout=POLL_S)[0])
        say_what_was_said()
        started, ended = state()
        if ended or (ready and not started):
            return
        now = time.monotonic()
        if not cancelled and not ready and now - asked > CANCEL_AFTER_S:
            cancelled = True
            ray.cancel(ref)
        if ready:
            ready_at = ready_at if ready_at is not None else now
            if now - ready_at > STOP_WAIT_S:
                return


def run_in_task(
    fn: Callable[[Callable[[str], None]], T],
    placement: StagePlacement,
    *,
    echo: Callable[[str], None] = print,
    name: str = "stage",
    on_start: Callable[[dict[str, Any]], None] | None = None,
    wait_note_s: float = WAIT_NOTE_S,
) -> tuple[T, dict[str, Any]]:
    """Run `fn(echo)` as a Ray task holding the placement's CPUs and GPUs (Ray must be up).

    The lines `fn` echoes are echoed here as they come; `on_start(where)` is called when the task
    starts (and again if Ray runs it again). A task no node has taken after `wait_note_s` says so
    once (`[NAME] waiting for a node ...`). Returns `fn`'s result and where it ran (`node` id,
    `ip`, `pid`, `gpus`, `gpu_ids`). A SamplegenError raised in the task is raised here as itself;
    KeyboardInterrupt here stops the task, waits for it to stop (a second one kills it), and is
    raised again.
    """
    import ray
    from ray.exceptions import RayTaskError, TaskCancelledError

    said: Any = ray.remote(num_cpus=0)(_Said).remote()
    task: Any = ray.remote(_in_task).options(
        num_cpus=placement.cpus,
        num_gpus=placement.gpus,
        max_retries=RETRIES,
        name=f"samplegen-{name}",
    )
    submitted = time.monotonic()
    ref = task.remote(fn, said, placement.gpus)
    started = waited = ended = False

    def say_what_was_said() -> None:
        nonlocal started, waited, ended
        where, lines, ended = ray.get(said.take.remote())
        if where is not None:
            started = True
            if on_start is not None:
                on_start(where)
        for line in lines:
            echo(line)
        if not started and not waited and time.monotonic() - submitted > wait_note_s:
            waited = True
            echo(
                f"[{name}] waiting for a node to take its task ({placement.cpus:g} CPU, "
                f"{placement.gpus:g} GPU); an autoscaling cluster may be launching one"
            )

    try:
        try:
            while not ray.wait([ref], timeout=POLL_S)[0]:
                say_what_was_said()
        except KeyboardInterrupt:
            said.stop.remote()
            try:
                _wait_for_the_end(ref, say_what_was_said, lambda: (started, ended))
            except KeyboardInterrupt:
                ray.cancel(ref, force=True)
            raise
        finally:
            say_what_was_said()
        try:
            return ray.get(ref)
        except RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, SamplegenError):
                raise cause from None
            raise
        except TaskCancelledError:
            raise KeyboardInterrupt from None
    finally:
        ray.kill(said)
