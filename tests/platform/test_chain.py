"""The chained study on a real dataset: outer study -> `samplegen tune vae` -> combined model."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from dataset_helpers import SMALL, instrument_folder
from tune_helpers import TINY_OUTER_SPACE, TINY_VAE_SPACE

from samplegen.cli.main import main
from samplegen.models.artifact import load_model
from samplegen.models.base import SampleModel
from samplegen.models.code_distribution import stored_distribution
from samplegen.models.combined import CombinedModel
from samplegen.models.frame_decoder import FrameDecoder
from samplegen.models.vae import VAE
from samplegen.platform.chain import ChainError, chain_study_data, resolve_outer
from samplegen.platform.datasets import load_dataset, prepare_dataset
from samplegen.platform.encoded import encode_dataset, load_encoded
from samplegen.platform.study import StudyConfig, load_study_data, run_study

FAST = ["--stall-window", "0", "--overfit-limit", "0", "--quiet"]


def _chain(model: SampleModel) -> tuple[CombinedModel, VAE]:
    """A combined model `tune vae` exported, and its inner VAE."""
    assert isinstance(model, CombinedModel) and isinstance(model.inner, VAE)
    return model, model.inner


@pytest.fixture(scope="module")
def outer_study(tmp_path_factory: pytest.TempPathFactory, ray_session: None) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("chain")
    instrument_folder(root / "src", 10)
    ds = prepare_dataset(root / "src", root / "ds", SMALL, augment_mixes=4, echo=None)
    (root / "outer.yaml").write_text(TINY_OUTER_SPACE)
    args = ["tune", "outer", "--data", str(ds), "--name", "outer", "--storage", str(root)]
    args += ["--model", "frame_ae", "--space", str(root / "outer.yaml"), "--trials", "2"]
    assert main([*args, "--epochs", "3", *FAST]) == 0
    return root, ds


def vae_args(root: Path, name: str, trials: int) -> list[str]:
    """`samplegen tune vae` over the module's outer study, with the tiny VAE space."""
    (root / "vae.yaml").write_text(TINY_VAE_SPACE)
    outer = str(root / "outer")
    args = ["tune", "vae", "--outer", outer, "--name", name, "--storage", str(root)]
    return [*args, "--space", str(root / "vae.yaml"), "--trials", str(trials)]


