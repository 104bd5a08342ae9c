"""End-to-end fine-tuning of a combined model (samplegen.platform.finetune) on a real dataset."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from dataset_helpers import SMALL, instrument_folder

from samplegen.cli.main import main
from samplegen.errors import SamplegenError
from samplegen.models.artifact import CodecMismatch, load_model, save_model
from samplegen.models.base import SampleModel
from samplegen.models.code_distribution import stored_distribution
from samplegen.models.combined import CombinedModel
from samplegen.models.registry import build_model
from samplegen.models.vae import VAE
from samplegen.platform.datasets import load_dataset, prepare_dataset
from samplegen.platform.encoded import EqAugment
from samplegen.platform.evaluation import evaluate_model
from samplegen.platform.finetune import FinetuneSettings, _warmed_up, finetune_combined

SETTINGS = FinetuneSettings(epochs=4, lr=3e-3, batch_size=8)


def _chain(model: SampleModel) -> tuple[CombinedModel, VAE]:
    """The combined model the `chained` fixture saved, and its inner VAE."""
    assert isinstance(model, CombinedModel) and isinstance(model.inner, VAE)
    return model, model.inner


def _fit(model: SampleModel, x: np.ndarray, steps: int) -> None:
    torch.manual_seed(0)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    xt = torch.from_numpy(np.ascontiguousarray(x))
    model.train()
    for _ in range(steps):
        loss = model.loss(xt, model(xt)).total
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


@pytest.fixture(scope="module")
def chained(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A dataset and a combined model whose inner VAE was fitted on the outer encodings only."""
    root = tmp_path_factory.mktemp("finetune")
    instrument_folder(root / "audio", instruments=10)
    data = prepare_dataset(root / "audio", root / "ds", SMALL, splits=(0.6, 0.2, 0.2), echo=None)
    train = load_dataset(data, splits=["train"]).splits["train"].x
    torch.manual_seed(0)
    outer = build_model("frame_ae", {"frame_latent": 4, "hidden": 32}, SMALL.shape)
    _fit(outer, train, 40)
    with torch.no_grad():
        codes = outer.encode(torch.from_numpy(train)).flatten(1).numpy()
    inner = build_model(
        "vae",
        {"latent": 3, "depth": 2, "beta": 0.1, "refine_steps": 10, "warmup": "linear"},
        (codes.shape[1],),
    )
    assert isinstance(inner, VAE)
    _fit(inner, codes, 60)  # the chain: the inner model learns the encodings, not the input
    combined = CombinedModel.from_parts(outer, inner)
    model = save_model(root / "combined", combined, codec=SMALL, metrics={"best_epoch": 7})
    return {"root": root, "data": data, "model": model}


def _train_loss(path: Path, data: Path) -> float:
    model, vae = _chain(load_model(path).model)
    x = torch.from_numpy(load_dataset(data, splits=["train"]).splits["train"].x)
    with torch.no_grad():
        model.train()  # the encoder's mean would be refined in eval mode; compare the nets
        mu = vae.posterior(model.outer.encode(x).flatten(1))[0]
        recon = model.decode(mu)
    return float((recon - x).pow(2).flatten(1).sum(1).mean())


