"""A stage task on a private two-node Ray cluster on this machine (ray.cluster_utils.Cluster):
a head with CPUs and no GPU, as cluster.yaml's, and a worker node that declares one GPU. Run as a
script (its own process, own RAY_TMPDIR):

    python cluster_stage.py OUT.json

Writes OUT.json: the worker node's id, where the task ran, the CUDA_VISIBLE_DEVICES it saw, and
the refusal of a task asking for more GPUs than any node has. Used by test_multinode.py.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path


def _stage(say: Callable[[str], None]) -> dict[str, str | None]:
    say("training on the GPU node")
    return {"cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}


def main(out: str) -> None:
    from reliability_helpers import cluster_with_a_gpu_worker

    from samplegen.errors import SamplegenError
    from samplegen.platform.stage_tasks import StagePlacement, check_placement, run_in_task

    with cluster_with_a_gpu_worker(head_cpus=1, worker_cpus=1) as worker:
        placement = StagePlacement(tasks=True, cpus=1, gpus=1)
        check_placement(placement)
        said: list[str] = []
        result, where = run_in_task(_stage, placement, echo=said.append, name="gpu")
        try:
            check_placement(StagePlacement(tasks=True, cpus=1, gpus=2))
            refusal = None
        except SamplegenError as exc:
            refusal = str(exc)
        Path(out).write_text(
            json.dumps(
                {
                    "worker_node": worker,
                    "where": where,
                    "result": result,
                    "said": said,
                    "refusal": refusal,
                }
            )
        )


if __name__ == "__main__":
    main(sys.argv[1])
