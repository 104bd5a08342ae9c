"""Faults a study survives, on real Ray: trials crashing at random, the driver SIGKILLed mid-study
(then `--resume`), and the chained pipeline (`run_pipeline`, what `samplegen run` calls) SIGKILLed
in its VAE study and restarted."""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from reliability_helpers import (
    NO_EARLY_STOP,
    SAMPLEGEN,
    TINY_SPACE,
    assert_resumed_not_restarted,
    finished_trials,
    kill_when,
    make_dataset,
    private_env,
    ray_temp_root,
    result_lines,
    run_cli,
    snapshot_statuses,
    trial_params,
)
from tune_helpers import TINY_OUTER_SPACE, TINY_VAE_SPACE, tiny_config, tiny_data, write_space

from samplegen.platform.epoch_log import read_epoch_logs
from samplegen.platform.snapshot_backup import backup_sets
from samplegen.platform.snapshot_repair import restore_cut_snapshots
from samplegen.platform.spaces import resolve_space
from samplegen.platform.study import run_study


def test_random_crashes_are_retried_from_their_last_checkpoint(
    tmp_path: Path, ray_session: None
) -> None:
    space = write_space(tmp_path / "space.yaml")
    # 9% per epoch over 3 epochs: about a quarter of the trials raise once.
    config = tiny_config(
        tmp_path / "studies",
        space,
        "crashes",
        search="random",
        trials=16,
        epochs=3,
        fail_probability=0.09,
        fail_seed=3,
        max_failures=2,
    )
    result = run_study(config, tiny_data())
    assert not result.interrupted
    assert len(result.rows) == 16
    assert {r["status"] for r in result.rows} == {"completed"}, result.rows
    crashed = []
    for row in result.rows:
        trial = Path(row["path"])
        errors = [p.read_text() for p in trial.glob("error*.txt")]
        rows = result_lines(trial)
        assert_resumed_not_restarted(rows, row["trial_id"])
        assert [r["epoch"] for r in rows][-1] == 3
        if errors:
            crashed.append(row["trial_id"])
            found = {
                int(m) for e in errors for m in re.findall(r"injected fault at epoch (\d+)", e)
            }
            assert len(found) == 1, errors  # raised once, not again after the retry
            (crash_epoch,) = found
            assert [r["epoch"] for r in rows] == [1, 2, 3], rows
            if crash_epoch < 3:
                # Retried from the crashed epoch's checkpoint, not from epoch 0.
                assert row["restored_from"] == crash_epoch, row
                assert rows[crash_epoch]["restored_from"] == crash_epoch, rows
        else:
            assert row["restored_from"] == 0
    # Injection is drawn per configuration and random search's configurations are seeded, so
    # the same trials crash on every run (drawn per trial id, which Tune makes random, none at
    # all crashed in about 1% of runs).
    assert 1 <= len(crashed) <= 12, crashed


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, ray_session: None) -> Path:
    return make_dataset(tmp_path_factory.mktemp("faults-data"))


