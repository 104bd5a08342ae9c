"""`samplegen evaluate` on real tiny datasets and briefly trained tiny models (no mocks)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from dataset_helpers import SMALL, instrument_folder

from samplegen.cli.main import main
from samplegen.errors import SamplegenError
from samplegen.models.artifact import load_model, save_model
from samplegen.models.base import InnerModel, SampleModel
from samplegen.models.combined import CombinedModel
from samplegen.models.registry import build_model
from samplegen.platform.datasets import load_dataset, prepare_dataset
from samplegen.platform.evaluation import evaluate_model
from samplegen.platform.evaluation.jsonsafe import NullReasons, sanitize
from samplegen.platform.evaluation.sections import (
    group_interval,
    overfit_section,
    per_category,
    worst_samples,
)
from samplegen.platform.evaluation.spectral import audio_section, magnitude_section
from samplegen.platform.pca import pca_reference
from samplegen.platform.progress_parts import progress_folder

SECTIONS = (
    "schema", "model", "dataset", "settings", "loss", "spectral", "per_category", "worst",
    "latent", "overfit", "null_reasons", "files",
)  # fmt: skip
WAVE = SMALL.replace(representation="wave")


def _train(model: SampleModel, x: np.ndarray, steps: int = 15, seed: int = 0) -> None:
    torch.manual_seed(seed)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    xt = torch.from_numpy(np.ascontiguousarray(x))
    model.train()
    for _ in range(steps):
        out = model(xt)
        loss = model.loss(xt, out).total
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


@pytest.fixture(scope="module")
def world(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two datasets (STFT, wave) of 10 instruments x 3 notes, and three trained tiny models."""
    root = tmp_path_factory.mktemp("evaluate")
    instrument_folder(root / "audio", instruments=10)
    paths: dict[str, Path] = {"root": root}
    splits = (0.6, 0.2, 0.2)
    paths["stft_data"] = prepare_dataset(
        root / "audio", root / "stft", SMALL, splits=splits, echo=None
    )
    paths["wave_data"] = prepare_dataset(
        root / "audio", root / "wave", WAVE, splits=splits, echo=None
    )
    stft = load_dataset(paths["stft_data"], splits=["train"])
    stft_train = stft.splits["train"].x
    wave_train = load_dataset(paths["wave_data"], splits=["train"]).splits["train"].x

    torch.manual_seed(0)
    outer = build_model("conv2d_ae", {"layers": 3, "kernels": 4, "kernel_size": 4}, SMALL.shape)
    _train(outer, stft_train)
    paths["outer"] = save_model(
        root / "outer", outer, codec=SMALL, dataset_fingerprint=stft.fingerprint
    )

    inner = build_model("vae", {"latent": 3, "depth": 2}, (math.prod(outer.latent_shape),))
    assert isinstance(inner, InnerModel)
    combined = CombinedModel.from_parts(outer, inner)
    for p in combined.outer.parameters():
        p.requires_grad_(False)
    _train(combined, stft_train)
    paths["combined"] = save_model(root / "combined", combined, codec=SMALL)

    wave = build_model("audio_conv_ae", {"depth": 2, "channels": 4, "kernel_size": 16}, WAVE.shape)
    _train(wave, wave_train)
    paths["wave"] = save_model(root / "wave_model", wave, codec=WAVE)

    paths["inner_only"] = save_model(root / "inner_only", inner, codec=SMALL)
    # Same shape as the STFT data, other codec settings (mu): must be refused.
    paths["other_codec"] = save_model(root / "other_codec", outer, codec=SMALL.replace(mu=16.0))
    return paths


