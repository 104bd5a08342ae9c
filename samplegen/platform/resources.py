"""Resource checks before a study starts, and the device a trial trains on.

Ray leaves a trial that asks for a GPU PENDING forever (with only a warning) on a cluster without
one, so a study checks `ray.cluster_resources()` up front and fails at once with a clear message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from samplegen.errors import SamplegenError

# Where `ray up` leaves the cluster's config on the head, for the autoscaler.
BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"


class ResourceError(SamplegenError):
    """The cluster cannot run a trial with the resources the study asks for."""


def check_request(cpus: float, gpus: float, *, cpus_flag: str, gpus_flag: str) -> None:
    """Refuse a request Ray could never grant, naming the flag that asked: CPUs must be positive,
    GPUs at least 0, and above one GPU only whole GPUs (Ray gives fractions of one GPU only)."""
    if cpus <= 0:
        raise ResourceError(f"{cpus_flag}: must be positive, got {cpus:g}")
    if gpus < 0:
        raise ResourceError(f"{gpus_flag}: must be >= 0, got {gpus:g}")
    if gpus > 1 and gpus != int(gpus):
        raise ResourceError(f"{gpus_flag}: above 1 it must be a whole number of GPUs, got {gpus:g}")


@dataclass(frozen=True)
class TrialResources:
    """What one trial asks Ray for."""

    cpus: float = 1.0
    gpus: float = 0.0

    def __post_init__(self) -> None:
        check_request(
            self.cpus, self.gpus, cpus_flag="--cpus-per-trial", gpus_flag="--gpus-per-trial"
        )

    def as_dict(self) -> dict[str, float]:
        """The dict `tune.with_resources` takes."""
        return {"cpu": self.cpus, "gpu": self.gpus}

    def per_node_limit(self, cluster: dict[str, float]) -> int:
        """How many trials fit at once in `cluster` totals (an upper bound across nodes)."""
        n = int(cluster.get("CPU", 0) // self.cpus) if self.cpus else 10**6
        if self.gpus:
            n = min(n, int(cluster.get("GPU", 0) // self.gpus))
        return n


def largest_cluster(path: str | Path = BOOTSTRAP_CONFIG) -> dict[str, float] | None:
    """The resources of the largest cluster the autoscaler may launch: the head's plus each worker
    type's times its max_workers (capped by the cluster's), from the config `ray up` leaves on
    the head. None when there is no such file or a worker type does not state its CPUs."""
    import yaml

    file = Path(path).expanduser()
    try:
        doc = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("available_node_types"), dict):
        return None
    cap = _number(doc.get("max_workers"), default=float("inf"))
    totals: dict[str, float] = {}
    for name, node in doc["available_node_types"].items():
        node = node if isinstance(node, dict) else {}
        given = node.get("resources")
        given = given if isinstance(given, dict) else {}
        count = (
            1.0 if name == doc.get("head_node_type") else min(cap, _number(node.get("max_workers")))
        )
        if count and "CPU" not in given:
            return None  # Ray would detect them when the node starts; unknown here
        for key, value in given.items():
            totals[key] = totals.get(key, 0.0) + count * _number(value)
    return totals


def _number(value: Any, default: float = 0.0) -> float:
    return (
        float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default
    )


def trials_at_once(
    resources: TrialResources, cluster: dict[str, float], largest: dict[str, float] | None = None
) -> int:
    """How many trials a study runs at once by default: as many as fit the cluster, or, when the
    autoscaler may grow it, the largest cluster it may grow to (`largest`); at least one."""
    if largest is not None:
        cluster = {k: max(cluster.get(k, 0.0), largest.get(k, 0.0)) for k in {*cluster, *largest}}
    return max(1, resources.per_node_limit(cluster))


def check_cluster(
    resources: TrialResources,
    cluster: dict[str, float] | None = None,
    *,
    autoscaling: bool = False,
) -> dict[str, float]:
    """Fail fast when no trial could ever be placed; returns the cluster totals it checked.

    `cluster` defaults to `ray.cluster_resources()` (Ray must be initialised). With `autoscaling`,
    missing GPUs are allowed (workers may still be launched), but a trial must fit one node type.
    """
    if cluster is None:
        import ray

        cluster = {k: float(v) for k, v in ray.cluster_resources().items()}
    cpus, gpus = cluster.get("CPU", 0.0), cluster.get("GPU", 0.0)
    if resources.gpus > 0 and gpus == 0 and not autoscaling:
        raise ResourceError(
            f"--gpus-per-trial {resources.gpus:g}: the Ray cluster has no GPU "
            f"(resources: {cpus:g} CPU, 0 GPU); use --gpus-per-trial 0, or connect to a cluster "
            "with GPUs (--address), or pass --autoscaling if GPU workers are still to be launched"
        )
    if resources.gpus > gpus and gpus > 0 and not autoscaling:
        raise ResourceError(
            f"--gpus-per-trial {resources.gpus:g}: more than the cluster's {gpus:g} GPU(s)"
        )
    if resources.cpus > cpus and not autoscaling:
        raise ResourceError(
            f"--cpus-per-trial {resources.cpus:g}: more than the cluster's {cpus:g} CPU(s)"
        )
    return cluster


def trial_device(gpus: float, requested: str = "auto") -> str:
    """The torch device for a trial: `cuda` when the trial holds a GPU share and CUDA works.

    Inside a Ray trial CUDA_VISIBLE_DEVICES already names the trial's GPU, so `cuda` means it.
    `requested` may force `cpu` or `cuda` (the latter fails clearly without CUDA).
    """
    import torch

    if requested == "cpu":
        return "cpu"
    if requested not in ("auto", "cuda"):
        raise ResourceError(f"device: {requested!r} is not one of auto, cpu, cuda")
    has_cuda = torch.cuda.is_available()
    if requested == "cuda":
        if not has_cuda:
            raise ResourceError("device cuda: CUDA is not available on this node")
        return "cuda"
    return "cuda" if gpus > 0 and has_cuda else "cpu"