@pytest.mark.parametrize("search", ["gp", "tpe"])
def test_driver_killed_mid_study_resumes_without_rerunning_finished_trials(
    search: str, dataset: Path, tmp_path: Path
) -> None:
    (tmp_path / "space.yaml").write_text(TINY_SPACE)
    # Enough trials that some are still unproposed when the kill comes: on a loaded machine the
    # saved state can record its second finished trial after 6 had all been proposed (seen in CI),
    # and a poller lagging by a few finished trials could find all 8 proposed.
    trials, epochs = 12, 3
    args = ["tune", "outer", "--data", str(dataset), "--name", "s", "--storage", "studies"]
    args += ["--space", "space.yaml", "--search", search, "--trials", str(trials)]
    args += ["--epochs", str(epochs), *NO_EARLY_STOP, "--num-cpus", "2", "--max-concurrent", "2"]
    study = tmp_path / "studies" / "s"

    def recorded_done(state: Path = study) -> list[str]:
        """Trials a saved study state records as finished, with their results on disk."""
        done = finished_trials(study)
        return [t for t, s in snapshot_statuses(state).items() if s == "TERMINATED" and t in done]

    def two_recorded() -> bool:
        # In the saved state and in its last whole copy: a kill mid-save makes the resume start
        # from the copy, and either way from two finished trials.
        kept = backup_sets(study)
        return len(recorded_done()) >= 2 and bool(kept) and len(recorded_done(kept[-1])) >= 2

    with ray_temp_root() as ray_tmp:
        # Killed once the study's saved state records two finished trials.
        kill_when(
            [SAMPLEGEN, *args],
            private_env(ray_tmp),
            tmp_path,
            two_recorded,
            tmp_path / "first.log",
        )
        # What the resume does first, should the kill have cut a saved file short.
        restore_cut_snapshots(study)
        recorded = recorded_done()
        on_disk = finished_trials(study)
        before = {t: on_disk[t] for t in recorded}
        # What a resume starts from: trials proposed after the last saved state are forgotten by
        # the searcher too, so their points may fairly be proposed again (seen in CI with tpe).
        remembered = set(snapshot_statuses(study))
        assert len(before) >= 2 and not (study / "results.parquet").exists()

    with ray_temp_root() as ray_tmp:
        resumed = run_cli([*args, "--resume"], private_env(ray_tmp), tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"[s] done: {trials} trials ({trials} completed)" in resumed.stdout

    rows = {r["trial_id"]: r for r in pq.read_table(study / "results.parquet").to_pylist()}
    assert len(rows) == trials
    assert set(before) <= set(rows)
    for trial_id, lines in on_disk.items():
        after = result_lines(study / f"trial_{trial_id}")
        # Not trained again: the lines from before the kill are untouched; at most the final
        # result is reported once more from its checkpoint (when the driver died before its
        # snapshot recorded the trial as finished).
        assert after[: len(lines)] == lines, trial_id
        for extra in after[len(lines) :]:
            assert extra["epoch"] == epochs and extra["restored_from"] == epochs, extra
        if trial_id in rows:  # a trial started after the last snapshot is forgotten (lost work)
            assert rows[trial_id]["epochs"] == epochs
            assert math.isclose(rows[trial_id]["best_val_loss"], lines[-1]["best_val_loss"])
    for trial_id in rows:
        assert_resumed_not_restarted(result_lines(study / f"trial_{trial_id}"), trial_id)

    # The searcher kept its state: the trials it proposed after the resume are new points, not
    # the ones a fresh searcher with the same seed would propose again.
    names = [p.name for p in resolve_space("conv2d_ae", str(tmp_path / "space.yaml")).searched]
    params = trial_params(study)

    def point(trial_id: str) -> tuple:
        return tuple(params[trial_id][n] for n in names)

    old_points = {point(t) for t in remembered if t in params}
    new_trials = [t for t in rows if t not in remembered]
    assert new_trials, "every trial was proposed before the kill; nothing shows the searcher"
    assert not {point(t) for t in new_trials} & old_points
    if search == "gp":
        # Our GP searcher's state is JSON (Tune names the file .pkl): every point it was ever
        # told, across both runs, including all trials finished before the kill.
        state_file = sorted(study.glob("searcher-state-*.pkl"))[-1]
        state = json.loads(state_file.read_text())
        told = {tuple(x) for x in state["xs"]}
        assert {point(t) for t in before} <= told
        assert len(state["xs"]) == trials and state["pending"] == {}


def test_sigterm_stops_a_study_as_ctrl_c_does_and_it_resumes(dataset: Path, tmp_path: Path) -> None:
    """SIGTERM is what `ray job stop`, Kubernetes and batch schedulers send. Ray's own handler
    used to end the driver at once with a stack dump, before Tune saved the study."""
    (tmp_path / "space.yaml").write_text(TINY_SPACE)
    trials = 6
    args = ["tune", "outer", "--data", str(dataset), "--name", "s", "--storage", "studies"]
    args += ["--space", "space.yaml", "--search", "random", "--trials", str(trials)]
    args += ["--epochs", "3", *NO_EARLY_STOP, "--num-cpus", "2", "--max-concurrent", "2"]
    study = tmp_path / "studies" / "s"
    log = tmp_path / "first.log"
    with ray_temp_root() as ray_tmp:
        rc = kill_when(
            [SAMPLEGEN, *args],
            private_env(ray_tmp),
            tmp_path,
            lambda: len(finished_trials(study)) >= 1,
            log,
            sig=signal.SIGTERM,
        )
    first = log.read_text()
    assert rc == 130, first[-3000:]
    assert "samplegen: study interrupted; continue it with --resume (same --name s)" in first
    assert "SIGTERM received" not in first
    assert not (study / "best_model").exists()  # an interrupted study exports nothing
    done = set(finished_trials(study))

    with ray_temp_root() as ray_tmp:
        resumed = run_cli([*args, "--resume"], private_env(ray_tmp), tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"[s] done: {trials} trials ({trials} completed)" in resumed.stdout
    for trial_id in done:
        assert_resumed_not_restarted(result_lines(study / f"trial_{trial_id}"), trial_id)


# What `samplegen run` does, with a tiny preset (the command offers only quick/full).
PIPELINE_DRIVER = """
import sys
from samplegen.platform.pipeline import run_pipeline
from samplegen.platform.presets import Preset, StageBudget
root = sys.argv[1]
preset = Preset(
    name="tiny",
    outer=StageBudget("frame_ae", "random", "fifo", 2, 2, space=f"{root}/outer.yaml"),
    outer_final_epochs=2,
    inner=StageBudget("vae", "random", "fifo", 2, 12, space=f"{root}/vae.yaml"),
    griffin_lim_iters=2,
    examples=4,
)
run_pipeline(preset, f"{root}/run", source=f"{root}/src", num_cpus=2)
"""


def test_pipeline_killed_in_its_vae_study_continues_from_the_last_finished_stage(
    tmp_path: Path,
) -> None:
    from dataset_helpers import instrument_folder

    instrument_folder(tmp_path / "src", 16)  # 2 test groups: 6 test notes
    (tmp_path / "outer.yaml").write_text(TINY_OUTER_SPACE)
    (tmp_path / "vae.yaml").write_text(TINY_VAE_SPACE)
    (tmp_path / "driver.py").write_text(PIPELINE_DRIVER)
    cmd = [sys.executable, str(tmp_path / "driver.py"), str(tmp_path)]
    run = tmp_path / "run"
    vae = run / "vae_study"

    def some_vae_epochs() -> bool:
        return any(len(result_lines(t)) >= 3 for t in vae.glob("trial_*"))

    with ray_temp_root() as ray_tmp:
        kill_when(cmd, private_env(ray_tmp), tmp_path, some_vae_epochs, tmp_path / "first.log")
    done_before = {p.stem for p in (run / ".stages").glob("*.json")}
    assert done_before == {"dataset", "outer_study", "outer_model"}, done_before
    markers = {s: (run / ".stages" / f"{s}.json").read_text() for s in done_before}
    dataset_info = (run / "dataset" / "dataset.json").read_text()
    outer_weights = (run / "models" / "outer" / "weights.safetensors").read_bytes()
    vae_before = {t.name: result_lines(t) for t in vae.glob("trial_*")}
    logs_before = read_epoch_logs(pafs.LocalFileSystem(), str(vae))
    assert logs_before

    with ray_temp_root() as ray_tmp:
        again = run_cli_python(cmd, private_env(ray_tmp), tmp_path)
    log = again.stdout
    assert again.returncode == 0, log[-3000:] + again.stderr[-3000:]
    for stage in ("dataset", "outer_study", "outer_model"):
        assert f"[{stage}] already done, reusing it" in log
        assert (run / ".stages" / f"{stage}.json").read_text() == markers[stage]
    assert "[vae_study] running" in log and "[vae_study] resuming from" in log
    for stage in ("evaluation", "sounds", "report"):
        assert f"[{stage}] done in" in log
    # The Ray that the resumed run started for its VAE study is shut down before fine-tuning.
    shutdown = "local Ray instance shut down"
    assert log.count(shutdown) == 1
    assert log.index("[finetune] running") < log.index(shutdown) < log.index("[finetune] done in")
    # Finished stages were not redone: the same dataset and the same outer model.
    assert (run / "dataset" / "dataset.json").read_text() == dataset_info
    assert (run / "models" / "outer" / "weights.safetensors").read_bytes() == outer_weights
    # The interrupted study was resumed: its trials kept their epochs and continued from them.
    # Tune's resumed driver sometimes writes a trial's result.json afresh (its staging copy
    # replaces the stored one), so the lines from before the kill are either all still there or
    # gone, with the trial's first line then one trained after restoring a checkpoint.
    for name, lines in vae_before.items():
        after = result_lines(vae / name)
        if after[: len(lines)] != lines:
            restored = [r for r in after if r["epoch"] != r["restored_from"]]
            assert restored and restored[0]["restored_from"] >= 1, (name, lines[:1], after[:1])
            by_epoch = {r["epoch"]: r for r in lines}
            for r in after:
                if r["epoch"] in by_epoch and r["restored_from"] == 0:
                    assert r == by_epoch[r["epoch"]], name
        assert_resumed_not_restarted(after, name)
    # The study's own epoch log, which the plot draws, kept every epoch up to the checkpoint each
    # trial resumed from, as it was, whatever Tune did to result.json.
    logs = read_epoch_logs(pafs.LocalFileSystem(), str(vae))
    for trial_id, before in logs_before.items():
        logged = logs[trial_id]
        resumed_at = [r["restored_from"] for r in logged if r["restored_from"]]
        kept_to = min(resumed_at) if resumed_at else max(r["epoch"] for r in logged)
        assert [r for r in logged if r["epoch"] < kept_to] == [
            r for r in before if r["epoch"] < kept_to
        ], trial_id
        # The checkpoint's own epoch may be a finished trial's result reported again.
        last = [r["val_loss"] for r in before if r["epoch"] == kept_to]
        assert last == [r["val_loss"] for r in logged if r["epoch"] == kept_to][: len(last)]
    results = pq.read_table(vae / "results.parquet").to_pylist()
    assert len(results) == 2 and not {r["status"] for r in results} & {"nan", "rejected", "error"}
    assert (run / "models" / "combined" / "weights.safetensors").is_file()


def run_cli_python(
    cmd: list[str], env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    """A Python driver script, to completion."""
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=400)


# `samplegen run` itself (the command's `main`), with quick's budget cut down: the command offers
# only quick and full. The outer model trains long enough to be stopped in the middle.
PIPELINE_CLI_DRIVER = """
import sys
from samplegen.cli.main import main
from samplegen.platform import presets
root = sys.argv[1]
presets.PRESETS["quick"] = presets.Preset(
    name="quick",
    outer=presets.StageBudget("frame_ae", "random", "fifo", 1, 2, space=f"{root}/outer.yaml"),
    outer_final_epochs=60,
    inner=presets.StageBudget("vae", "random", "fifo", 1, 3, space=f"{root}/vae.yaml"),
    griffin_lim_iters=2,
    examples=4,
)
argv = ["run", "--data", f"{root}/src", "--out", f"{root}/run", "--num-cpus", "2"]
sys.exit(main([*argv, *sys.argv[2:]]))
"""


@pytest.mark.parametrize("stage_tasks", [False, True], ids=["in-driver", "as-task"])
def test_sigterm_stops_the_pipeline_in_a_stage_outside_its_studies_and_it_continues(
    stage_tasks: bool, tmp_path: Path
) -> None:
    """The outer model's training runs in the command's own process with Ray up, whose handlers
    used to end the process at SIGTERM with a stack dump and no word of how to continue; or, as a
    Ray task (`--stage-gpus 0`), in a worker that the stopped driver must cancel and wait for."""
    from dataset_helpers import instrument_folder

    from samplegen.platform.training import load_checkpoint

    instrument_folder(tmp_path / "src", 16)
    (tmp_path / "outer.yaml").write_text(TINY_OUTER_SPACE)
    (tmp_path / "vae.yaml").write_text(TINY_VAE_SPACE)
    (tmp_path / "driver.py").write_text(PIPELINE_CLI_DRIVER)
    cmd = [sys.executable, str(tmp_path / "driver.py"), str(tmp_path)]
    cmd += ["--stage-gpus", "0"] if stage_tasks else []
    run = tmp_path / "run"
    checkpoint = run / "models" / "outer.checkpoint"
    log = tmp_path / "first.log"

    def outer_model_training() -> bool:
        return "[outer_model] running" in log.read_text() and checkpoint.is_dir()

    with ray_temp_root() as ray_tmp:
        rc = kill_when(
            cmd, private_env(ray_tmp), tmp_path, outer_model_training, log, sig=signal.SIGTERM
        )
    first = log.read_text()
    assert rc == 130, first[-3000:]
    assert (
        "samplegen: interrupted; run the same command again to continue it "
        "(finished stages are kept)" in first
    )
    assert "SIGTERM received" not in first and "Traceback" not in first, first[-3000:]
    assert {p.stem for p in (run / ".stages").glob("*.json")} == {"dataset", "outer_study"}
    # The last whole epoch before the stop is in the checkpoint, which the next run goes on from.
    _, meta = load_checkpoint(checkpoint)
    stopped_at = int(meta["epoch"])
    assert f"epoch {stopped_at}: train" in first
    assert 1 <= stopped_at < 60

    with ray_temp_root() as ray_tmp:
        again = run_cli_python(cmd, private_env(ray_tmp), tmp_path)
    second = again.stdout
    assert again.returncode == 0, second[-3000:] + again.stderr[-3000:]
    assert f"resuming at epoch {stopped_at + 1}" in second
    assert "epoch 1: train" not in second.split("[outer_model]", 1)[1].split("[vae_study]", 1)[0]
    assert (run / "models" / "combined" / "weights.safetensors").is_file()
    in_task = "[outer_model] in a Ray task on node"
    assert (in_task in first) is stage_tasks and (in_task in second) is stage_tasks