def _walk(value: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [kv for k, v in value.items() for kv in _walk(v, f"{path}.{k}" if path else k)]
    if isinstance(value, list):
        return [kv for i, v in enumerate(value) for kv in _walk(v, f"{path}.{i}")]
    return [(path, value)]


FIGURES = ("loss", "spectral", "per_category", "worst", "latent", "overfit")


def _assert_same_figures(
    a: dict[str, Any], b: dict[str, Any], keys: tuple[str, ...], *, rel: float, abs_: float
) -> None:
    """The two evaluations' `keys` sections hold the same values (floats within rel/abs_)."""
    for key in keys:
        left, right = _walk(a[key]), _walk(b[key])
        assert [p for p, _ in left] == [p for p, _ in right], key
        for (path, u), (_, v) in zip(left, right, strict=True):
            assert u == (pytest.approx(v, rel=rel, abs=abs_) if isinstance(v, float) else v), path


def _check_written(metrics: dict[str, Any], out: Path) -> dict[str, Any]:
    on_disk = json.loads((out / "metrics.json").read_text())  # strict JSON: no NaN allowed below
    for path, value in _walk(on_disk):
        if isinstance(value, float):
            assert math.isfinite(value), path
        if value is None:
            assert path in on_disk["null_reasons"], f"{path} is null without a reason"
    for key in SECTIONS:
        assert key in on_disk, key
    summary = (out / "summary.md").read_text()
    for heading in (
        "## Loss",
        "## Spectral",
        "## Per category",
        "worst samples",
        "## Latent",
        "## Overfit",
    ):
        assert heading in summary
    assert on_disk["loss"] == json.loads(json.dumps(metrics["loss"]))
    return on_disk


def test_outer_stft_model_every_section_and_hand_checked_loss(world: dict[str, Path]) -> None:
    out = world["root"] / "eval_outer"
    metrics = evaluate_model(world["outer"], world["stft_data"], "test", out, griffin_lim_iters=4)
    m = _check_written(metrics, out)

    # The loss and RMS% recomputed by hand from the saved model and the stored test split.
    x = load_dataset(world["stft_data"], splits=["test"]).splits["test"].x
    model = load_model(world["outer"]).model
    with torch.no_grad():
        recon = model.decode(model.encode(torch.from_numpy(x))).numpy()
    sse = ((recon.astype(np.float64) - x) ** 2).reshape(len(x), -1).sum(axis=1)
    values = math.prod(SMALL.shape)
    assert m["loss"]["count"] == len(x)
    assert m["loss"]["values_per_sample"] == values
    assert m["loss"]["mean"] == pytest.approx(sse.mean(), rel=1e-5)
    assert m["loss"]["max"] == pytest.approx(sse.max(), rel=1e-5)
    assert m["loss"]["rms_percent"] == pytest.approx(100 * math.sqrt(sse.mean() / values), rel=1e-5)
    # The interval is over the split's instruments (groups), and holds the point figure.
    meta = load_dataset(world["stft_data"], splits=["test"]).splits["test"].meta
    interval = m["loss"]["rms_percent_interval"]
    assert interval["groups"] == len({row["group"] for row in meta}) >= 2
    assert interval["low"] <= m["loss"]["rms_percent"] <= interval["high"]
    assert "interval over the split's instruments" in (out / "summary.md").read_text()

    assert sum(row["count"] for row in m["per_category"].values()) == len(x)
    losses = [row["loss"] for row in m["worst"]]
    assert len(losses) == min(10, len(x))
    assert losses == sorted(losses, reverse=True)
    assert losses[0] == pytest.approx(sse.max(), rel=1e-5)

    audio = m["spectral"]["audio"]
    assert audio["griffin_lim"] is True and audio["griffin_lim_iters"] == 4
    assert audio["phase_recovery_only"]["spectral_convergence_db"]["mean"] is not None
    assert m["overfit"]["ratio"] == pytest.approx(
        m["loss"]["mean"] / m["overfit"]["train_mean_loss"]
    )
    # An outer latent is large: per-dimension lists give way to a summary, with the reason.
    assert m["latent"]["dims"] == math.prod(model.latent_shape)
    assert "latent.kl_per_dim" in m["null_reasons"]
    assert "pca_reference" not in m
    assert m["model"]["trained_on_this_dataset"] is True


def test_evaluation_is_deterministic_and_defaults_to_the_model_folder(
    world: dict[str, Path],
) -> None:
    a = evaluate_model(world["outer"], world["stft_data"], griffin_lim_iters=3, batch_size=2)
    assert Path(a["files"]["metrics"]).parent == world["outer"] / "evaluation-test"
    b = evaluate_model(
        world["outer"], world["stft_data"], out=world["root"] / "again", griffin_lim_iters=3
    )
    # Different batch sizes: the same figures (Griffin-Lim seeds follow the sample, not the batch).
    _assert_same_figures(a, b, FIGURES, rel=1e-4, abs_=1e-6)


def test_an_evaluation_made_from_the_same_inputs_is_reused_only_when_asked(
    world: dict[str, Path], tmp_path: Path
) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    model = tmp_path / "outer"
    shutil.copytree(world["outer"], model)
    out = tmp_path / "eval"
    said: list[str] = []
    kw: dict[str, Any] = {"out": out, "griffin_lim_iters": 2, "echo": said.append}
    first = evaluate_model(model, world["stft_data"], reuse=True, **kw)
    assert said == [] and first["inputs"]["dataset_fingerprint"]
    stamp = (out / "metrics.json").stat().st_mtime_ns
    assert evaluate_model(model, world["stft_data"], reuse=True, **kw) == first
    assert len(said) == 1 and "holds this evaluation already" in said[0]
    assert (out / "metrics.json").stat().st_mtime_ns == stamp
    # Anything the figures follow from evaluates again: the settings, the model's weights; and
    # so does a call that does not ask to reuse.
    evaluate_model(model, world["stft_data"], reuse=True, **{**kw, "griffin_lim_iters": 3})
    evaluate_model(model, world["stft_data"], reuse=True, **kw)  # the folder holds 3's now
    assert len(said) == 1
    evaluate_model(model, world["stft_data"], reuse=True, **kw)
    assert len(said) == 2
    weights = next(p for p in model.iterdir() if p.suffix == ".safetensors")
    with safe_open(str(weights), "pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(weights)
    first_name = sorted(tensors)[0]
    tensors[first_name] = tensors[first_name] + 0.01
    save_file(tensors, str(weights), metadata=metadata)
    changed = evaluate_model(model, world["stft_data"], reuse=True, **kw)
    assert len(said) == 2 and changed["inputs"]["model_sha256"] != first["inputs"]["model_sha256"]
    stamp = (out / "metrics.json").stat().st_mtime_ns
    evaluate_model(model, world["stft_data"], **kw)
    assert len(said) == 2 and (out / "metrics.json").stat().st_mtime_ns != stamp


def test_a_stopped_evaluation_goes_on_with_the_batches_it_kept(
    world: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from samplegen.platform.evaluation.inference import SplitOutputs
    from samplegen.platform.evaluation.kept import KeptBatches

    kw: dict[str, Any] = {"split": "test", "griffin_lim_iters": 2, "batch_size": 2}
    whole = evaluate_model(world["combined"], world["stft_data"], out=tmp_path / "whole", **kw)
    assert not (tmp_path / ".whole.progress").exists()  # a finished evaluation keeps no parts

    # Ctrl-C once five batches are kept: the test split's three (6 notes), then two of train's.
    keep, kept = KeptBatches.keep, []

    def keep_then_stop(self: KeptBatches, split: str, start: int, outputs: Any) -> None:
        keep(self, split, start, outputs)
        kept.append((split, start))
        if len(kept) == 5:
            raise KeyboardInterrupt

    monkeypatch.setattr(KeptBatches, "keep", keep_then_stop)
    with pytest.raises(KeyboardInterrupt):
        evaluate_model(world["combined"], world["stft_data"], out=tmp_path / "stopped", **kw)
    monkeypatch.undo()
    assert kept == [("test", 0), ("test", 2), ("test", 4), ("train", 0), ("train", 2)]
    assert not (tmp_path / "stopped").exists()
    folder = tmp_path / ".stopped.progress"
    assert len(list(folder.iterdir())) == 5
    # Where the next two batches go: a damaged part, and one of another evaluation whose figures
    # would show if it were used. Both are run again.
    (folder / "train-0000004.safetensors").write_bytes(b"cut short")
    bogus = SplitOutputs(losses=np.full(2, 1e9), recon=None, latent=np.zeros((2, 3), np.float32))
    KeptBatches(folder, "another evaluation's inputs").keep("train", 6, bogus)

    said: list[str] = []
    resumed = evaluate_model(
        world["combined"], world["stft_data"], out=tmp_path / "stopped", echo=said.append, **kw
    )
    assert said == [
        f"going on from an evaluation that was stopped: 5 batches of the model's outputs kept "
        f"in {folder}"
    ]
    assert not folder.exists()
    _assert_same_figures(whole, resumed, (*FIGURES, "pca_reference"), rel=1e-6, abs_=1e-9)


def test_an_evaluation_whose_batches_cannot_be_kept_says_so_and_goes_on(
    world: dict[str, Path], tmp_path: Path
) -> None:
    (tmp_path / ".eval.progress").write_text("a file where the kept batches would go")
    said: list[str] = []
    kw: dict[str, Any] = {"griffin_lim_iters": 1, "echo": said.append}
    metrics = evaluate_model(world["outer"], world["stft_data"], out=tmp_path / "eval", **kw)
    assert (tmp_path / "eval" / "metrics.json").is_file() and metrics["loss"]["count"] == 6
    assert len(said) == 1 and said[0].startswith(f"note: {tmp_path / '.eval.progress'}: cannot")
    assert (tmp_path / ".eval.progress").read_text().startswith("a file")


def test_a_long_evaluation_says_how_far_it_has_come(
    world: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Said every 30 s by default; here at every batch of 4 notes (6 test notes, 15 train notes).
    monkeypatch.setattr("samplegen.platform.progress_count.REPORT_EVERY_S", 0.0)
    said: list[str] = []
    kw: dict[str, Any] = {"griffin_lim_iters": 1, "batch_size": 4, "echo": said.append}
    evaluate_model(world["outer"], world["stft_data"], out=tmp_path / "eval", **kw)
    assert said == [
        "test split: evaluated 4 of 6",
        *(f"train split: evaluated {n} of 15" for n in (4, 8, 12)),
    ]


def test_combined_model_reports_vae_statistics_beside_same_size_pca(world: dict[str, Path]) -> None:
    out = world["root"] / "eval_combined"
    metrics = evaluate_model(
        world["combined"], world["stft_data"], "test", out, griffin_lim_iters=2
    )
    m = _check_written(metrics, out)
    lat = m["latent"]
    assert lat["dims"] == 3 and len(lat["mean"]) == 3 and len(lat["kl_per_dim"]) == 3
    assert all(k >= 0 for k in lat["kl_per_dim"])
    assert 0 <= lat["active_units"] <= 3
    ref = m["pca_reference"]
    assert ref["pca"]["n_components"] == 3
    assert ref["model"]["end_to_end"]["eval"]["mean_loss"] == pytest.approx(m["loss"]["mean"])
    assert ref["model"]["end_to_end"]["train"]["mean_loss"] == pytest.approx(
        m["overfit"]["train_mean_loss"]
    )
    # The reference is a k-component PCA of the train split's outer encodings: recompute it from
    # the saved model, and check it is no worse on train than a smaller PCA.
    enc = ref["pca"]["encoded"]["train"]["mean_loss"]
    train_x = load_dataset(world["stft_data"], splits=["train"]).splits["train"].x
    model = load_model(world["combined"]).model
    assert isinstance(model, CombinedModel)
    with torch.no_grad():
        h = model.outer.encode(torch.from_numpy(train_x)).flatten(1).numpy()
    assert enc == pytest.approx(pca_reference(h, h, 3)["train"]["mean_loss"], rel=1e-6)
    assert enc <= pca_reference(h, h, 1)["train"]["mean_loss"]
    assert "Beside a linear fit" in (out / "summary.md").read_text()


def test_a_refit_models_pca_reference_fits_on_the_notes_it_trained_on(
    world: dict[str, Path], tmp_path: Path
) -> None:
    # A refit model trained on validation too (samplegen.platform.refit): a reference fitted on
    # train alone would see fewer notes than the model did.
    refit = tmp_path / "refit"
    shutil.copytree(world["combined"], refit)
    config = json.loads((refit / "config.json").read_text())
    config["extra"]["refit"] = {"epochs": 1}
    (refit / "config.json").write_text(json.dumps(config))
    m = evaluate_model(refit, world["stft_data"], "test", tmp_path / "eval", griffin_lim_iters=2)
    ref = m["pca_reference"]
    assert ref["fitted_on"] == ["train", "validation"] and "train and validation" in ref["compares"]
    data = load_dataset(world["stft_data"], splits=["train", "validation"])
    x = np.concatenate([data.splits[s].x for s in ("train", "validation")])
    model = load_model(refit).model
    assert isinstance(model, CombinedModel)
    with torch.no_grad():
        h = model.outer.encode(torch.from_numpy(x)).flatten(1).numpy()
    enc = ref["pca"]["encoded"]["train"]["mean_loss"]
    assert enc == pytest.approx(pca_reference(h, h, 3)["train"]["mean_loss"], rel=1e-6)
    assert ref["pca"]["encoded"]["train"]["count"] == len(x) > len(data.splits["train"].x)
    # The overfit ratio still compares with the train split alone.
    assert m["overfit"]["train_mean_loss"] != pytest.approx(
        ref["model"]["end_to_end"]["train"]["mean_loss"]
    )
    assert "train+validation RMS%" in (tmp_path / "eval" / "summary.md").read_text()
    # Evaluated on validation, the notes it trained on besides train, the reference is the same.
    on_val = evaluate_model(
        refit, world["stft_data"], "validation", tmp_path / "val", griffin_lim_iters=2
    )
    assert on_val["pca_reference"]["fitted_on"] == ["train", "validation"]
    val_enc = on_val["pca_reference"]["pca"]["encoded"]["train"]["mean_loss"]
    assert val_enc == pytest.approx(enc, rel=1e-6)
    # An ordinary model's reference fits on train alone.
    plain = evaluate_model(
        world["combined"], world["stft_data"], "test", tmp_path / "plain", griffin_lim_iters=2
    )
    assert plain["pca_reference"]["fitted_on"] == ["train"]


def test_wave_model_uses_decoded_audio_and_explains_what_does_not_apply(
    world: dict[str, Path],
) -> None:
    out = world["root"] / "eval_wave"
    metrics = evaluate_model(world["wave"], world["wave_data"], "test", out)
    m = _check_written(metrics, out)
    assert m["model"]["kind"] == "outer_wave"
    assert m["spectral"]["audio"]["griffin_lim"] is False
    assert m["spectral"]["audio"]["multi_resolution_stft_distance"]["mean"] > 0
    assert m["spectral"]["magnitude"]["spectral_convergence_db"]["mean"] is not None
    assert "spectral.audio.spectral_convergence_db" in m["null_reasons"]


def test_models_refuse_other_codec_settings_and_unknown_splits(world: dict[str, Path]) -> None:
    with pytest.raises(SamplegenError, match="mu"):
        evaluate_model(world["other_codec"], world["stft_data"], out=world["root"] / "x")
    with pytest.raises(SamplegenError, match="representation"):
        evaluate_model(world["outer"], world["wave_data"], out=world["root"] / "x")
    with pytest.raises(SamplegenError, match="cannot be evaluated on audio"):
        evaluate_model(world["inner_only"], world["stft_data"], out=world["root"] / "x")
    with pytest.raises(SamplegenError, match="holdout"):
        evaluate_model(world["outer"], world["stft_data"], "holdout", out=world["root"] / "x")
    assert not (world["root"] / "x" / "metrics.json").exists()
    # Nor is a folder for kept batches left behind by an evaluation refused before its first.
    assert not progress_folder(world["root"] / "x").exists()


def test_cli_one_clear_line_for_missing_inputs(
    world: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    missing = world["root"] / "no_such_model"
    assert main(["evaluate", str(missing), "--data", str(world["stft_data"])]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(missing) in err and "no such model directory" in err

    missing_data = world["root"] / "no_such_data"
    assert main(["evaluate", str(world["outer"]), "--data", str(missing_data)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(missing_data) in err

    assert main(["evaluate", str(world["other_codec"]), "--data", str(world["stft_data"])]) == 2
    assert "\n" not in capsys.readouterr().err.strip()


def test_cli_writes_metrics(world: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out = world["root"] / "cli_out"
    argv = ["evaluate", str(world["outer"]), "--data", str(world["stft_data"]), "--out", str(out)]
    assert main([*argv, "--griffin-lim-iters", "2", "--batch-size", "3"]) == 0
    printed = capsys.readouterr().out
    assert "RMS" in printed and str(out / "metrics.json") in printed
    assert "interval" in printed and "instruments)" in printed
    assert json.loads((out / "metrics.json").read_text())["settings"]["batch_size"] == 3
    assert "another dataset" not in capsys.readouterr().err

    # A model trained on another dataset: its "test" notes may be ones it trained on. Said on the
    # console and in the summary.
    elsewhere = save_model(
        world["root"] / "outer_elsewhere",
        load_model(world["outer"]).model,
        codec=SMALL,
        dataset_fingerprint="elsewhere",
    )
    argv = ["evaluate", str(elsewhere), "--data", str(world["stft_data"]), "--out", str(out)]
    assert main([*argv, "--griffin-lim-iters", "2"]) == 0
    err = capsys.readouterr().err
    assert "note: the model was trained on another dataset (fingerprint elsewhere" in err
    assert "trained on another dataset" in (out / "summary.md").read_text()


# ---- the pieces, on hand-made values -----------------------------------------------------------


def test_identical_inputs_give_perfect_spectral_figures() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((3, *SMALL.shape), dtype=np.float32)
    mag = magnitude_section(x, x, SMALL, batch_size=2)
    assert mag["log_spectral_distance_db"]["max"] == pytest.approx(0.0, abs=1e-6)
    assert mag["spectral_convergence_db"]["max"] < -100
    audio = audio_section(x, x, SMALL, griffin_lim_iters=3, seed=5, batch_size=2)
    # Same input, same seeds: the same audio whatever the batch split.
    assert audio["multi_resolution_stft_distance"]["max"] == pytest.approx(0.0, abs=1e-6)


def test_per_category_worst_and_overfit_by_hand() -> None:
    losses = np.array([4.0, 1.0, 9.0, 16.0])
    cats = ["Bell", "Bass", "Bell", "Organ"]
    rows = per_category(losses, cats, values_per_sample=100)
    assert list(rows) == ["Organ", "Bell", "Bass"]  # largest mean loss first
    assert rows["Bell"] == {
        "count": 2,
        "mean_loss": 6.5,
        "rms_percent": pytest.approx(100 * math.sqrt(0.065)),
    }
    worst = worst_samples(losses, ["a", "b", "c", "d"], cats, 100, n=2)
    assert [w["name"] for w in worst] == ["d", "c"]
    assert worst[0]["rms_percent"] == pytest.approx(40.0)
    nulls = NullReasons()
    assert overfit_section(3.0, 2.0, "test", nulls)["ratio"] == pytest.approx(1.5)
    assert overfit_section(2.0, 2.0, "train", nulls)["ratio"] is None
    assert "overfit.ratio" in nulls.as_dict()


def test_group_interval_draws_whole_instruments() -> None:
    values = 100
    # Two instruments of two notes each: a draw holds A twice, A and B, or B twice, so the middle
    # 95% of draws runs exactly from A's figure to B's.
    losses = np.array([1.0, 3.0, 8.0, 10.0])
    groups = ["A", "A", "B", "B"]
    interval = group_interval(losses, groups, values, seed=3)
    assert interval is not None and interval["groups"] == 2 and interval["level"] == 0.95
    assert interval["low"] == pytest.approx(100 * math.sqrt(2.0 / values))
    assert interval["high"] == pytest.approx(100 * math.sqrt(9.0 / values))
    assert group_interval(losses, groups, values, seed=3) == interval  # seeded

    # Instruments that all fit alike leave nothing to draw: the interval closes on the figure.
    flat = group_interval(np.full(12, 4.0), [f"g{i % 4}" for i in range(12)], values)
    assert flat is not None and flat["low"] == pytest.approx(20.0) == flat["high"]

    # One badly fitted instrument among ten widens the interval far more than the same error
    # spread evenly over all ten (the same point figure).
    rng = np.random.default_rng(0)
    base = rng.uniform(1.0, 2.0, 40)
    one_bad = base.copy()
    one_bad[:4] += 30.0
    spread = base + 3.0
    tags = [f"g{i // 4}" for i in range(40)]
    wide = group_interval(one_bad, tags, values)
    narrow = group_interval(spread, tags, values)
    assert wide is not None and narrow is not None
    assert wide["high"] - wide["low"] > 2 * (narrow["high"] - narrow["low"])

    assert group_interval(losses, ["A"] * 4, values) is None  # one instrument: no interval
    with pytest.raises(ValueError, match="3 groups for 4 losses"):
        group_interval(losses, groups[:3], values)


def test_sanitize_turns_non_finite_values_into_explained_nulls() -> None:
    nulls = NullReasons()
    clean = sanitize({"a": float("nan"), "b": [1.0, np.float32(np.inf)], "c": np.int64(3)}, nulls)
    assert clean == {"a": None, "b": [1.0, None], "c": 3}
    assert set(nulls.as_dict()) == {"a", "b.1"}
    json.dumps(clean, allow_nan=False)
