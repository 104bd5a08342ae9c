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
    from reliability_helpers import cluster_with_a_gpu_worker

    from samplegen.platform.pipeline import run_pipeline
    from samplegen.platform.presets import Preset, StageBudget

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
    with cluster_with_a_gpu_worker(head_cpus=0, worker_cpus=2) as worker:
        try:
            run_pipeline(preset, f"{root}/run", source=f"{root}/src", echo=log.append)
        finally:
            Path(root, "summary.json").write_text(json.dumps({"worker_node": worker, "log": log}))


if __name__ == "__main__":
    main(sys.argv[1])
