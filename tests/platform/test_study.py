"""Studies end to end: the CLI on a real prepared dataset, resume after an interruption, a trial
retried from its checkpoint, NaN / rejected trials recorded, GPU requests on a CPU-only cluster."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from dataset_helpers import SMALL, instrument_folder
from tune_helpers import one_trial_config, tiny_config, tiny_data, write_space

from samplegen.cli.main import main
from samplegen.models.artifact import load_model
from samplegen.platform.datasets import prepare_dataset
from samplegen.platform.epoch_log import read_epoch_logs
from samplegen.platform.resources import ResourceError
from samplegen.platform.study import StudyError, plot_study, run_study, trial_histories


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, ray_session: None) -> Path:
    """A real prepared dataset: 8 instruments x C3/C4/C5 at the small test codec (129 x 16)."""
    root = tmp_path_factory.mktemp("tune-data")
    instrument_folder(root / "src", 8)
    return prepare_dataset(root / "src", root / "ds", SMALL, echo=None)


def _result_lines(trial_path: str) -> list[str]:
    return (Path(trial_path) / "result.json").read_text().splitlines()


def test_cli_tune_outer_then_train_then_plot(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space = write_space(tmp_path / "space.yaml")
    storage = tmp_path / "studies"
    args = ["tune", "outer", "--data", str(dataset), "--name", "cli", "--storage", str(storage)]
    args += ["--space", str(space), "--search", "random", "--trials", "2", "--epochs", "2"]
    args += ["--stall-window", "0", "--overfit-limit", "0"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "[cli] done: 2 trials" in out and "best model:" in out
    study = storage / "cli"
    table = pq.read_table(study / "results.parquet").to_pylist()
    assert len(table) == 2 and {r["status"] for r in table} == {"completed"}
    assert (study / "results.csv").read_text().startswith('"trial_id"')
    best = json.loads((study / "best_config.json").read_text())
    assert best["model"] == "conv2d_ae" and set(best["config"]) >= {"layers", "lr_exp"}
    loaded = load_model(study / "best_model")
    assert loaded.codec == SMALL and loaded.model.input_shape == SMALL.shape
    assert loaded.meta is not None

    # The same name again without --resume is refused in one line.
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err

    # A study whose every trial is refused ran, but made nothing: it must not exit 0 (a Ray job
    # of it would report SUCCEEDED).
    named = args.index("--name") + 1
    nothing = [*args[:named], "none", *args[named + 1 :], "--max-params", "1"]
    assert main(nothing) == 1
    assert "no trial produced a loss" in capsys.readouterr().err

    # A file where a folder must be: one line, before anything runs.
    afile = tmp_path / "afile"
    afile.write_text("mine")
    storage_at = args.index("--storage") + 1
    assert main([*args[:storage_at], str(afile), *args[storage_at + 1 :]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a file, not a folder" in err[0], err
    train = ["train", "--config", str(study / "best_config.json"), "--epochs", "1"]
    for out_at in (afile, afile / "m"):
        assert main([*train, "--data", str(dataset), "--out", str(out_at), "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(afile) in err[0], err
    assert afile.read_text() == "mine"

    # Train the best configuration longer, without Tune.
    model_dir = tmp_path / "longer"
    train = ["train", "--config", str(study / "best_config.json"), "--epochs", "3"]
    assert main([*train, "--data", str(dataset), "--out", str(model_dir), "--quiet"]) == 0
    longer = load_model(model_dir)
    assert longer.model.input_shape == SMALL.shape

    assert main(["study", "plot", str(study)]) == 0
    png = study / "progress.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A folder as --out is named as such (it used to fail on the temporary file's name).
    assert main(["study", "plot", str(study), "--out", str(tmp_path)]) == 2
    assert f"--out {tmp_path}: is a folder; give the image's file path" in capsys.readouterr().err


def test_interrupted_study_resumes_without_rerunning_finished_trials(
    tmp_path: Path, ray_session: None
) -> None:
    space = write_space(tmp_path / "space.yaml")
    config = tiny_config(
        tmp_path / "studies", space, "resume", search="gp", trials=5, max_concurrent=1
    )
    first = run_study(config, tiny_data(), interrupt_after=2)
    assert first.interrupted and "--resume" in first.note
    done_first = {r["trial_id"]: r for r in first.rows if r["status"] == "completed"}
    assert len(done_first) >= 2

    # Not on other data: its finished trials would be ranked beside trials of another dataset.
    other = dataclasses.replace(tiny_data(), fingerprint="other-data", source="elsewhere")
    with pytest.raises(StudyError, match="cannot resume on other data: the study ran on random"):
        run_study(config, other, resume=True)

    second = run_study(config, tiny_data(), resume=True)
    assert not second.interrupted
    rows = {r["trial_id"]: r for r in second.rows}
    assert len(rows) == 5 and all(r["status"] == "completed" for r in rows.values())
    for trial_id, row in done_first.items():
        # A finished trial is not run again: its results are untouched.
        assert rows[trial_id]["time_total_s"] == row["time_total_s"]
        lines = (Path(row["path"]) / "result.json").read_text().splitlines()
        assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3]
    # The study's own epoch log holds every trial's epochs, those from before the interruption
    # as they were reported.
    logs = read_epoch_logs(pafs.LocalFileSystem(), second.path)
    assert set(logs) == set(rows)
    for trial_id, logged in logs.items():
        assert [r["epoch"] for r in logged] == [1, 2, 3]
        reported = [json.loads(x) for x in _result_lines(rows[trial_id]["path"])]
        assert [r["val_loss"] for r in logged] == [r["val_loss"] for r in reported]
        assert [r["timestamp"] for r in logged] == [r["timestamp"] for r in reported]
    # The plot draws from it, so a result.json that Tune wrote afresh on a resume (what a resumed
    # driver sometimes does) loses no epoch from the plot.
    cut = Path(rows[next(iter(done_first))]["path"]) / "result.json"
    cut.write_text(cut.read_text().splitlines()[-1] + "\n")
    histories = trial_histories(Path(second.path))
    assert all([r["epoch"] for r in h] == [1, 2, 3] for h in histories.values())
    assert Path(plot_study(second.path)).is_file()
    # The GP searcher kept its state: it was told every trial, across both runs. (Tune names the
    # file .pkl; our searcher writes JSON into it.)
    state_files = sorted(Path(second.path).glob("searcher-state-*.pkl"))
    assert state_files
    state = json.loads(state_files[-1].read_text())
    assert len(state["xs"]) == 5 and state["pending"] == {}


def test_ctrl_c_with_every_trial_started_is_an_interruption(
    tmp_path: Path, ray_session: None
) -> None:
    # Both trials run at once; Ctrl-C when the first ends leaves the other TERMINATED by Tune, as
    # if done: the study must still say it was interrupted, and export nothing.
    space = write_space(tmp_path / "space.yaml")
    config = tiny_config(tmp_path / "studies", space, "ctrl-c", trials=2, epochs=6)
    first = run_study(config, tiny_data(), interrupt_after=1)
    assert first.interrupted and "--resume" in first.note
    assert first.best_model is None
    second = run_study(config, tiny_data(), resume=True)
    assert not second.interrupted and second.best_model is not None
    assert len(second.rows) == 2 and all(r["status"] == "completed" for r in second.rows)


def test_a_trial_that_fails_once_resumes_from_its_checkpoint(
    tmp_path: Path, ray_session: None
) -> None:
    config = one_trial_config(tmp_path, "fault", epochs=4, fail_at_epoch=2)
    result = run_study(config, tiny_data())
    (row,) = result.rows
    assert row["status"] == "completed" and row["epochs"] == 4
    assert row["restored_from"] == 2  # restarted from the epoch-2 checkpoint, not from 0
    lines = (Path(row["path"]) / "result.json").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3, 4]
    (logged,) = read_epoch_logs(pafs.LocalFileSystem(), result.path).values()
    assert [(r["epoch"], r["restored_from"]) for r in logged] == [(1, 0), (2, 0), (3, 2), (4, 2)]
    assert any("injected fault" in p.read_text() for p in Path(row["path"]).glob("error*.txt"))


def test_a_trial_that_crashes_after_it_stopped_is_not_trained_further(
    tmp_path: Path, ray_session: None
) -> None:
    # Its final checkpoint is the one Tune restores: the trial had ended (stalled at epoch 2 of
    # 5), so the retry must end it again, not train epochs 3 to 5.
    config = one_trial_config(
        tmp_path, "stopped", epochs=5, fail_at_epoch=2, stall_window=1, stall_min_change=0.99
    )
    result = run_study(config, tiny_data())
    (row,) = result.rows
    assert (row["status"], row["epochs"]) == ("stalled", 2), row
    assert [json.loads(x)["epoch"] for x in _result_lines(row["path"])] == [1, 2]
    assert any("injected fault" in p.read_text() for p in Path(row["path"]).glob("error*.txt"))


def test_nan_and_rejected_trials_are_recorded_and_the_study_goes_on(
    tmp_path: Path, ray_session: None, caplog: pytest.LogCaptureFixture
) -> None:
    space = write_space(
        tmp_path / "space.yaml",
        layers={"type": "const", "value": 1},
        kernels={"type": "int", "low": 2, "high": 64, "grid": [2, 64]},
        lr_exp={"type": "float", "low": -5.0, "high": 40.0, "grid": [-4.0, 40.0]},
    )
    config = tiny_config(tmp_path / "studies", space, "failures", search="grid", max_params=500)
    result = run_study(config, tiny_data())
    rows = {(r["config.kernels"], r["config.lr_exp"]): r for r in result.rows}
    assert rows[(2, -4.0)]["status"] == "completed"
    assert rows[(2, 40.0)]["status"] == "nan"
    assert "non-finite training loss" in rows[(2, 40.0)]["reason"]
    for lr in (-4.0, 40.0):
        assert rows[(64, lr)]["status"] == "rejected"
        assert "max_params=500" in rows[(64, lr)]["reason"]
    assert result.best is not None and result.best["config.kernels"] == 2
    csv = (Path(result.path) / "results.csv").read_text()
    assert "rejected" in csv and "nan" in csv
    # Said once, with the reason, in the study's log and results; not again by TensorBoard.
    assert not [r for r in caplog.records if "NaN or Inf" in r.getMessage()]


def test_gpu_request_on_a_cpu_only_cluster_fails_at_once(tmp_path: Path, ray_session: None) -> None:
    space = write_space(tmp_path / "space.yaml")
    config = tiny_config(tmp_path / "studies", space, "gpu", gpus_per_trial=0.25)
    with pytest.raises(ResourceError, match="has no GPU"):
        run_study(config, tiny_data())
    assert not (tmp_path / "studies" / "gpu").exists()
    with pytest.raises(StudyError, match="no study to resume"):
        run_study(tiny_config(tmp_path / "studies", space, "none"), tiny_data(), resume=True)


def test_a_study_stopped_before_tune_started_it_starts_afresh(
    tmp_path: Path, ray_session: None
) -> None:
    # study.json is written just before Tune's own state: a study stopped in between ran nothing,
    # and neither "already exists" nor "no study to resume" would be true of it.
    space = write_space(tmp_path / "space.yaml")
    config = tiny_config(tmp_path / "studies", space, "early", trials=1, epochs=1)
    (tmp_path / "studies" / "early").mkdir(parents=True)
    (tmp_path / "studies" / "early" / "study.json").write_text('{"config": {}}')
    with pytest.raises(StudyError, match="no study to resume"):
        run_study(config, tiny_data(), resume=True)
    result = run_study(config, tiny_data())
    assert [r["status"] for r in result.rows] == ["completed"]
    recorded = json.loads((tmp_path / "studies" / "early" / "study.json").read_text())
    assert recorded["config"]["name"] == "early"


def test_a_resume_may_change_only_how_the_study_runs_not_what_it_runs(tmp_path: Path) -> None:
    from samplegen.platform.study import _check_resume

    space = write_space(tmp_path / "space.yaml")
    before = tiny_config(tmp_path / "studies", space, "resume-settings")
    recorded = before.to_dict()
    # Where it runs and what it logs change nothing already run.
    where = tiny_config(
        tmp_path / "studies",
        space,
        "resume-settings",
        address="ray://elsewhere:10001",
        autoscaling=True,
        num_cpus=8,
        progress=True,
        data="/the/same/dataset/elsewhere",  # its content is checked by fingerprint instead
    )
    _check_resume(recorded, where, "here")
    # W&B logging too: Tune resumes a study with the callbacks it started with.
    for change in ({"epochs": 5}, {"seed": 1}, {"scheduler": "asha"}, {"wandb": True}):
        other = tiny_config(tmp_path / "studies", space, "resume-settings", **change)
        with pytest.raises(
            StudyError,
            match=f"cannot resume with different settings \\({next(iter(change))} differ",
        ):
            _check_resume(recorded, other, "here")


def test_an_outer_model_that_cannot_take_the_datasets_samples_is_refused() -> None:
    from samplegen.models.registry import takes_representation
    from samplegen.platform.study import check_model_data

    assert takes_representation("frame_ae") == "stft"
    assert takes_representation("harmonic_ae") == "wave"
    assert takes_representation("vae") is None
    data = tiny_data()  # STFT samples
    check_model_data("conv2d_ae", data)
    check_model_data("vae", data)
    with pytest.raises(StudyError, match="--model harmonic_ae: takes wave samples") as err:
        check_model_data("harmonic_ae", data)
    assert "holds stft samples" in str(err.value) and "--repr wave" in str(err.value)


def test_space_may_name_a_presets_packaged_space_and_then_gives_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from samplegen.cli.tune import add_study_arguments, resolve_space_and_model
    from samplegen.platform.spaces import SpaceError

    parser = argparse.ArgumentParser()
    add_study_arguments(parser, default_model="conv2d_ae")

    def settled(*argv: str) -> tuple[str, str | None]:
        args = parser.parse_args(["--name", "s", *argv])
        resolve_space_and_model(args)
        return args.model, args.space

    assert settled() == ("conv2d_ae", None)
    model, space = settled("--space", "full_frame_ae")
    assert model == "frame_ae" and space is not None and space.endswith("full_frame_ae.yaml")
    # A file of that name wins over the package's.
    monkeypatch.chdir(tmp_path)
    write_space(tmp_path / "full_frame_ae")
    assert settled("--space", "full_frame_ae") == ("conv2d_ae", "full_frame_ae")
    assert settled("--space", "quick_vae", "--model", "bounded_ae")[0] == "bounded_ae"
    with pytest.raises(SpaceError, match="no_such_space: cannot read"):
        settled("--space", "no_such_space")
    # A space of the wrong kind is named in the refusal, before Ray starts.
    assert (
        main(["tune", "outer", "--data", str(tmp_path), "--space", "quick_vae", "--name", "x"]) == 2
    )
    err = capsys.readouterr().err
    assert "--space quick_vae (its model): 'vae' is not an outer auto-encoder" in err
    args = ["tune", "vae", "--outer", str(tmp_path), "--space", "quick_frame_ae", "--name", "x"]
    assert main(args) == 2
    assert "--space quick_frame_ae (its model): 'frame_ae' is not an inner model" in (
        capsys.readouterr().err
    )


def test_a_study_on_a_storage_uri_writes_the_same_files(tmp_path: Path, ray_session: None) -> None:
    # file:// goes through the URI code paths (pyarrow streams, the best model uploaded) that
    # s3:// and gs:// take, on a file system with real folders.
    space = write_space(tmp_path / "space.yaml")
    config = dataclasses.replace(
        tiny_config(tmp_path, space, "remote", trials=2), storage=f"file://{tmp_path}/store"
    )
    result = run_study(config, tiny_data())
    study = tmp_path / "store" / "remote"
    assert result.path == f"file://{study}" and result.best_model == f"file://{study}/best_model"
    assert load_model(study / "best_model").meta.metrics["best_val_loss"] == pytest.approx(
        result.best["best_val_loss"] if result.best else None
    )
    assert len(pq.read_table(study / "results.parquet")) == 2
    logs = read_epoch_logs(pafs.LocalFileSystem(), str(study))
    assert sorted(logs) == sorted(r["trial_id"] for r in result.rows)
    assert all([r["epoch"] for r in rows] == [1, 2, 3] for rows in logs.values())
    assert trial_histories(result.path) == logs
    assert plot_study(result.path) == f"{result.path}/progress.png"
    assert (study / "progress.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"asha_reduction": 1.0}, "--asha-reduction: must be above 1, got 1"),
        ({"asha_grace": 0}, "--asha-grace: must be >= 1, got 0"),
        ({"max_concurrent": 0}, "--max-concurrent: must be >= 1, got 0"),
        ({"max_params": -5}, "--max-params: must be >= 1, got -5"),
        ({"cutoff_factor": 0.5}, "--cutoff-factor: must be above 1, got 0.5"),
        ({"overfit_limit": 0.5}, "--overfit-limit: must be >= 1"),
        ({"time_budget_s": -5.0}, "--time-budget: must be above 0 seconds, got -5"),
        ({"device": "tpu"}, "--device: 'tpu' is not one of auto, cpu, cuda"),
    ],
)
def test_study_settings_no_trial_could_use_are_refused_when_the_study_is_configured(
    setting: dict[str, Any], message: str
) -> None:
    # Each was taken, and made a study of failed or stopped trials (or a traceback from Tune)
    # whose name the corrected command could then not use again. The CLI maps its flags one to
    # one onto StudyConfig, which it builds before anything runs.
    from samplegen.platform.study import StudyConfig

    with pytest.raises(StudyError) as refused:
        StudyConfig(name="s", model="frame_ae", **setting)
    assert str(refused.value).startswith(message)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--overfit-limit", "-1"], "argument --overfit-limit: must be >= 0 (0: off), got -1"),
        (["--train-subset", "-4"], "argument --train-subset: must be >= 1, got -4"),
    ],
)
def test_study_numbers_out_of_range_are_refused_by_the_parser(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    with pytest.raises(SystemExit):
        main(["tune", "outer", "--data", str(tmp_path), "--name", "s", *flags])
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(f"error: {message}")