def test_finetuning_fits_the_input_domain_and_leaves_the_outer_model_alone(
    chained: dict[str, Path],
) -> None:
    out = chained["root"] / "tuned"
    record = finetune_combined(chained["model"], chained["data"], out, settings=SETTINGS, echo=None)
    before, after = load_model(chained["model"]), load_model(out)
    assert record["kept"] == "fine-tuned"
    assert record["val_recon_after"] < record["val_recon_before"]
    assert len(record["train_loss"]) == SETTINGS.epochs
    assert after.meta.extra["finetune"] == record
    assert after.meta.metrics == {"best_epoch": 7}
    # Random sounds follow the fine-tuned codes of the training notes.
    train = torch.from_numpy(load_dataset(chained["data"], splits=["train"]).splits["train"].x)
    fitted = stored_distribution(after.meta.extra, 3)
    assert fitted is not None and fitted.count == len(train)
    with torch.no_grad():
        means = after.model.encode_amortized(train).numpy()
    np.testing.assert_allclose(fitted.mean, means.mean(0), rtol=1e-4, atol=1e-5)
    # Every outer weight is exactly the chain's; the inner weights moved.
    b, a = before.model.state_dict(), after.model.state_dict()
    assert all(torch.equal(b[k], a[k]) for k in b if k.startswith("outer."))
    assert any(not torch.equal(b[k], a[k]) for k in b if k.startswith("inner."))
    assert after.model.num_params() == before.model.num_params()
    assert _train_loss(out, chained["data"]) < _train_loss(chained["model"], chained["data"])
    # The recorded validation loss is the model's own, as it encodes (refined codes).
    val = torch.from_numpy(
        load_dataset(chained["data"], splits=["validation"]).splits["validation"].x
    )
    sse = float((after.model.reconstruct(val).detach() - val).pow(2).flatten(1).sum(1).mean())
    assert sse == pytest.approx(record["val_recon_after"], rel=1e-4)
    report = evaluate_model(out, chained["data"], split="validation", out=chained["root"] / "ev")
    assert report["loss"]["mean"] == pytest.approx(record["val_recon_after"], rel=1e-4)
    assert not (chained["root"] / "tuned.finetune-checkpoint").exists()

    # A second call with the same settings and dataset finds the work done and changes nothing.
    again = finetune_combined(out, chained["data"], out, settings=SETTINGS, echo=None)
    assert again == {**record, "skipped": True}
    assert all(torch.equal(v, load_model(out).model.state_dict()[k]) for k, v in a.items())
    # Other settings ask for another fine-tuning: the fine-tuned model is tuned again.
    more = replace(SETTINGS, epochs=1, lr=SETTINGS.lr / 2)
    third = finetune_combined(
        out, chained["data"], chained["root"] / "more", settings=more, echo=None
    )
    assert "skipped" not in third and third["settings"]["epochs"] == 1
    assert third["val_recon_before"] == pytest.approx(record["val_recon_after"], rel=1e-4)
    # A dataset of other codec settings is refused, fine-tuned before or not.
    other = chained["root"] / "ds-1s"
    shutil.copytree(chained["data"], other)
    info = json.loads((other / "dataset.json").read_text())
    info["codec"]["duration"] = 1.0
    (other / "dataset.json").write_text(json.dumps(info))
    with pytest.raises(CodecMismatch, match="duration"):
        finetune_combined(out, other, out, settings=SETTINGS, echo=None)


def _loss_on(path: Path, x: np.ndarray) -> float:
    model, vae = _chain(load_model(path).model)
    model.train()  # the encoder's mean, not refined: compare the nets
    xt = torch.from_numpy(np.ascontiguousarray(x))
    with torch.no_grad():
        recon = model.decode(vae.posterior(model.outer.encode(xt).flatten(1))[0])
    return float((recon - xt).pow(2).flatten(1).sum(1).mean())


def test_finetuning_trains_on_the_eq_copies_the_study_trained_on(chained: dict[str, Path]) -> None:
    eq = EqAugment(variants=2, db=12.0, seed=3)
    said: list[str] = []
    out = chained["root"] / "tuned-eq"
    settings = replace(SETTINGS, eq=eq)
    record = finetune_combined(
        chained["model"], chained["data"], out, settings=settings, echo=said.append
    )
    train = load_dataset(chained["data"], splits=["train"]).splits["train"]
    _rows, copies = eq.copies(train.x, train.meta, SMALL)
    assert len(copies) == 2 * len(train.x)  # this dataset has no mixes
    assert f"fine-tuning on {len(train.x)} notes and {len(copies)} EQ copies (12 dB)" in said
    assert record["settings"]["eq"] == {"variants": 2, "db": 12.0, "seed": 3}
    # Trained on the copies: it fits them better than the same fine-tuning without them does.
    plain = chained["root"] / "tuned-plain"
    finetune_combined(chained["model"], chained["data"], plain, settings=SETTINGS, echo=None)
    assert _loss_on(out, copies) < _loss_on(plain, copies)
    # The code distribution for random sounds still comes from the notes alone.
    fitted = stored_distribution(load_model(out).meta.extra, 3)
    assert fitted is not None and fitted.count == len(train.x)


def test_a_worse_result_keeps_the_chained_weights(chained: dict[str, Path]) -> None:
    out = chained["root"] / "diverged"
    wild = FinetuneSettings(epochs=2, lr=10.0, batch_size=8)
    record = finetune_combined(chained["model"], chained["data"], out, settings=wild, echo=None)
    assert record["kept"] == "chained"
    before, after = load_model(chained["model"]), load_model(out)
    assert all(
        torch.equal(v, after.model.state_dict()[k]) for k, v in before.model.state_dict().items()
    )
    assert after.meta.extra["finetune"]["kept"] == "chained"


