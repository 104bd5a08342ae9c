"""User mistakes through the real console script (.venv/bin/samplegen in a subprocess): wrong
arguments, missing paths, data of the wrong representation, broken model folders. Each ends with
a non-zero exit and one clear error line, and no traceback unless --debug."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from reliability_helpers import make_dataset, private_env, ray_temp_root, run_cli

from samplegen.models.artifact import save_model
from samplegen.models.registry import build_model
from samplegen.platform.datasets import prepare_dataset


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, ray_session: None) -> dict[str, Path]:
    """An STFT dataset, the same notes as a wave dataset, and a saved STFT model."""
    from dataset_helpers import SMALL

    root = tmp_path_factory.mktemp("cli-errors")
    stft = make_dataset(root)
    wave = prepare_dataset(
        root / "src", root / "wave", SMALL.replace(representation="wave"), echo=None
    )
    model = build_model("conv2d_ae", {"layers": 1, "kernels": 2, "kernel_size": 3}, SMALL.shape)
    saved = save_model(root / "model", model, codec=SMALL)
    return {"root": root, "stft": stft, "wave": wave, "model": saved}


def _broken_model(world: dict[str, Path], name: str) -> Path:
    target = world["root"] / name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(world["model"], target)
    return target


def _one_error_line(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    rc, err = result.returncode, result.stderr
    assert rc != 0, result
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1, lines  # argparse adds its usage lines above, nothing else
    assert errors[0] == lines[-1]
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


def test_wrong_arguments_and_missing_paths(world: dict[str, Path], tmp_path: Path) -> None:
    env = private_env(tmp_path)
    ds, model = str(world["stft"]), str(world["model"])
    cases = [
        (["frobnicate"], ["invalid choice", "frobnicate"]),
        (["tune", "outer", "--name", "x"], ["required", "--data"]),
        (["tune", "outer", "--data", ds, "--name", "x", "--trials", "0"], ["--trials", ">= 1"]),
        (["tune", "outer", "--data", ds, "--name", "x", "--search", "bogus"], ["--search"]),
        (["tune", "outer", "--data", ds, "--name", "x", "--model", "nope"], ["nope"]),
        (["tune", "outer", "--data", ds, "--name", "x", "--epochs", "many"], ["--epochs"]),
        (["evaluate", str(tmp_path / "nothing"), "--data", ds], ["nothing", "model"]),
        (["evaluate", model, "--data", str(tmp_path / "nodata")], ["nodata", "dataset"]),
        (["evaluate", model, "--data", ds, "--split", "holdout"], ["holdout"]),
        (["train", "--config", str(tmp_path / "best.json"), "--data", ds, "--out", "o"], []),
        (["study", "plot", str(tmp_path / "nostudy")], ["nostudy"]),
        # A mistyped option is reported by its own command, whose usage lists the right ones.
        (
            ["--debug", "tune", "outer", "--data", ds, "--name", "x", "--trails", "3"],
            ["samplegen tune outer: error: unrecognized arguments: --trails 3"],
        ),
    ]
    for argv, needles in cases:
        if argv[0] == "train":
            argv = [*argv, "--epochs", "1"]
            needles = ["best.json"]
        _one_error_line(run_cli(argv, env, tmp_path), *needles)


def test_data_of_the_wrong_representation(world: dict[str, Path], tmp_path: Path) -> None:
    env = private_env(tmp_path)
    # An STFT model evaluated on a wave dataset.
    line = _one_error_line(
        run_cli(["evaluate", str(world["model"]), "--data", str(world["wave"])], env, tmp_path),
        str(world["model"]),
    )
    assert "stft" in line and "wave" in line
    # A wave model studied on an STFT dataset: refused before any trial runs.
    argv = ["tune", "outer", "--data", str(world["stft"]), "--name", "w", "--storage", "s"]
    argv += ["--model", "audio_conv_ae", "--trials", "1", "--epochs", "1", "--num-cpus", "1"]
    with ray_temp_root() as ray_tmp:
        result = run_cli(argv, private_env(ray_tmp), tmp_path)
    _one_error_line(result, "--model audio_conv_ae", "stft", "--repr wave")
    assert not (tmp_path / "s" / "w").exists()


def test_broken_model_folders(world: dict[str, Path], tmp_path: Path) -> None:
    env = private_env(tmp_path)
    ds = str(world["stft"])

    missing = _broken_model(world, "no-weights")
    (missing / "weights.safetensors").unlink()
    corrupt = _broken_model(world, "corrupt")
    weights = corrupt / "weights.safetensors"
    weights.write_bytes(np.random.default_rng(0).bytes(weights.stat().st_size))
    truncated = _broken_model(world, "truncated")
    weights = truncated / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    edited = _broken_model(world, "edited")
    cfg = json.loads((edited / "config.json").read_text())
    cfg["hparams"]["kernels"] = 5
    (edited / "config.json").write_text(json.dumps(cfg))
    garbled = _broken_model(world, "garbled")
    (garbled / "config.json").write_text('{"model": "conv2d_ae", "hparams": ')
    renamed = _broken_model(world, "renamed")
    cfg = json.loads((renamed / "config.json").read_text())
    cfg["model"] = "no_such_model"
    (renamed / "config.json").write_text(json.dumps(cfg))

    cases = {
        missing: ["weights.safetensors", "missing"],
        corrupt: ["weights.safetensors", "corrupted"],
        truncated: ["weights.safetensors", "corrupted"],
        edited: ["does not match", "edited"],
        garbled: ["config.json", "JSON"],
        renamed: ["no_such_model"],
    }
    for folder, needles in cases.items():
        _one_error_line(run_cli(["evaluate", str(folder), "--data", ds], env, tmp_path), *needles)

    # --debug shows the traceback, then the same one-line message.
    debug = run_cli(["--debug", "evaluate", str(missing), "--data", ds], env, tmp_path)
    assert debug.returncode == 2 and "Traceback" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1].startswith("samplegen: error:")


def test_missing_inputs_fail_before_ray_starts(tmp_path: Path) -> None:
    ray_tmp = tmp_path / "raytmp"
    ray_tmp.mkdir()
    env = private_env(ray_tmp)
    cases = [
        (
            ["data", "prepare", str(tmp_path / "nosrc"), "--out", str(tmp_path / "out")],
            ["nosrc", "no such file or folder"],
        ),
        (
            ["tune", "outer", "--data", str(tmp_path / "nodata"), "--name", "x"],
            ["--data", "nodata", "not a samplegen dataset"],
        ),
        (
            ["tune", "vae", "--outer", str(tmp_path / "noouter"), "--name", "v"],
            ["noouter", "neither a model directory"],
        ),
    ]
    for argv, needles in cases:
        _one_error_line(run_cli(argv, env, tmp_path), *needles)
    # Ray makes its session folders under RAY_TMPDIR as soon as it starts: none was made.
    assert list(ray_tmp.iterdir()) == []
    assert not (tmp_path / "out").exists()


def test_relative_outputs_inside_a_ray_job_are_refused_before_ray_starts(tmp_path: Path) -> None:
    # Inside `ray job submit --working-dir .`, the current folder is Ray's temporary copy of the
    # upload: a study or run written there reported success and was lost with the session.
    ray_tmp = tmp_path / "raytmp"
    ray_tmp.mkdir()
    job = json.dumps({"runtime_env": {"working_dir": "gcs://_ray_pkg_0123.zip"}})
    env = {**private_env(ray_tmp), "RAY_JOB_CONFIG_JSON_ENV_VAR": job}
    absolute = str(tmp_path / "studies")
    cases = [
        (["tune", "outer", "--data", "ds", "--name", "x"], ["--storage studies", "Ray job"]),
        (
            ["tune", "vae", "--outer", "m", "--name", "v", "--storage", absolute, "--encoded", "e"],
            ["--encoded e", "absolute path"],
        ),
        (["run", "--out", "runs/x"], ["--out runs/x", "deleted with the session"]),
        (["run", "--out", str(tmp_path / "run"), "--storage", "st"], ["--storage st"]),
    ]
    for argv, needles in cases:
        _one_error_line(run_cli(argv, env, tmp_path), *needles)
    assert list(ray_tmp.iterdir()) == []
    assert not (tmp_path / "runs").exists() and not (tmp_path / "run").exists()