def test_tune_vae_selects_on_the_end_to_end_loss_and_exports_a_combined_model(
    outer_study: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root, ds = outer_study
    args = [*vae_args(root, "vae", trials=2), "--refine-steps", "20"]
    assert main([*args, "--epochs", "4", "--search", "random", *FAST]) == 0
    out = capsys.readouterr().out
    assert "best combined model" in out

    # The encodings come from the outer study's dataset and keep its split.
    enc = load_encoded(root / "vae-encoded")
    assert enc.info["dataset"] == str(ds)
    assert all(m["split"] == "train" for m in enc.splits["train"].meta)
    assert not {m["group"] for m in enc.splits["train"].meta if not m["augmented"]} & {
        m["group"] for m in enc.splits["test"].meta
    }

    # The objective is the end-to-end loss: recompute it from the exported combined model.
    rows = pq.read_table(root / "vae" / "results.parquet").to_pylist()
    assert len(rows) == 2 and all(r["status"] == "completed" for r in rows)
    best = min(rows, key=lambda r: r["best_val_loss"])
    combined = load_model(root / "vae" / "best_combined")
    assert combined.meta.name == "combined" and combined.codec == SMALL
    model, vae = _chain(combined.model)
    val = load_dataset(ds, splits=("validation",)).splits["validation"].x
    with torch.no_grad():
        recon = model.reconstruct(torch.from_numpy(val)).numpy()
    e2e = float(((recon - val) ** 2).reshape(len(val), -1).sum(1).mean())
    # The study selects without refinement; the export refines each code (--refine-steps 20).
    assert vae.hparams.refine_steps == 20
    amortized = model.decode(model.encode_amortized(torch.from_numpy(val)))
    plain = float(((amortized.detach().numpy() - val) ** 2).reshape(len(val), -1).sum(1).mean())
    assert plain == pytest.approx(best["best_val_loss"], rel=1e-3)
    assert e2e != plain
    # ...which is in the outer representation's units, not the encoded space's.
    results = json.loads((Path(best["path"]) / "result.json").read_text().splitlines()[-1])
    assert results["latent_val_loss"] != pytest.approx(results["val_loss"], rel=1e-3)
    assert np.isfinite(e2e)

    # Random sounds get the Gaussian of the encoder's means of the training notes' encodings (the
    # dataset's mixes train the VAE, but are not notes a random sound should resemble).
    fitted = stored_distribution(combined.meta.extra, 3)
    train = enc.splits["train"]
    notes = train.z[[not m["augmented"] for m in train.meta]]
    assert 0 < len(notes) < len(train.z)
    assert fitted is not None and fitted.count == len(notes)
    with torch.no_grad():
        means = vae.encode_amortized(torch.from_numpy(notes))
    np.testing.assert_allclose(fitted.mean, means.numpy().mean(0), rtol=1e-4, atol=1e-5)


def _refined_val_loss(model_dir: Path, ds: Path) -> float:
    """The validation loss of a combined model as it encodes (codes refined), in outer units."""
    model = load_model(model_dir).model.eval()
    val = load_dataset(ds, splits=("validation",)).splits["validation"].x
    recon = model.reconstruct(torch.from_numpy(val)).detach().numpy()
    return float(((recon - val) ** 2).reshape(len(val), -1).sum(1).mean())


def test_rescore_keeps_the_trial_whose_refined_codes_fit_validation_best(
    outer_study: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root, ds = outer_study
    args = [*vae_args(root, "vae_rescore", trials=3), "--refine-steps", "5"]
    assert main([*args, "--rescore", "0"]) == 2
    assert "--rescore: must be >= 1, got 0" in capsys.readouterr().err
    assert main([*vae_args(root, "vae_rescore", trials=3), "--rescore", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--rescore" in err[0] and "--refine-steps" in err[0]

    args += ["--epochs", "2", "--search", "random", *FAST]
    assert main([*args, "--rescore", "2"]) == 0
    study = root / "vae_rescore"
    record = json.loads((study / "refined_choice.json").read_text())
    rows = pq.read_table(study / "results.parquet").to_pylist()
    by_study = sorted(rows, key=lambda r: r["best_val_loss"])
    # The study's best two trials, in the study's order, each scored with refined codes.
    assert [t["trial_id"] for t in record["trials"]] == [r["trial_id"] for r in by_study[:2]]
    assert record["refine_steps"] == 5
    chosen = min(record["trials"], key=lambda t: t["refined_loss"])
    assert record["chosen"] == chosen["trial_id"]
    # The exported model is that trial, and its recorded score is what it does as it encodes.
    combined = study / "best_combined"
    assert load_model(combined).meta.extra["trial_id"] == chosen["trial_id"]
    assert load_model(combined).meta.extra["refined_choice"] == record
    assert _refined_val_loss(combined, ds) == pytest.approx(chosen["refined_loss"], rel=1e-3)
    assert json.loads((study / "best_config.json").read_text())["trial_id"] == chosen["trial_id"]

    # Scores recorded by an earlier (here: interrupted) choice are kept, not computed again; when
    # they favour another trial than the study's best, the study's best model and configuration
    # follow the choice too.
    runner_up = record["trials"][1]
    runner_up["refined_loss"] = 0.0
    record["chosen"] = None
    (study / "refined_choice.json").write_text(json.dumps(record))
    capsys.readouterr()
    assert main([*args, "--rescore", "2", "--resume"]) == 0
    assert "(refined)" not in capsys.readouterr().out
    assert (
        json.loads((study / "refined_choice.json").read_text())["chosen"] == runner_up["trial_id"]
    )
    assert json.loads((study / "best_config.json").read_text())["trial_id"] == runner_up["trial_id"]
    best_inner = load_model(study / "best_model")
    assert best_inner.meta.extra["trial_id"] == runner_up["trial_id"]
    exported = _chain(load_model(combined).model)[1].state_dict()
    for key, value in best_inner.model.state_dict().items():
        torch.testing.assert_close(exported[key], value)


def test_tune_vae_trains_on_eq_copies_of_the_training_notes(
    outer_study: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root, ds = outer_study
    args = vae_args(root, "vae_eq", trials=1)
    assert main([*args, "--eq-variants", "-1"]) == 2
    assert "eq variants: must be >= 0, got -1" in capsys.readouterr().err
    assert main([*args, "--eq-db", "99", "--eq-variants", "1"]) == 2
    assert "eq db: must be in [0, 24]" in capsys.readouterr().err

    assert main([*args, "--eq-variants", "2", "--eq-db", "6", "--epochs", "2", *FAST]) == 0
    enc = load_encoded(root / "vae_eq-encoded")
    data = load_dataset(ds, splits=("train",)).splits["train"]
    notes = [m["name"] for m in data.meta if not m["augmented"]]
    train_names = [m["name"] for m in enc.splits["train"].meta]
    assert len(train_names) == len(data.meta) + 2 * len(notes)
    assert {f"{n}#eq{k}" for n in notes for k in (1, 2)} <= set(train_names)
    assert enc.info["eq"] == {"variants": 2, "db": 6.0, "seed": 0}
    # The trial trained on every row; the stored codes are the notes' alone.
    fitted = stored_distribution(load_model(root / "vae_eq" / "best_combined").meta.extra, 3)
    assert fitted is not None and fitted.count == len(notes)


def test_a_frame_decoder_gets_its_frame_count_from_the_outer_model(
    outer_study: tuple[Path, Path],
) -> None:
    root, _ = outer_study
    space = TINY_VAE_SPACE + "  decoder: {type: const, value: frames}\n"
    space += "  frame_hidden: {type: const, value: 16}\n"
    (root / "vae_frames.yaml").write_text(space)
    args = ["tune", "vae", "--outer", str(root / "outer"), "--name", "vae_frames"]
    args += ["--storage", str(root), "--space", str(root / "vae_frames.yaml"), "--trials", "1"]
    assert main([*args, "--epochs", "2", *FAST]) == 0
    combined, vae = _chain(load_model(root / "vae_frames" / "best_combined").model)
    values, frames = combined.outer.latent_shape
    hp = vae.hparams
    assert (hp.decoder, hp.frames) == ("frames", frames)
    assert isinstance(vae.decoder, FrameDecoder)
    last = vae.decoder.net[-1]
    assert isinstance(last, torch.nn.Linear) and last.out_features == values


def test_a_chained_study_on_a_storage_uri_over_an_outer_study_on_one(
    outer_study: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # file:// takes the code paths of s3:// and gs://: the outer study's best model, the trials'
    # checkpoints for rescoring and the exported best model are copied, not opened in place.
    root, _ = outer_study
    (root / "vae.yaml").write_text(TINY_VAE_SPACE)
    # With an option after the path, as an s3:// URI of a custom endpoint has them: study names
    # and file names join the path, not the options.
    option = "?use_mmap=false"
    store = f"file://{root}/remote{option}"
    args = ["tune", "vae", "--outer", f"file://{root}/outer{option}", "--name", "uri"]
    args += ["--storage", store, "--space", str(root / "vae.yaml"), "--trials", "2"]
    assert main([*args, "--epochs", "2", *FAST]) == 2
    err = capsys.readouterr().err
    assert "pass --encoded DIR" in err and not (root / "remote").exists()

    args += ["--encoded", str(root / "uri-enc"), "--refine-steps", "5", "--rescore", "2"]
    assert main([*args, "--epochs", "2", *FAST]) == 0
    assert f"best combined model: file://{root}/remote/uri/best_combined{option}" in (
        capsys.readouterr().out
    )
    combined, vae = _chain(load_model(root / "remote" / "uri" / "best_combined").model)
    assert vae.hparams.refine_steps == 5
    choice = json.loads((root / "remote" / "uri" / "best_config.json").read_text())
    assert len(choice["refined_choice"]["trials"]) == 2
    record = json.loads((root / "remote" / "uri" / "refined_choice.json").read_text())
    assert record == choice["refined_choice"]
    # The outer part is the outer study's best model.
    outer = load_model(root / "outer" / "best_model").model.state_dict()
    for name, value in combined.outer.state_dict().items():
        assert torch.equal(value, outer[name]), name
    assert (root / "uri-enc-downloads" / "outer" / "config.json").is_file()


def test_trials_get_the_outer_model_by_value_not_by_its_path(
    outer_study: tuple[Path, Path], tmp_path: Path
) -> None:
    # On a cluster, the outer model's folder on the driver may not exist on the node that runs a
    # trial: the trials and the encoder must get the model itself, not its path.
    root, ds = outer_study
    outer = shutil.copytree(root / "outer" / "best_model", tmp_path / "outer")
    data = chain_study_data(encode_dataset(outer, ds, tmp_path / "enc", echo=None), ds)
    shutil.rmtree(outer)
    (tmp_path / "vae.yaml").write_text(TINY_VAE_SPACE)
    config = StudyConfig(
        name="byvalue",
        model="vae",
        trials=1,
        epochs=2,
        storage=str(tmp_path / "studies"),
        space=str(tmp_path / "vae.yaml"),
        stall_window=None,
        overfit_limit=None,
        export_best=False,
        progress=False,
    )
    result = run_study(config, data)
    assert [r["status"] for r in result.rows] == ["completed"]
    assert np.isfinite(result.rows[0]["best_val_loss"])


def test_outer_resolution_errors(tmp_path: Path) -> None:
    with pytest.raises(ChainError, match="neither a model directory"):
        resolve_outer(tmp_path)
    (tmp_path / "study.json").write_text("{}")
    with pytest.raises(ChainError, match="no exported best model"):
        resolve_outer(tmp_path)


def test_a_resume_on_other_encodings_is_refused_before_it_encodes(
    outer_study: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = outer_study
    args = [*vae_args(root, "again", trials=1), "--epochs", "1", *FAST]
    assert main([*args, "--resume"]) == 2
    assert "no study to resume" in capsys.readouterr().err
    assert not (root / "again-encoded").exists()  # nothing encoded for a study that is not there
    assert main(args) == 0
    capsys.readouterr()
    encodings = root / "again-encoded" / "encoded.json"
    before = encodings.read_bytes(), encodings.stat().st_mtime_ns
    # Other EQ copies make other encodings: refused by name, and the study's own are untouched.
    assert main([*args, "--resume", "--eq-variants", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot resume on other data" in err[0] and "--eq-*" in err[0]
    assert (encodings.read_bytes(), encodings.stat().st_mtime_ns) == before
    assert main([*args, "--resume"]) == 0
    assert "up to date, reusing them" in capsys.readouterr().out


def test_a_vae_space_too_large_for_the_outer_code_is_refused_before_it_encodes(
    outer_study: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # Every trial used to be rejected one by one, after the encoding pass.
    root, _ = outer_study
    args = [*vae_args(root, "toolarge", trials=2), "--epochs", "1", *FAST]
    assert main([*args, "--max-params", "1000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1
        and "every corner of its space (the ends of each range, every choice) exceeds max_params=1,000"
        in err[0]
    ), err
    assert "the smallest of its corners has" in err[0] and "ratio=0.3" in err[0]
    assert not (root / "toolarge-encoded").exists()


def test_a_vae_space_partly_over_the_limit_is_noted_and_runs(tmp_path: Path) -> None:
    from samplegen.models.registry import count_params
    from samplegen.platform.chain import check_inner_fits

    (tmp_path / "vae.yaml").write_text(TINY_VAE_SPACE)
    config = StudyConfig(name="v", model="vae", space=str(tmp_path / "vae.yaml"))
    code = (8, 5)  # an outer code of 8 values x 5 frames
    fixed = {"latent": 3, "depth": 2}
    small = count_params("vae", {**fixed, "ratio": 0.3}, (40,))
    large = count_params("vae", {**fixed, "ratio": 0.6}, (40,))
    said: list[str] = []
    check_inner_fits(dataclasses.replace(config, max_params=large), code, said.append)
    assert said == []
    check_inner_fits(dataclasses.replace(config, max_params=large - 1), code, said.append)
    assert len(said) == 1 and "1 of the 2 corners of its space exceed" in said[0]
    assert f"{large:,} parameters: ratio=0.6" in said[0] and "shape [8, 5] (40 values)" in said[0]
    with pytest.raises(ChainError, match=f"the smallest of its corners has {small:,}"):
        check_inner_fits(dataclasses.replace(config, max_params=small - 1), code, said.append)
    check_inner_fits(dataclasses.replace(config, max_params=None), code, said.append)
    assert len(said) == 1


def test_tune_vae_cli_errors_are_one_line(
    outer_study: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root, _ = outer_study
    args = ["tune", "vae", "--outer", str(root / "outer"), "--name", "bad", "--storage", str(root)]
    assert main([*args, "--model", "frame_ae"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not an inner model" in err[0]
    assert main([*args, "--refine-steps", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--refine-steps: must be >= 0" in err[0]
    assert main([*args, "--model", "bounded_ae", "--refine-steps", "5", "--rescore", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--rescore: the inner model 'bounded_ae' does not refine" in err[0]
    # An ASHA rung inside the space's KL warm-up is refused before the dataset is encoded.
    space = root / "warm_vae.yaml"
    space.write_text(
        "model: vae\nparams:\n  latent: {type: const, value: 3}\n"
        "  warmup: {type: const, value: linear}\n  warmup_epochs: {type: const, value: 10}\n"
    )
    warm = [*args, "--space", str(space), "--scheduler", "asha", "--epochs", "30"]
    assert main(warm) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--asha-grace" in err[0] and "until epoch 10" in err[0]
    # So is a resource request Ray could never grant.
    assert main([*args, "--gpus-per-trial", "-2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["samplegen: error: --gpus-per-trial: must be >= 0, got -2"]
    assert not (root / "bad-encoded").exists() and not (root / "bad").exists()
    # A folder of other files as --encoded used to be replaced by the encodings, whatever it held
    # (the outer study itself, given by mistake, was lost).
    mine = root / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("precious")
    assert main([*args, "--encoded", str(mine)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds other files than a chain's encodings" in err[0]
    assert (mine / "thesis.txt").read_text() == "precious" and len(list(mine.iterdir())) == 1
    # A study name already taken is refused before the encoding pass, which would replace the
    # existing study's encodings.
    taken = ["tune", "vae", "--outer", str(root / "outer"), "--name", "outer"]
    assert main([*taken, "--storage", str(root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a study named 'outer' already exists" in err[0]
    assert not (root / "outer-encoded").exists()
    # The dataset an outer study ran on is recorded absolute; one recorded relative (as before)
    # that is not there from here is named as the study's, with what to do.
    recorded = json.loads((root / "outer" / "study.json").read_text())
    assert load_study_data(os.path.relpath(recorded["data"]["source"])).source == str(
        recorded["data"]["source"]
    )
    relative = root / "relative"
    shutil.copytree(root / "outer", relative)
    recorded["data"]["source"] = "data/stft"
    (relative / "study.json").write_text(json.dumps(recorded))
    assert main([*args[:3], str(relative), *args[4:], "--trials", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data/stft (its study.json), is not a samplegen dataset" in err[0]
    assert "pass --data DATASET" in err[0]


@pytest.mark.parametrize(
    ("outer_name", "outer_hparams", "shape"),
    [
        ("frame_ae", {"frame_latent": 3, "hidden": 8}, (33, 6)),
        (
            "harmonic_ae",
            {
                "frame_latent": 3,
                "hidden": 8,
                "harmonics": 4,
                "noise_bands": 4,
                "n_fft": 256,
                "hop": 128,
            },
            (4096,),
        ),
    ],
)
def test_the_end_to_end_loss_is_the_outer_models_own_objective(
    outer_name: str, outer_hparams: dict, shape: tuple[int, ...], tmp_path: Path
) -> None:
    """SSE for an outer model trained on SSE; the spectral distance for harmonic_ae, whose
    waveform error would select VAEs by phase."""
    from samplegen.dsp.config import CodecConfig
    from samplegen.dsp.metrics import multi_resolution_stft_distance
    from samplegen.models.artifact import save_model
    from samplegen.models.registry import build_model
    from samplegen.platform.trainable import EndToEnd

    torch.manual_seed(0)
    outer = build_model(outer_name, outer_hparams, shape).eval()
    codec = CodecConfig(representation="wave") if len(shape) == 1 else CodecConfig()
    save_model(tmp_path / "outer", outer, codec=codec, dataset_fingerprint="x", metrics={})
    x = torch.rand(5, *shape) * 2 - 1 if len(shape) == 1 else torch.rand(5, *shape)
    with torch.no_grad():
        z = outer.encode(x).flatten(1)
    inner = build_model("vae", {"latent": 2, "depth": 2}, (z.shape[1],))
    got = EndToEnd(str(tmp_path / "outer"), x.numpy(), "cpu").loss(inner, z.numpy(), 2)
    with torch.no_grad():
        x_hat = outer.decode(inner.reconstruct(z).view(-1, *outer.latent_shape))
    sse = float((x_hat - x).pow(2).flatten(1).sum(1).mean())
    if outer_name == "harmonic_ae":
        spectral = float(multi_resolution_stft_distance(x_hat, x).mean())
        assert got == pytest.approx(spectral, rel=1e-4)
        assert got != pytest.approx(sse, rel=1e-2)
    else:
        assert got == pytest.approx(sse, rel=1e-4)
