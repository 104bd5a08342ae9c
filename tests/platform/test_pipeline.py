"""`samplegen run` end to end on a slice of the built-in library (real Ray, real files), resumed."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from tune_helpers import TINY_OUTER_SPACE, TINY_VAE_SPACE

from samplegen.dsp.library import ensure_library
from samplegen.errors import SamplegenError
from samplegen.models.artifact import load_model
from samplegen.models.code_distribution import stored_distribution
from samplegen.platform.datasets import load_dataset
from samplegen.platform.encoded import EqAugment, load_encoded
from samplegen.platform.pipeline import RaySession, run_pipeline
from samplegen.platform.presets import PRESETS, Preset, StageBudget, get_preset


def _library_slice(root: Path) -> Path:
    """Programs 0-39 of the built-in library at velocity 100 (120 notes) in ROOT/slice, and the
    tiny search spaces in ROOT/outer.yaml and ROOT/vae.yaml."""
    library = ensure_library()
    src = root / "slice"
    src.mkdir()
    for f in sorted(library.glob("p0[0-3]?_*_v100.wav")):
        (src / f.name).symlink_to(f)
    (root / "outer.yaml").write_text(TINY_OUTER_SPACE)
    (root / "vae.yaml").write_text(TINY_VAE_SPACE)
    return src


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch on `n` threads within the block. A stage task holding 1 CPU runs torch on 1 thread
    (Ray sets OMP_NUM_THREADS), and sums split over other thread counts round otherwise, so the
    same stage in this process gives the same figures only on as many threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _tiny_preset(root: Path, inner_epochs: int, **changes: Any) -> Preset:
    """Two 2-epoch outer trials, two VAE trials, over the spaces `_library_slice` wrote."""
    return Preset(
        name="test",
        outer=StageBudget("frame_ae", "random", "fifo", 2, 2, space=str(root / "outer.yaml")),
        outer_final_epochs=2,
        inner=StageBudget("vae", "random", "fifo", 2, inner_epochs, space=str(root / "vae.yaml")),
        griffin_lim_iters=2,
        examples=4,
        **changes,
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, ray_session: None) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("pipeline")
    src = _library_slice(root)
    preset = _tiny_preset(
        root, 3, inner_eq=EqAugment(variants=1, db=4.0), finetune_epochs=2, refit=True
    )
    log: list[str] = []
    # The single-model stages as Ray tasks (the refit's among them); later tests continue copies
    # of this run in the driver.
    run_pipeline(preset, root / "run", source=str(src), stage_tasks=True, echo=log.append)
    return root, log


def test_every_artifact_of_the_chain(run: tuple[Path, list[str]]) -> None:
    root, log = run
    out = root / "run"
    report = json.loads((out / "dataset" / "report.json").read_text())
    assert report["counts"]["kept"] == 120
    for study in ("outer_study", "vae_study"):
        assert (out / study / "results.parquet").is_file()
        assert (out / study / "progress.png").read_bytes()[:4] == b"\x89PNG"
        assert (out / study / "results.csv").read_text().count("\n") == 3  # header + 2 trials
    outer = load_model(out / "models" / "outer")
    selected = load_model(out / "models" / "selected")
    combined = load_model(out / "models" / "combined")
    assert outer.meta.name == "frame_ae" and combined.meta.name == "combined"
    # The chained model was fine-tuned end to end (2 epochs), and kept only if validation fell.
    tuned = selected.meta.extra["finetune"]
    assert tuned["settings"]["epochs"] == 2 and len(tuned["train_loss"]) == 2
    # ... on the notes and the same EQ copies the VAE study trained on.
    assert tuned["settings"]["eq"] == {"variants": 1, "db": 4.0, "seed": 0}
    assert (tuned["kept"] == "fine-tuned") == (tuned["val_recon_after"] < tuned["val_recon_before"])
    assert tuned["selected_on_validation"] is True
    inner = load_model(selected.meta.extra["inner_model"]).model.state_dict()
    chained = all(
        torch.equal(v, selected.model.state_dict()[f"inner.{k}"]) for k, v in inner.items()
    )
    assert chained == (tuned["kept"] == "chained")
    # The final model is the refit: the selected trial's configuration, retraced to its chosen
    # epoch on the training and validation notes, then fine-tuned as the selected model was.
    vae_best = json.loads((out / "vae_study" / "best_config.json").read_text())
    refit = combined.meta.extra["refit"]
    assert refit["selected"]["trial_id"] == vae_best["trial_id"]
    assert refit["epochs"] == vae_best["best_epoch"] and refit["schedule_epochs"] == 3
    refit_inner = load_model(combined.meta.extra["inner_model"])
    assert refit_inner.meta.extra["config"] == vae_best["config"]
    assert refit_inner.meta.metrics["epochs"] == vae_best["best_epoch"]
    assert refit["finetuned"] == (tuned["kept"] == "fine-tuned")
    if refit["finetuned"]:
        again = combined.meta.extra["finetune"]
        assert again["selected_on_validation"] is False and again["kept"] == "fine-tuned"
        assert again["settings"] == tuned["settings"]
    # It still records the run's dataset (the refit dataset is made from it).
    assert combined.meta.dataset_fingerprint == load_dataset(out / "dataset").fingerprint
    refitted = combined.model.state_dict()
    assert not all(
        torch.equal(v, refitted[k])
        for k, v in selected.model.state_dict().items()
        if k.startswith("inner.")
    )
    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
    assert metrics["dataset"]["split"] == "test"
    assert np.isfinite(metrics["loss"]["mean"]) and np.isfinite(metrics["loss"]["rms_percent"])
    assert (out / "evaluation" / "outer" / "metrics.json").is_file()
    assert (out / "sounds" / "interpolate" / "manifest.json").is_file()
    assert list((out / "sounds" / "random").glob("*.wav"))
    # The final model carries the mixture of its training codes, and the random sounds use it.
    fitted = stored_distribution(combined.meta.extra, combined.model.latent_shape[0])
    splits = load_dataset(out / "dataset", splits=["train", "validation"]).splits
    assert fitted is not None
    assert fitted.count == len(splits["train"].x) + len(splits["validation"].x)
    random = json.loads((out / "sounds" / "random" / "manifest.json").read_text())
    assert "fitted to the training codes" in random["settings"]["distribution"]
    html = (out / "index.html").read_text()
    assert "no model directories" not in html and "frame_ae" in html and "progress.png" in html
    assert any("audition page" in line for line in log)
    # Each single-model stage ran in a task, the refit (whose encodings are a Ray Data job) too.
    for stage in ("outer_model", "finetune", "refit", "evaluation", "sounds"):
        marker = json.loads((out / ".stages" / f"{stage}.json").read_text())
        assert marker["outputs"]["ran_on"]["pid"] != os.getpid(), stage


def test_no_test_sample_is_ever_trained_on(run: tuple[Path, list[str]]) -> None:
    root, _ = run
    out = root / "run"
    data = load_dataset(out / "dataset")
    test_groups = {m["group"] for m in data.splits["test"].meta}
    train_groups = {g for m in data.splits["train"].meta for g in m["group"].split("+")}
    assert test_groups and not test_groups & train_groups
    encoded = load_encoded(out / "vae_study-encoded")
    enc_train = {m["name"] for m in encoded.splits["train"].meta}
    assert not enc_train & {m["name"] for m in data.splits["test"].meta}
    # The preset's EQ copies (one per training note, seeded by the run) join train alone.
    assert len(enc_train) == 2 * len(data.splits["train"].x)
    assert {f"{m['name']}#eq1" for m in data.splits["train"].meta} <= enc_train
    assert encoded.info["eq"] == {"variants": 1, "db": 4.0, "seed": 0}
    assert len(encoded.splits["validation"].z) == len(data.splits["validation"].x)
    assert len(encoded.splits["test"].z) == len(data.splits["test"].x)
    # The refit trains on validation notes and their EQ copies too, and never on a test note.
    refit = load_encoded(out / "vae_study-encoded-refit")
    refit_train = {m["name"] for m in refit.splits["train"].meta}
    val_names = {m["name"] for m in data.splits["validation"].meta}
    assert val_names <= refit_train and {f"{n}#eq1" for n in val_names} <= refit_train
    assert len(refit_train) == 2 * (len(data.splits["train"].x) + len(val_names))
    assert not refit_train & {m["name"] for m in data.splits["test"].meta}
    assert len(refit.splits["test"].z) == 0


def test_the_refit_command_makes_the_pipelines_refit(
    run: tuple[Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from samplegen.cli.main import main

    root, _ = run
    out = root / "run"
    args = ["refit", "--study", str(out / "vae_study"), "--outer", str(out / "models" / "outer")]
    args += ["--data", str(out / "dataset"), "--out", str(tmp_path / "refit")]
    args += ["--eq-variants", "1", "--eq-db", "4"]
    with torch_threads(1):  # as the pipeline's refit ran: a task holding 1 CPU
        assert main(args) == 0
    assert "refit model:" in capsys.readouterr().out
    mine = load_model(tmp_path / "refit")
    assert mine.meta.extra["refit"]["finetuned"] is False
    assert (tmp_path / "refit.refit-work" / "dataset-refit" / "dataset.json").is_file()
    # The same selected trial, data, copies and seed: the pipeline's refitted VAE, weight for weight.
    theirs = load_model(load_model(out / "models" / "combined").meta.extra["inner_model"])
    a = theirs.model.state_dict()
    b = load_model(mine.meta.extra["inner_model"]).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # A folder that is not a finished VAE study is refused by name.
    assert main([*args[:2], str(tmp_path), *args[3:]]) == 2
    assert f"--study {tmp_path}: no best_config.json" in capsys.readouterr().err
    assert main([*args, "--finetune-epochs", "-1"]) == 2
    assert "--finetune-epochs: must be >= 0 (0: none), got -1" in capsys.readouterr().err
    # What the refit could not finish, or what would not be the study's, is refused before the
    # refit dataset is built or a model trained (each used to be found after, or never).
    other = [*args[:-6], "--out", str(tmp_path / "r2"), "--eq-variants", "1", "--eq-db", "4"]
    refusals = [
        (["--eq-variants", "0"], "the study ran on encodings of another outer model, dataset or"),
        (["--outer", str(out / "models" / "combined")], "the study ran on encodings of another"),
        (["--refine-steps", "-1"], "--refine-steps: must be >= 0, got -1"),
    ]
    for extra, message in refusals:
        assert main([*other, *extra]) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (extra, err)
    (tmp_path / "afile").write_text("mine")
    assert main([*args[:-6], "--out", str(tmp_path / "afile"), *args[-4:]]) == 2
    assert "exists and is not a samplegen model directory" in capsys.readouterr().err
    assert (
        not (tmp_path / "r2.refit-work").exists() and not (tmp_path / "afile.refit-work").exists()
    )


def test_a_restarted_run_continues_where_it_stopped(run: tuple[Path, list[str]]) -> None:
    root, _ = run
    out = root / "run"
    # Pretend the run died during the last two stages.
    (out / ".stages" / "sounds.json").unlink()
    (out / ".stages" / "report.json").unlink()
    settings = json.loads((out / "run.json").read_text())
    preset = Preset(
        name="test",
        outer=StageBudget(**settings["preset"]["outer"]),
        outer_final_epochs=2,
        inner=StageBudget(**settings["preset"]["inner"]),
        inner_eq=EqAugment(**settings["preset"]["inner_eq"]),
        finetune_epochs=2,
        refit=True,
        griffin_lim_iters=2,
        examples=4,
    )
    log: list[str] = []
    # ...in a copy of the run folder elsewhere, the original out of reach: the finished stages'
    # outputs are found in the copy.
    moved = root / "moved"
    shutil.copytree(out, moved)
    hidden = root / "hidden"
    out.rename(hidden)
    try:
        run_pipeline(preset, moved, source=settings["source"], echo=log.append)
    finally:
        hidden.rename(out)
    stages = ("dataset", "outer_study", "outer_model", "vae_study", "finetune", "refit")
    for stage in (*stages, "evaluation"):
        assert f"[{stage}] already done, reusing it" in log
    assert "[sounds] running" in log and "[report] running" in log
    assert (moved / "index.html").is_file() and (moved / ".stages" / "report.json").is_file()
    sounds = json.loads((moved / ".stages" / "sounds.json").read_text())
    assert sounds["outputs"]
    assert not (out / ".stages" / "sounds.json").exists()

    # Other settings in the same folder are refused.
    with pytest.raises(SamplegenError, match="other settings"):
        run_pipeline(get_preset("quick"), out, source=settings["source"], echo=log.append)


def test_a_run_stopped_in_its_evaluation_keeps_the_evaluation_it_had_finished(
    run: tuple[Path, list[str]],
) -> None:
    root, _ = run
    copy = root / "stopped_in_evaluation"
    shutil.copytree(root / "run", copy)
    # As a run stopped during the combined model's evaluation leaves it: the outer model's done.
    for stage in ("evaluation", "sounds", "report"):
        (copy / ".stages" / f"{stage}.json").unlink(missing_ok=True)  # (another test may have)
    before = json.loads((copy / "evaluation" / "metrics.json").read_text())
    (copy / "evaluation" / "metrics.json").unlink()
    outer_stamp = (copy / "evaluation" / "outer" / "metrics.json").stat().st_mtime_ns
    settings = json.loads((copy / "run.json").read_text())
    preset = _tiny_preset(
        root, 3, inner_eq=EqAugment(variants=1, db=4.0), finetune_epochs=2, refit=True
    )
    assert preset.to_dict() == settings["preset"]
    log: list[str] = []
    with torch_threads(1):  # as the run's first evaluation ran: a task holding 1 CPU
        run_pipeline(preset, copy, source=settings["source"], echo=log.append)
    kept = [line for line in log if "holds this evaluation already" in line]
    assert len(kept) == 1 and kept[0].startswith(f"[evaluation] {copy / 'evaluation' / 'outer'}")
    assert (copy / "evaluation" / "outer" / "metrics.json").stat().st_mtime_ns == outer_stamp
    after = json.loads((copy / "evaluation" / "metrics.json").read_text())
    assert after["loss"] == before["loss"]
    assert (copy / ".stages" / "report.json").is_file()


def test_presets() -> None:
    assert set(PRESETS) == {"quick", "full"}
    with pytest.raises(SamplegenError, match="--preset"):
        get_preset("huge")
    with pytest.raises(SamplegenError, match="preset 'tiny': examples must be >= 4"):
        Preset(name="tiny", examples=2)
    with pytest.raises(SamplegenError, match="preset 'tiny': rescore_trials must be >= 1"):
        Preset(name="tiny", rescore_trials=0)
    with pytest.raises(SamplegenError, match="rescore_trials 2 scores trials with refined codes"):
        Preset(name="tiny", rescore_trials=2, refine_steps=0)
    # Run folders started before the setting existed resume: it is recorded only when used.
    assert "rescore_trials" not in Preset(name="tiny").to_dict()
    assert Preset(name="tiny", rescore_trials=3, refine_steps=1).to_dict()["rescore_trials"] == 3


def test_each_stage_budget_reaches_its_study(tmp_path: Path) -> None:
    from samplegen.platform.pipeline import _study_config

    full = get_preset("full")
    inner = _study_config(full, "inner", tmp_path, "data", 0, None)
    outer = _study_config(full, "outer", tmp_path, "data", 0, None)
    assert inner.asha_grace == full.inner.asha_grace == 50
    assert outer.asha_grace == full.outer.asha_grace == 2
    assert not inner.autoscaling and not outer.autoscaling
    assert _study_config(full, "inner", tmp_path, "data", 0, None, autoscaling=True).autoscaling
    assert not inner.wandb
    tracked = _study_config(full, "vae", tmp_path / "r1", "", 0, None, wandb_project="p")
    assert (tracked.wandb, tracked.wandb_project, tracked.wandb_group) == (
        True,
        "p",
        "r1-vae_study",
    )
    assert inner.overfit_limit is None and outer.overfit_limit is not None
    assert (inner.scheduler, inner.cutoff_grace, inner.epochs, inner.trials) == (
        full.inner.scheduler,
        full.inner.cutoff_grace,
        full.inner.epochs,
        full.inner.trials,
    )
    # The quick preset's studies keep the best trial whatever order trials report in.
    quick = get_preset("quick")
    assert quick.outer.scheduler == quick.inner.scheduler == "fifo"
    assert _study_config(quick, "inner", tmp_path, "data", 0, None).scheduler == "fifo"


def test_the_full_preset_runs_end_to_end_at_a_tiny_budget(
    tmp_path: Path, ray_session: None
) -> None:
    """The full preset as a GPU run uses it (its spaces, gp outer search, tpe inner search over
    both decoders, audio-domain mixes, EQ copies, refinement, the single-model stages as Ray
    tasks), with only its sizes cut to fit a CPU test (and no GPU asked for)."""

    full = get_preset("full")
    library = ensure_library()
    src = tmp_path / "slice"
    src.mkdir()
    for f in sorted(library.glob("p0[0-2]?_*_v100.wav")):  # programs 0-29, velocity 100
        (src / f.name).symlink_to(f)
    preset = dataclasses.replace(
        full,
        name="full-tiny",
        augment_mixes=12,
        variations=True,  # asked for, but the source is a folder: skipped with a note
        outer=dataclasses.replace(full.outer, trials=2, epochs=2),
        outer_final_epochs=2,
        inner=dataclasses.replace(full.inner, trials=3, epochs=2, asha_grace=2),
        refine_steps=2,
        finetune_epochs=1,
        gpus_per_trial=0.0,
        griffin_lim_iters=2,
        examples=4,
    )
    log: list[str] = []
    run_pipeline(preset, tmp_path / "run", source=str(src), stage_gpus=0, echo=log.append)
    out = tmp_path / "run"
    assert any("no variation presets: source" in line for line in log)
    # Each single-model stage ran as a task (another process), and what it said was said here.
    assert "the single-model stages run as Ray tasks holding 1 CPU and 0 GPU each" in log
    for stage in ("outer_model", "finetune", "evaluation", "sounds"):
        marker = json.loads((out / ".stages" / f"{stage}.json").read_text())
        assert marker["outputs"]["ran_on"]["pid"] != os.getpid(), stage
        assert any(line.startswith(f"[{stage}] in a Ray task on node") for line in log)
    assert any(line.startswith("epoch 2: train") for line in log)  # the outer model's training
    # The VAE study's rescoring of its best trials too, inside the vae_study stage.
    assert any(line.startswith("[vae_study rescoring] in a Ray task on node") for line in log)
    assert any(line.startswith("[evaluation] ") for line in log)
    report = json.loads((out / "dataset" / "report.json").read_text())
    assert report["counts"]["kept"] == 90
    train = load_dataset(out / "dataset", splits=["train"]).splits["train"]
    assert sum(m["name"].startswith("mix") for m in train.meta) == 12  # audio-domain mixes
    # EQ copies of the notes (not of the mixes) join the VAE study's training rows.
    encoded = load_encoded(out / "vae_study-encoded", splits=["train"]).splits["train"]
    notes = sum(not m["augmented"] for m in train.meta)
    assert len(encoded.meta) == len(train.meta) + full.inner_eq.variants * notes
    for study, searcher in (("outer_study", "gp"), ("vae_study", "tpe")):
        settings = json.loads((out / study / "study.json").read_text())["config"]
        assert settings["search"] == searcher
        rows = pq.read_table(out / study / "results.parquet").to_pylist()
        assert rows and not {r["status"] for r in rows} & {"error", "nan"}
    vae_best = json.loads((out / "vae_study" / "best_config.json").read_text())
    assert vae_best["config"]["latent"] == 8 and vae_best["config"]["decoder"] in ("mlp", "frames")
    # The study's best trials were scored again with refined codes, and the best of those kept.
    choice = json.loads((out / "vae_study" / "refined_choice.json").read_text())
    assert len(choice["trials"]) == min(full.rescore_trials, 3) > 1
    assert choice["refine_steps"] == 2 and choice["chosen"] == vae_best["trial_id"]
    combined = load_model(out / "models" / "combined")
    assert combined.meta.extra["refined_choice"] == choice
    assert combined.model.latent_shape == (8,)
    assert "refit" not in combined.meta.extra and not (out / "models" / "selected").exists()
    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
    assert np.isfinite(metrics["loss"]["rms_percent"])
    assert (out / "index.html").is_file()


def test_a_ray_the_run_did_not_start_is_left_running(ray_session: None) -> None:
    import ray

    session = RaySession(None, None, echo=lambda _m: None)
    session.up()
    assert not session.started and ray.is_initialized()
    session.down()
    assert ray.is_initialized()


def test_run_rescore_flag_is_checked_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from samplegen.cli.main import main

    # Refused before anything runs: no run folder is made.
    out = tmp_path / "run"
    assert main(["run", "--rescore", "0", "--out", str(out)]) == 2
    assert "samplegen: error: --rescore: must be >= 1 (1: off), got 0" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--stage-gpus", "-1"], "--stage-gpus: must be >= 0, got -1"),
        (
            ["--stage-gpus", "1.5"],
            "--stage-gpus: above 1 it must be a whole number of GPUs, got 1.5",
        ),
        (["--stage-cpus", "0"], "--stage-cpus: must be positive, got 0"),
        (["--gpus-per-trial", "-1"], "--gpus-per-trial: must be >= 0, got -1"),
        (["--gpus-per-trial", "2.5"], "--gpus-per-trial: above 1 it must be a whole number"),
        (["--cpus-per-trial", "0"], "--cpus-per-trial: must be positive, got 0"),
    ],
)
def test_run_resource_flags_are_checked_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    from samplegen.cli.main import main

    out = tmp_path / "run"
    assert main(["run", *flags, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"samplegen: error: {message}")
    assert not out.exists()


def test_a_mistyped_source_or_storage_is_refused_before_the_run_folder_holds_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from samplegen.cli.main import main

    out = tmp_path / "run"
    # A new run records its source as a setting: a typo used to leave run.json holding it, and
    # the corrected command was then refused ("started with other settings").
    assert main(["run", "--data", str(tmp_path / "no-such-folder"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"samplegen: error: source {tmp_path / 'no-such-folder'}: no such file or folder"
    ]
    assert not out.exists()
    # Studies' storage that cannot be made is refused before the dataset stage, not after it.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["run", "--storage", str(blocker / "studies"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"samplegen: error: --storage {blocker / 'studies'}: cannot make this folder"
    )
    assert not out.exists()


def test_a_preset_whose_trials_the_cluster_cannot_place_is_refused_before_the_dataset(
    tmp_path: Path, ray_session: None, capsys: pytest.CaptureFixture[str]
) -> None:
    import ray

    from samplegen.cli.main import main

    if ray.cluster_resources().get("GPU"):
        pytest.skip("the test cluster has a GPU: the full preset's trials fit")
    src = tmp_path / "slice"
    src.mkdir()
    for f in sorted(ensure_library().glob("p00[0-2]_*_v100.wav")):
        (src / f.name).symlink_to(f)
    out = tmp_path / "run"
    assert main(["run", "--preset", "full", "--data", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--gpus-per-trial 0.25: the Ray cluster has no GPU" in err[0]
    assert "--autoscaling" in err[0]
    assert not out.exists()  # nothing made: not even a run.json that the next command must match
    # The run's own --gpus-per-trial replaces the preset's (and is what the refusal names).
    argv = ["run", "--preset", "full", "--gpus-per-trial", "0.5", "--data", str(src)]
    assert main([*argv, "--out", str(tmp_path / "run2")]) == 2
    assert "--gpus-per-trial 0.5: the Ray cluster has no GPU" in capsys.readouterr().err
    assert not (tmp_path / "run2").exists()
    # So are single-model stage tasks that ask for a GPU no node has.
    argv = ["run", "--preset", "full", "--gpus-per-trial", "0", "--stage-gpus", "1"]
    assert main([*argv, "--data", str(src), "--out", str(tmp_path / "run3")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--stage-gpus 1: no node of the Ray cluster holds 1 CPU" in err[0]
    assert not (tmp_path / "run3").exists()


def test_run_space_flags_are_checked_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from samplegen.cli.main import main

    space = tmp_path / "outer.yaml"
    space.write_text("model: vae\nparams:\n  latent: {type: const, value: 8}\n")
    out = tmp_path / "run"
    assert main(["run", "--outer-space", str(space), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--outer-space {space}: model 'vae' is not an outer model" in err[0]
    assert main(["run", "--vae-space", str(tmp_path / "missing.yaml"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.yaml: cannot read search space" in err[0]
    # The preset's outer model (frame_ae) takes STFT samples: a waveform run is refused at once,
    # as is a waveform outer model on an STFT run.
    assert main(["run", "--repr", "wave", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--repr wave: the outer model frame_ae" in err[0]
    space.write_text("model: harmonic_ae\nparams:\n  hidden: {type: const, value: 8}\n")
    assert main(["run", "--outer-space", str(space), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--repr stft: the outer model harmonic_ae" in err[0]
    assert "run with --repr wave" in err[0]
    assert not out.exists()


def test_a_run_keeps_its_studies_where_storage_says(tmp_path: Path, ray_session: None) -> None:
    # file:// takes the code paths of s3:// and gs:// (the cluster's studies need storage that
    # every node reaches); the run folder keeps the rest, and a copy of each study's summary.
    src = _library_slice(tmp_path)
    # Rescoring copies the best trials' checkpoints from the URI.
    # The refit reads the study's configuration from the run folder's copy.
    preset = _tiny_preset(
        tmp_path, 2, inner_eq=EqAugment(variants=0), refine_steps=3, rescore_trials=2, refit=True
    )
    storage = f"file://{tmp_path}/studies"
    done = run_pipeline(
        preset, tmp_path / "run", source=str(src), storage=storage, echo=lambda _: None
    )
    run = tmp_path / "run"
    for study in ("outer_study", "vae_study"):
        assert (tmp_path / "studies" / study / "tuner.pkl").is_file()
        assert not (run / study / "tuner.pkl").exists()
        for name in ("best_config.json", "results.csv", "progress.png"):
            assert (run / study / name).read_bytes() == (
                tmp_path / "studies" / study / name
            ).read_bytes()
    assert (run / "vae_study-encoded").is_dir()
    chosen = json.loads((run / "vae_study" / "best_config.json").read_text())["refined_choice"]
    assert len(chosen["trials"]) == 2
    combined = load_model(done["combined_model"])
    assert combined.meta.name == "combined"
    refit = combined.meta.extra["refit"]
    assert (
        refit["selected"]["trial_id"]
        == json.loads((tmp_path / "studies" / "vae_study" / "best_config.json").read_text())[
            "trial_id"
        ]
    )
    assert "vae_study progress" in (run / "index.html").read_text()


def test_a_storage_uri_that_cannot_be_opened_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from samplegen.cli.main import main

    out = tmp_path / "run"
    commands = [
        ["run", "--storage", "nosuch://bucket/studies", "--out", str(out)],
        ["tune", "vae", "--outer", "nosuch://b/s/outer", "--name", "x"],
        ["study", "plot", "nosuch://b/s/outer"],
    ]
    for argv in commands:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "cannot open this storage URI" in err[0], (argv, err)
        assert "nosuch://b" in err[0]
    assert not out.exists()


def test_a_study_that_made_nothing_says_why_in_the_runs_error(
    tmp_path: Path, ray_session: None
) -> None:
    # A run whose every VAE trial exceeded the parameter limit stopped with "no trial produced a
    # usable model" and nothing more: the reason was only in results.csv.
    from tune_helpers import tiny_config, tiny_data, write_space

    from samplegen.platform.pipeline import _finished
    from samplegen.platform.study import run_study

    space = write_space(tmp_path / "space.yaml")
    config = tiny_config(tmp_path / "studies", space, "none", search="random", trials=2)
    result = run_study(dataclasses.replace(config, max_params=10), tiny_data())
    assert result.best is None
    with pytest.raises(SamplegenError) as caught:
        _finished(result, "VAE study")
    message = str(caught.value)
    assert message.startswith("VAE study: no trial produced a usable model: 2 rejected; ")
    assert "the first says: model conv2d_ae: " in message and "max_params=10" in message
    assert message.endswith(f"(see {result.path}/results.csv)")


def test_a_vae_space_that_cannot_fit_the_outer_code_stops_the_run_before_the_outer_model(
    tmp_path: Path, ray_session: None
) -> None:
    # Found out only when every VAE trial had been rejected, after the outer model's training.
    src = _library_slice(tmp_path)
    (tmp_path / "vae.yaml").write_text(
        TINY_VAE_SPACE.replace(
            "depth: {type: const, value: 2}", "depth: {type: const, value: 80}"
        ).replace("ratio: {type: float, low: 0.3, high: 0.6}", "ratio: {type: const, value: 40}")
    )
    log: list[str] = []
    with pytest.raises(SamplegenError) as caught:
        run_pipeline(_tiny_preset(tmp_path, 2), tmp_path / "run", source=str(src), echo=log.append)
    message = str(caught.value)
    assert message.startswith("vae_study: every corner of its space (the ends of each range")
    assert "exceeds max_params=20,000,000 over an outer code" in message
    assert "outer code of shape [6, 87] (522 values)" in message
    assert sorted(p.stem for p in (tmp_path / "run" / ".stages").glob("*.json")) == [
        "dataset",
        "outer_study",
    ]
    assert not (tmp_path / "run" / "models").exists()


def test_a_stage_task_that_does_not_find_the_run_folder_says_so(
    tmp_path: Path, ray_session: None
) -> None:
    from samplegen.platform.pipeline import _Stages
    from samplegen.platform.stage_tasks import StagePlacement

    # As on a cluster whose --out is on the head's own disk: not there where the task runs.
    run_dir = tmp_path / "on-the-head-only"
    stages = _Stages(
        get_preset("quick"),
        run_dir,
        "builtin",
        "stft",
        0,
        None,
        False,
        None,
        None,
        print,
        RaySession(None, None),
        StagePlacement(tasks=True, cpus=1, gpus=0),
    )
    with pytest.raises(SamplegenError) as caught:
        stages.single("evaluation", lambda s: {})()
    message = str(caught.value)
    assert message.startswith(f"{run_dir}: the run folder is not on node ")
    assert "where the evaluation stage runs as a Ray task" in message
    assert "--no-stage-tasks" in message
