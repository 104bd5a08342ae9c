"""The main job on a private cluster shaped like cluster.yaml's, on this machine
(ray.cluster_utils.Cluster): a head with no CPU for work and no GPU, where the driver runs, and a
worker node with CPUs and one GPU (declared: torch finds no CUDA there and trains on CPU). Run as
a script (its own process, own RAY_TMPDIR):

    python cluster_pipeline.py ROOT

ROOT holds src/ (the samples), outer.yaml and vae.yaml (tiny spaces). The run goes to ROOT/run
with its trials asking for half a GPU, so by default its single-model stages run as tasks
holding one GPU each, and so does the rescoring of the VAE study's two trials. Writes ROOT/summary.json: the worker node's id and the run's log.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(root: str) -> None:
    import ray
    from ray.cluster_utils import Cluster

    from samplegen.platform.pipeline import run_pipeline
    from samplegen.platform.presets import Preset, StageBudget

    mib = 1024 * 1024
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "object_store_memory": 100 * mib,
            "include_dashboard": False,
        },
    )
    worker = cluster.add_node(num_cpus=2, num_gpus=1, object_store_memory=150 * mib)
    cluster.wait_for_nodes()
    cluster.connect()
    preset = Preset(
        name="tiny",
        outer=StageBudget("frame_ae", "random", "fifo", 2, 2, space=f"{root}/outer.yaml"),
        outer_final_epochs=2,
        inner=StageBudget("vae", "random", "fifo", 2, 3, space=f"{root}/vae.yaml"),
        finetune_epochs=1,
        refit=True,
        rescore_trials=2,
        refine_steps=2,
        gpus_per_trial=0.5,
        griffin_lim_iters=2,
        examples=4,
    )
    log: list[str] = []
    try:
        run_pipeline(preset, f"{root}/run", source=f"{root}/src", echo=log.append)
    finally:
        Path(root, "summary.json").write_text(
            json.dumps({"worker_node": worker.node_id, "log": log})
        )
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
