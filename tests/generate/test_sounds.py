"""Generation from saved models: every command's files, exact end-points, seeds, levels, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import soundfile as sf

from samplegen.cli.main import main
from samplegen.generate import sounds as S
from samplegen.generate.latent import GenerationError, load_space

if TYPE_CHECKING:
    from samplegen.dsp.config import CodecConfig
    from samplegen.models.code_distribution import CodeDistribution
    from tests.generate.conftest import TrainedModels

GL = ["--griffin-lim-iters", "4"]


def _run(*argv: object) -> int:
    return main([str(a) for a in argv])


def _manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "manifest.json").read_text())


def _check_outputs(folder: Path, count: int) -> dict[str, Any]:
    man = _manifest(folder)
    assert len(man["sounds"]) == count
    for item in man["sounds"]:
        data, sr = sf.read(folder / item["wav"])
        assert sr == 16_000 and data.ndim == 1 and data.shape[0] == 8000
        assert np.abs(data).max() <= 1.0
        assert (folder / item["png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return man


def test_every_command_writes_wavs_pngs_and_manifest(
    trained_models: TrainedModels, tmp_path: Path
) -> None:
    m, w = trained_models.combined, trained_models.wavs
    out = tmp_path / "sounds"
    assert (
        _run(
            "generate", "reconstruct", m, w[0], w[1], "--variations", "2", "--out", out / "rec", *GL
        )
        == 0
    )
    man = _check_outputs(out / "rec", 6)
    assert man["model"]["path"] == str(m.resolve())
    assert man["model"]["variational"] is True and man["model"]["latent_dim"] == 3
    assert man["codec"]["sample_rate"] == 16_000
    assert [i["name"] for i in man["inputs"]] == [w[0].stem, w[1].stem]
    assert all(len(i["latent"]) == 3 for i in man["inputs"])
    assert (out / "rec" / man["inputs"][0]["wav"]).is_file()
    assert (out / "rec" / man["inputs"][0]["pair_png"]).is_file()

    assert (
        _run("generate", "interpolate", m, w[0], w[5], "--steps", "4", "--out", out / "int", *GL)
        == 0
    )
    man = _check_outputs(out / "int", 4)
    assert [s["info"]["t"] for s in man["sounds"]] == pytest.approx([0, 1 / 3, 2 / 3, 1])

    assert _run("generate", "grid", m, *w[:4], "--size", "3", "--out", out / "grid", *GL) == 0
    man = _check_outputs(out / "grid", 9)
    assert man["layout"] == {"rows": 3, "cols": 3}

    assert (
        _run(
            "generate",
            "random",
            m,
            "--count",
            "3",
            "--temperature",
            "0.5",
            "--out",
            out / "rnd",
            *GL,
        )
        == 0
    )
    man = _check_outputs(out / "rnd", 3)
    assert man["settings"]["temperature"] == 0.5 and man["seed"] == 0

    assert (
        _run("generate", "perturb", m, w[2], "--levels", "0,0.5,1", "--out", out / "per", *GL) == 0
    )
    man = _check_outputs(out / "per", 3)
    assert man["latent_stats"]["source"] == "prior N(0, 1)"

    assert _run("generate", "sweep", m, "--values", "-2,0,2", "--out", out / "swp", *GL) == 0
    man = _check_outputs(out / "swp", 9)
    z = np.array([s["latent"] for s in man["sounds"]])
    # One dimension at a time, the others at the prior mean 0.
    assert np.allclose(
        z,
        [
            [-2, 0, 0],
            [0, 0, 0],
            [2, 0, 0],
            [0, -2, 0],
            [0, 0, 0],
            [0, 2, 0],
            [0, 0, -2],
            [0, 0, 0],
            [0, 0, 2],
        ],
    )


def test_same_seed_gives_identical_files_and_another_seed_differs(
    trained_models: TrainedModels, tmp_path: Path
) -> None:
    m, w = trained_models.combined, trained_models.wavs
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        assert (
            _run(
                "generate",
                "random",
                m,
                "--count",
                "2",
                "--seed",
                seed,
                "--out",
                tmp_path / name / "rnd",
                *GL,
            )
            == 0
        )
        assert (
            _run(
                "generate",
                "reconstruct",
                m,
                w[3],
                "--variations",
                "1",
                "--seed",
                seed,
                "--out",
                tmp_path / name / "rec",
                *GL,
            )
            == 0
        )
    files = sorted(
        p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()
    )
    assert len(files) > 10
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert (tmp_path / "a/rnd/random000.wav").read_bytes() != (
        tmp_path / "c/rnd/random000.wav"
    ).read_bytes()


def test_end_points_are_the_inputs_latent_means_exactly(trained_models: TrainedModels) -> None:
    space = load_space(trained_models.combined)
    a, b, c, d = S.load_inputs(trained_models.wavs[:4], space.codec)
    # Same batch as the plan encodes (float results can differ in the last bit between batchings).
    means = space.encode(np.stack([a.encoded, b.encoded, c.encoded, d.encoded]))
    pair = space.encode(np.stack([a.encoded, b.encoded]))
    np.testing.assert_allclose(pair, means[:2], rtol=1e-4, atol=1e-6)
    plan = S.plan_interpolate(space, a, b, steps=5)
    np.testing.assert_array_equal(plan.sounds[0].latent, pair[0])
    np.testing.assert_array_equal(plan.sounds[-1].latent, pair[1])
    np.testing.assert_allclose(plan.sounds[2].latent, (pair[0] + pair[1]) / 2, rtol=1e-6)
    # The levels of the end-points are the inputs' levels; the middle is between them in dB.
    assert plan.sounds[0].gain == pytest.approx(a.peak) and plan.sounds[-1].gain == pytest.approx(
        b.peak
    )
    assert a.peak is not None and b.peak is not None  # loaded from files, so measured
    assert plan.sounds[2].gain == pytest.approx(np.sqrt(a.peak * b.peak))

    grid = S.plan_grid(space, [a, b, c, d], size=3)
    corners = [grid.sounds[i].latent for i in (0, 2, 6, 8)]
    for got, want in zip(corners, means, strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(grid.sounds[4].latent, means.mean(axis=0), rtol=1e-5, atol=1e-7)

    alone = space.encode(a.encoded[None])[0]
    per = S.plan_perturb(space, a, levels=[0.0, 0.3], seed=1)
    np.testing.assert_array_equal(per.sounds[0].latent, alone)
    assert not np.array_equal(per.sounds[1].latent, alone)
    rec = S.plan_reconstruct(space, [a], variations=0)
    np.testing.assert_array_equal(rec.sounds[0].latent, alone)


def test_perturbation_noise_is_zero_mean_with_the_requested_std(
    trained_models: TrainedModels,
) -> None:
    space = load_space(trained_models.combined)
    (a,) = S.load_inputs(trained_models.wavs[:1], space.codec)
    plan = S.plan_perturb(space, a, levels=[0.5], per_level=4000, seed=3)
    za = space.encode(a.encoded[None])[0]
    noise = np.stack([s.latent for s in plan.sounds]) - za
    # The original's (2 randn - 1) had mean -level; this must be 0 (5-sigma bound) with std = level.
    assert np.all(np.abs(noise.mean(axis=0)) < 5 * 0.5 / np.sqrt(4000))
    np.testing.assert_allclose(noise.std(axis=0), 0.5, rtol=0.05)


def test_level_is_restored_for_reconstructions(
    trained_models: TrainedModels, tmp_path: Path
) -> None:
    m, w = trained_models.combined, trained_models.wavs
    assert _run("generate", "reconstruct", m, w[4], "--out", tmp_path, *GL) == 0
    peak_in = np.abs(sf.read(w[4])[0]).max()
    peak_out = np.abs(sf.read(tmp_path / f"00_{w[4].stem}.wav")[0]).max()
    assert peak_out == pytest.approx(peak_in, abs=2e-3)


def test_plain_outer_autoencoder(
    trained_models: TrainedModels, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    m, w = trained_models.outer, trained_models.wavs
    space = load_space(m)
    assert space.dim == 128 and not space.has_prior and not space.is_variational
    assert (
        _run("generate", "interpolate", m, w[0], w[1], "--steps", "3", "--out", tmp_path / "i", *GL)
        == 0
    )
    _check_outputs(tmp_path / "i", 3)
    # No prior: random needs reference sounds, and says so.
    assert _run("generate", "random", m, "--out", tmp_path / "r", *GL) == 2
    assert "not variational" in capsys.readouterr().err
    with pytest.raises(GenerationError, match="--variations"):
        S.plan_reconstruct(space, S.load_inputs(w[:1], space.codec), variations=2)
    folder = w[0].parent
    assert (
        _run(
            "generate",
            "random",
            m,
            "--count",
            "4",
            "--reference",
            folder,
            "--out",
            tmp_path / "r",
            *GL,
        )
        == 0
    )
    man = _check_outputs(tmp_path / "r", 4)
    assert "empirical" in man["settings"]["distribution"]
    assert (
        _run(
            "generate",
            "sweep",
            m,
            "--values",
            "-1,1",
            "--reference",
            folder,
            "--out",
            tmp_path / "s",
            "--no-spectrograms",
            *GL,
        )
        == 0
    )
    man = _manifest(tmp_path / "s")
    assert len(man["settings"]["dims"]) == 16 and len(man["sounds"]) == 32


def test_random_from_a_code_too_large_to_fit_does_not_suggest_fit_codes(
    tmp_path: Path, small_codec: CodecConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    # fit-codes refuses such a code (more than MAX_FITTED_DIM values): the error names only the
    # way that works, reference sounds.
    from samplegen.models.artifact import save_model
    from samplegen.models.code_distribution import MAX_FITTED_DIM
    from samplegen.models.registry import build_model

    model = build_model("frame_ae", {"frame_latent": 32, "hidden": 16}, small_codec.shape)
    assert np.prod(model.latent_shape) > MAX_FITTED_DIM
    saved = save_model(tmp_path / "outer", model, codec=small_codec)
    assert _run("generate", "random", saved, "--out", tmp_path / "r", *GL) == 2
    err = capsys.readouterr().err
    assert "--reference" in err and "fit-codes" not in err


def test_a_folder_used_again_holds_only_the_new_commands_files(
    trained_models: TrainedModels, tmp_path: Path
) -> None:
    m, w = trained_models.combined, trained_models.wavs
    out = tmp_path / "sounds"
    assert _run("generate", "interpolate", m, w[0], w[1], "--steps", "4", "--out", out, *GL) == 0
    (out / "my_notes.txt").write_text("not ours")
    assert _run("generate", "random", m, "--count", "2", "--out", out, *GL) == 0
    man = _manifest(out)
    listed = {"manifest.json", "my_notes.txt"}
    for item in [*man["sounds"], *man["inputs"]]:
        listed |= {item[k] for k in ("wav", "png") if k in item}
    assert {p.name for p in out.iterdir()} == listed
    assert len(man["sounds"]) == 2


def test_a_bad_file_in_a_folder_is_skipped_and_listed_one_named_is_refused(
    trained_models: TrainedModels, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    m, w = trained_models.combined, trained_models.wavs
    folder = tmp_path / "mine"
    folder.mkdir()
    for wav in w[:2]:
        shutil.copy(wav, folder / wav.name)
    (folder / "corrupt.wav").write_bytes(b"RIFF not really audio")
    out = tmp_path / "r"
    assert _run("generate", "reconstruct", m, folder, "--out", out, *GL) == 0
    err = capsys.readouterr().err
    assert "skipped: " in err and "corrupt.wav" in err
    man = _manifest(out)
    assert len(man["inputs"]) == 2
    (skipped,) = man["settings"]["skipped_inputs"]
    assert skipped["file"] == str(folder / "corrupt.wav") and skipped["reason"]
    # Named on the command line, the same file is an error.
    assert _run("generate", "reconstruct", m, folder / "corrupt.wav", "--out", out, *GL) == 2
    assert "corrupt.wav" in capsys.readouterr().err


def test_user_errors_are_one_line_messages(
    trained_models: TrainedModels, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    m, w = trained_models.combined, trained_models.wavs
    assert (
        _run("generate", "interpolate", m, w[0], w[1], "--steps", "1", "--out", tmp_path, *GL) == 2
    )
    assert "--steps" in capsys.readouterr().err
    assert _run("generate", "reconstruct", tmp_path / "nope", w[0], "--out", tmp_path) == 2
    assert "nope" in capsys.readouterr().err


def _one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 or all(line.startswith("skipped: ") for line in err[:-1]), err
    return err[-1]


def test_bad_settings_and_arguments_are_refused_in_one_line_before_any_sound(
    trained_models: TrainedModels, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Each of these used to end in a traceback, write a sound the option did not ask for, or
    # overwrite one sound's file with another's.
    m, w = trained_models.combined, trained_models.wavs
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "corrupt_C4.wav").write_bytes(b"RIFF not really audio")
    out = tmp_path / "out"
    cases: list[tuple[list[object], str]] = [
        (["interpolate", m, folder, w[1]], f"A {folder}: is a folder; give one sound file"),
        (["perturb", m, folder], f"A {folder}: is a folder; give one sound file"),
        (["grid", m, w[0], w[1], folder, w[2]], f"CORNER 3 {folder}: is a folder"),
        (["random", m, "--griffin-lim-iters", "-2"], "--griffin-lim-iters: must be >= 0, got -2"),
        (["sweep", m, "--dims", ""], "--dims: give at least one dimension"),
        (["sweep", m, "--values", ""], "--values: give at least one value"),
        (["perturb", m, w[0], "--levels", ""], "--levels: give at least one level"),
        (["sweep", m, "--dims", "0,0"], "--dims: 0 given more than once"),
        (["sweep", m, "--values", "1,0.5,1"], "--values: 1 given more than once"),
        (["sweep", m, "--values", "nan"], "--values: must be finite numbers, got [nan]"),
        (["sweep", m, "--values", "1e400"], "--values: must be finite numbers, got [inf]"),
        (["random", m, "--temperature", "nan"], "--temperature: must be a finite number >= 0"),
        (["perturb", m, w[0], "--levels", "inf"], "--levels: must be finite numbers >= 0"),
        (
            ["random", m, "--reference", folder, w[0]],
            "--reference: 1 usable sound(s) among the files given (1 skipped); give at least 2",
        ),
    ]
    for argv, message in cases:
        assert _run("generate", *argv, "--out", out) == 2, argv
        assert _one_error(capsys).startswith(f"samplegen: error: {message}"), argv
        assert not out.exists(), argv
    with pytest.raises(SystemExit):
        _run("generate", "random", m, "--reference", w[0], "--reference-limit", "0")
    assert "argument --reference-limit: must be >= 1, got 0" in capsys.readouterr().err


def test_examples_for_a_run_folder_with_a_non_variational_model(
    trained_models: TrainedModels, tmp_path: Path
) -> None:
    m, w = trained_models.outer, trained_models.wavs
    out = tmp_path / "sounds"
    argv = [
        "generate",
        "examples",
        m,
        *w[:5],
        "--grid-size",
        "2",
        "--no-spectrograms",
        "--out",
        out,
    ]
    assert _run(*argv, *GL) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(S.KINDS)
    assert len(_manifest(out / "grid")["sounds"]) == 4
    assert len(_manifest(out / "reconstruct")["sounds"]) == 5  # no variations without a posterior
    assert "empirical" in _manifest(out / "random")["settings"]["distribution"]


def test_random_draws_from_the_fitted_codes_when_the_model_has_them(
    trained_models: TrainedModels,
    fitted_model: tuple[Path, CodeDistribution],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    m, fitted = fitted_model
    space = load_space(m)
    assert space.fitted is not None and space.fitted.source == "the 12 test notes"
    argv = ["generate", "random", m, "--count", "3", "--seed", "5", "--no-spectrograms", *GL]
    assert _run(*argv, "--out", tmp_path / "auto") == 0
    auto = _manifest(tmp_path / "auto")
    assert "fitted to the training codes (the 12 test notes)" in auto["settings"]["distribution"]
    assert auto["model"]["fitted_codes"] == "the 12 test notes"
    want = fitted.sample(3, 1.0, np.random.default_rng(5))
    np.testing.assert_allclose([s["latent"] for s in auto["sounds"]], want, rtol=1e-6)
    assert _run(*argv, "--distribution", "fitted", "--out", tmp_path / "fit") == 0
    assert _manifest(tmp_path / "fit")["sounds"] == auto["sounds"]

    # The prior is still there when asked for, and differs.
    assert _run(*argv, "--distribution", "prior", "--out", tmp_path / "prior") == 0
    prior = _manifest(tmp_path / "prior")
    assert prior["settings"]["distribution"] == "prior"
    assert prior["sounds"][0]["latent"] != auto["sounds"][0]["latent"]
    # A model without fitted codes falls back to its prior, unless `fitted` is demanded.
    plain = S.plan_random(load_space(trained_models.combined), count=2)
    assert plain.settings["distribution"] == "prior"
    old = ["generate", "random", trained_models.combined, "--distribution", "fitted"]
    assert _run(*old, "--out", tmp_path / "y", *GL) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "samplegen fit-codes" in err[0], err
    folder = trained_models.wavs[0].parent
    assert _run(*argv, "--distribution", "prior", "--reference", folder, "--out", tmp_path) == 2
    assert "give one or the other" in capsys.readouterr().err

    # Sweeps and perturbations measure spread in the training codes' units.
    sweep = S.plan_sweep(space, values=(-1.0, 1.0))
    assert sweep.stats is not None and sweep.stats.source.startswith("training codes")
    np.testing.assert_allclose(sweep.sounds[1].latent[0], fitted.mean[0] + fitted.std[0], rtol=1e-5)
    np.testing.assert_allclose(sweep.sounds[1].latent[1:], fitted.mean[1:], rtol=1e-5)


def test_a_stored_distribution_that_does_not_fit_the_model_is_refused(
    trained_models: TrainedModels, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from samplegen.models.artifact import load_model, save_model
    from samplegen.models.code_distribution import CODE_DISTRIBUTION_KEY, fit_codes

    loaded = load_model(trained_models.combined)
    wrong = fit_codes(np.random.default_rng(0).normal(size=(9, 5)), "five latents").to_dict()
    m = save_model(
        tmp_path / "wrong",
        loaded.model,
        codec=loaded.codec,
        extra={CODE_DISTRIBUTION_KEY: wrong},
    )
    assert _run("generate", "random", m, "--out", tmp_path / "r", *GL) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "do not fit a model with 3 latents" in err[0], err


def test_a_plain_auto_encoder_with_fitted_codes_samples_them_without_references(
    trained_models: TrainedModels, tmp_path: Path
) -> None:
    from samplegen.models.artifact import load_model, save_model
    from samplegen.models.code_distribution import CODE_DISTRIBUTION_KEY, fit_model_codes

    loaded = load_model(trained_models.outer)
    space = load_space(trained_models.outer)
    x = np.stack([i.encoded for i in S.load_inputs(trained_models.wavs, space.codec)])
    fitted = fit_model_codes(loaded.model, x, "12 notes")
    assert fitted is not None and fitted.dim == 128 and fitted.components == 1
    m = save_model(
        tmp_path / "outer",
        loaded.model,
        codec=loaded.codec,
        extra={CODE_DISTRIBUTION_KEY: fitted.to_dict()},
    )
    argv = ["generate", "examples", m, *trained_models.wavs[:5], "--grid-size", "2"]
    assert _run(*argv, "--no-spectrograms", "--out", tmp_path / "ex", *GL) == 0
    random = _manifest(tmp_path / "ex" / "random")
    assert "fitted to the training codes (12 notes)" in random["settings"]["distribution"]
    assert random["inputs"] == []  # no reference sounds were needed
