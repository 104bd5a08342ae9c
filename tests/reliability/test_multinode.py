"""Clusters of several nodes on this machine (ray.cluster_utils): a worker node lost mid-study
(a head and two worker nodes, study storage on a path every node shares; one worker node is
removed while its trial runs), a stage task placed on the node with a GPU, and the main job on a
cluster shaped like cluster.yaml's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from reliability_helpers import (
    assert_resumed_not_restarted,
    private_env,
    ray_temp_root,
    result_lines,
)

CLUSTER_STUDY = Path(__file__).with_name("cluster_study.py")
CLUSTER_STAGE = Path(__file__).with_name("cluster_stage.py")
CLUSTER_PIPELINE = Path(__file__).with_name("cluster_pipeline.py")


def _run_script(script: Path, *args: str, timeout: int) -> subprocess.CompletedProcess[str]:
    """One of the cluster scripts here, in its own process with a private Ray temp root."""
    with ray_temp_root() as ray_tmp:
        return subprocess.run(
            [sys.executable, str(script), *args],
            env=private_env(ray_tmp),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def test_a_lost_worker_node_s_trials_resume_from_checkpoints_on_the_other_node(
    tmp_path: Path,
) -> None:
    trials, epochs = 4, 8
    args = [str(tmp_path / "out"), "--trials", str(trials), "--epochs", str(epochs)]
    done = _run_script(CLUSTER_STUDY, *args, "--remove-at", "2", timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    study = tmp_path / "out" / "studies" / "cluster"

    # Every trial is accounted for and finished.
    assert not summary["interrupted"]
    rows = {r["trial_id"]: r for r in summary["rows"]}
    assert len(rows) == trials and {r["status"] for r in rows.values()} == {"completed"}
    assert all(r["epochs"] == epochs for r in rows.values())
    assert {p.name.removeprefix("trial_") for p in study.glob("trial_*")} == set(rows)

    removed_pids = set(summary["removed_pids"])
    assert removed_pids, "no trial was running on the removed node"
    errored = []
    for trial_id, row in rows.items():
        lines = result_lines(Path(row["path"]))
        assert_resumed_not_restarted(lines, trial_id)
        errors = [p.read_text() for p in Path(row["path"]).glob("error*.txt")]
        if not errors:
            assert row["restored_from"] == 0, row
            continue
        # Its actor died with the node; it went on from its last checkpoint on the other node.
        errored.append(trial_id)
        assert "unavailable" in errors[0] or "died" in errors[0], errors
        restarts = [r for r in lines if r["restored_from"] > 0]
        if not restarts:
            # Lost right after its last epoch: the restart only reported the final result again
            # (nothing left to train), so it must have reached every epoch on the removed node.
            on_removed = [r["epoch"] for r in lines if r["pid"] in removed_pids]
            assert on_removed and max(on_removed) == epochs, (trial_id, lines)
            continue
        restart = restarts[0]
        assert lines[0]["pid"] in removed_pids and restart["pid"] not in removed_pids
        if restart["restored_from"] == epochs:
            # Lost after its last epoch's checkpoint: restored from it with nothing left to
            # train, the restart reported the final epoch again (seen once in CI).
            assert restart["epoch"] == epochs, (trial_id, lines)
            continue
        assert restart["epoch"] == restart["restored_from"] + 1 >= 2
        assert row["restored_from"] >= 1
    # Exactly the trials that were training on the removed node failed, and only once.
    running = {n.removeprefix("trial_") for n in summary["running_on_removed_node"]}
    assert errored and set(errored) == running


def test_a_stage_task_that_asks_for_a_gpu_runs_on_the_node_that_has_one(tmp_path: Path) -> None:
    out = tmp_path / "where.json"
    done = _run_script(CLUSTER_STAGE, str(out), timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    seen = json.loads(out.read_text())
    # Not on the head (no GPU there): on the worker, holding its GPU, which Ray names to CUDA.
    assert seen["where"]["node"] == seen["worker_node"]
    assert seen["where"]["gpu_ids"] == ["0"] and seen["result"]["cuda_visible_devices"] == "0"
    assert seen["said"] == ["training on the GPU node"]
    assert seen["refusal"].startswith("--stage-gpus 2: no node of the Ray cluster holds")


def test_the_main_job_on_a_cluster_shaped_like_cluster_yaml_trains_nothing_on_the_head(
    tmp_path: Path,
) -> None:
    """The driver on a head with no CPU or GPU for work, as `ray job submit` places it on
    cluster.yaml's cluster; the trials ask for GPUs, so each single-model stage is a task on the
    worker that has one."""
    from dataset_helpers import instrument_folder
    from tune_helpers import TINY_OUTER_SPACE, TINY_VAE_SPACE

    instrument_folder(tmp_path / "src", 16)
    (tmp_path / "outer.yaml").write_text(TINY_OUTER_SPACE)
    (tmp_path / "vae.yaml").write_text(TINY_VAE_SPACE)
    done = _run_script(CLUSTER_PIPELINE, str(tmp_path), timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    log, worker = summary["log"], summary["worker_node"]
    assert "the single-model stages run as Ray tasks holding 1 CPU and 1 GPU each" in log
    run = tmp_path / "run"
    for stage in ("outer_model", "finetune", "refit", "evaluation", "sounds"):
        where = json.loads((run / ".stages" / f"{stage}.json").read_text())["outputs"]["ran_on"]
        assert where["node"] == worker and where["gpu_ids"] == ["0"], (stage, where)
        assert any(line.startswith(f"[{stage}] in a Ray task on node") for line in log)
    assert any(line.startswith("[vae_study rescoring] in a Ray task on node") for line in log)
    assert (run / "index.html").is_file()