def test_without_selection_the_tuned_weights_are_kept_unmeasured(chained: dict[str, Path]) -> None:
    """A refit's fine-tuning: its validation rows are trained on, so they choose nothing."""
    said: list[str] = []
    out = chained["root"] / "unselected"
    record = finetune_combined(
        chained["model"],
        chained["data"],
        out,
        settings=SETTINGS,
        select=False,
        dataset_fingerprint="f" * 32,
        echo=said.append,
    )
    assert record["kept"] == "fine-tuned" and record["selected_on_validation"] is False
    assert record["val_recon_before"] is None and record["val_recon_after"] is None
    assert not any("validation loss" in line for line in said)
    tuned = load_model(out)
    assert tuned.meta.dataset_fingerprint == "f" * 32
    assert _train_loss(out, chained["data"]) < _train_loss(chained["model"], chained["data"])
    # The same fine-tuning with selection ends at the same weights (and keeps them).
    selected = chained["root"] / "selected"
    finetune_combined(chained["model"], chained["data"], selected, settings=SETTINGS, echo=None)
    a, b = tuned.model.state_dict(), load_model(selected).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_an_interrupted_finetuning_resumes_and_ends_like_an_uninterrupted_one(
    chained: dict[str, Path],
) -> None:
    whole = chained["root"] / "whole"
    finetune_combined(chained["model"], chained["data"], whole, settings=SETTINGS, echo=None)

    def stop_in_epoch_3(line: str) -> None:
        if line.startswith("fine-tune epoch 3"):
            raise KeyboardInterrupt

    part = chained["root"] / "part"
    with pytest.raises(KeyboardInterrupt):
        finetune_combined(
            chained["model"],
            chained["data"],
            part,
            settings=SETTINGS,
            checkpoint_every=1,
            echo=stop_in_epoch_3,
        )
    assert (chained["root"] / "part.finetune-checkpoint").is_dir() and not part.exists()
    lines: list[str] = []
    finetune_combined(chained["model"], chained["data"], part, settings=SETTINGS, echo=lines.append)
    assert "resuming fine-tuning at epoch 3" in lines
    a, b = load_model(whole), load_model(part)
    for k, v in a.model.state_dict().items():
        torch.testing.assert_close(b.model.state_dict()[k], v)
    assert b.meta.extra["finetune"]["train_loss"] == pytest.approx(
        a.meta.extra["finetune"]["train_loss"]
    )
    # A checkpoint of other settings is refused, not mixed in.
    with pytest.raises(KeyboardInterrupt):
        finetune_combined(
            chained["model"],
            chained["data"],
            chained["root"] / "mixed",
            settings=SETTINGS,
            checkpoint_every=1,
            echo=stop_in_epoch_3,
        )
    other = FinetuneSettings(epochs=4, lr=1e-3, batch_size=8)
    with pytest.raises(SamplegenError, match="checkpoint of another fine-tuning run"):
        finetune_combined(
            chained["model"], chained["data"], chained["root"] / "mixed", settings=other, echo=None
        )


def test_finetune_cli_and_its_errors(
    chained: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = chained["root"] / "cli"
    args = ["finetune", "--model", str(chained["model"]), "--data", str(chained["data"])]
    assert main([*args, "--out", str(out), "--epochs", "2", "--lr", "0.003", "--quiet"]) == 0
    assert "kept the fine-tuned weights" in capsys.readouterr().out
    assert load_model(out).meta.extra["finetune"]["settings"]["epochs"] == 2
    eq_out = chained["root"] / "cli-eq"
    eq_args = ["--eq-variants", "1", "--eq-db", "6", "--seed", "4", "--epochs", "1", "--quiet"]
    assert main([*args, "--out", str(eq_out), *eq_args]) == 0
    capsys.readouterr()
    assert load_model(eq_out).meta.extra["finetune"]["settings"]["eq"] == {
        "variants": 1,
        "db": 6.0,
        "seed": 4,  # drawn as `tune vae --seed 4` drew them, unless --eq-seed says otherwise
    }

    outer = _chain(load_model(chained["model"]).model)[0].outer
    save_model(chained["root"] / "outer", outer, codec=SMALL)
    bad = [
        (["--model", str(chained["root"] / "outer")], "needs a combined model"),
        # Also when the model is already fine-tuned and there is nothing to do.
        (["--model", str(out), "--data", str(chained["root"])], "not a samplegen dataset"),
        (["--model", str(chained["model"]), "--epochs", "0"], "--epochs: must be >= 1"),
        (["--model", str(chained["model"]), "--lr", "-1"], "--lr: must be positive"),
        (["--model", str(chained["model"]), "--eq-variants", "-1"], "eq variants: must be >= 0"),
        (["--model", str(chained["model"]), "--eq-db", "30"], r"eq db: must be in [0, 24]"),
    ]
    for extra, message in bad:
        argv = ["finetune", "--data", str(chained["data"]), "--out", str(out), *extra]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert math.isfinite(load_model(out).meta.extra["finetune"]["val_recon_after"])


def test_finetuning_does_not_restart_the_kl_warm_up(chained: dict[str, Path]) -> None:
    loaded = load_model(chained["model"])
    model = loaded.model.train()
    assert model.hparams.inner_hparams["warmup"] == "linear"
    x = torch.from_numpy(load_dataset(chained["data"], splits=["train"]).splits["train"].x[:8])
    copy = _warmed_up(model).train()
    torch.manual_seed(0)
    at_epoch_1 = copy.loss(x, copy(x), epoch=1)
    torch.manual_seed(0)
    warmed = model.loss(x, model(x), epoch=None)
    torch.manual_seed(0)
    restarted = model.loss(x, model(x), epoch=1)
    # The copy weighs the KL term fully from its first epoch, as the chained model ended.
    assert float(at_epoch_1.total) == pytest.approx(float(warmed.total), rel=1e-6)
    assert float(restarted.total) < float(warmed.total)
    # ...and what is saved keeps the model's own hyper-parameters.
    one = FinetuneSettings(epochs=1, lr=1e-3, batch_size=8)
    finetune_combined(
        chained["model"], chained["data"], chained["root"] / "warm", settings=one, echo=None
    )
    assert load_model(chained["root"] / "warm").meta.hparams == loaded.meta.hparams


def test_fit_codes_adds_the_training_codes_to_an_existing_model(
    chained: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = chained["root"] / "with-codes"
    argv = ["fit-codes", "--model", str(chained["model"]), "--data", str(chained["data"])]
    assert main([*argv, "--out", str(out)]) == 0
    assert "fitted the codes of" in capsys.readouterr().out
    before, after = load_model(chained["model"]), load_model(out)
    before_model, _ = _chain(before.model)
    assert stored_distribution(before.meta.extra, 3) is None
    fitted = stored_distribution(after.meta.extra, 3)
    train = load_dataset(chained["data"], splits=["train"]).splits["train"].x
    assert fitted is not None and fitted.count == len(train)
    assert str(chained["data"]) in fitted.source
    assert main([*argv, "--out", str(out) + "-one", "--components", "1"]) == 0
    one = stored_distribution(load_model(str(out) + "-one").meta.extra, 3)
    assert one is not None and one.components == 1
    # Only config.json changes: the same weights, metrics and other extras.
    b, a = before.model.state_dict(), after.model.state_dict()
    assert all(torch.equal(b[k], a[k]) for k in b)
    assert after.meta.metrics == before.meta.metrics

    # In place by default, and a plain outer auto-encoder with a small code can be fitted too.
    outer_dir = save_model(chained["root"] / "outer-fit", before_model.outer, codec=SMALL)
    assert main(["fit-codes", "--model", str(outer_dir), "--data", str(chained["data"])]) == 0
    dim = int(np.prod(before_model.outer.latent_shape))
    assert stored_distribution(load_model(outer_dir).meta.extra, dim) is not None
    capsys.readouterr()

    inner_dir = save_model(chained["root"] / "inner", before_model.inner, codec=SMALL)
    bad = [
        (["--model", str(inner_dir), "--data", str(chained["data"])], "inner model alone"),
        (["--model", str(out), "--data", str(chained["root"])], "not a samplegen dataset"),
        (["--model", str(chained["root"] / "nope"), "--data", str(chained["data"])], "nope"),
        ([*argv[1:], "--components", "0"], "--components: must be >= 1"),
        ([*argv[1:], "--device", "tpu"], "'tpu' is not one of auto, cpu, cuda"),
    ]
    for args, message in bad:
        assert main(["fit-codes", *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


def test_random_sounds_are_fitted_on_the_real_training_notes_as_at_export(
    chained: dict[str, Path],
) -> None:
    # The chained study's export fits the code distribution on the real notes only; fine-tuning
    # used every training row (mixes, variation presets) and so described other sounds.
    root = chained["root"]
    mixed = prepare_dataset(
        root / "audio", root / "ds-mixes", SMALL, splits=(0.6, 0.2, 0.2), augment_mixes=4, echo=None
    )
    train = load_dataset(mixed, splits=["train"]).splits["train"]
    real = sum(not m.get("augmented") for m in train.meta)
    assert real == len(train.x) - 4
    out = root / "tuned-mixes"
    finetune_combined(chained["model"], mixed, out, settings=replace(SETTINGS, epochs=1), echo=None)
    fitted = stored_distribution(load_model(out).meta.extra, 3)
    assert fitted is not None and fitted.count == real
