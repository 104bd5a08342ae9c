"""The epoch loop without Ray: config split, learning, exact resumption from a checkpoint, NaN."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
import pytest
import torch

from samplegen.errors import SamplegenError
from samplegen.models.registry import build_model
from samplegen.models.vae import VAE
from samplegen.platform.resources import ResourceError, TrialResources, check_cluster, trial_device
from samplegen.platform.training import (
    NonFiniteLoss,
    OptimHparams,
    Trainer,
    load_best_weights,
    load_checkpoint,
    mix_batch,
    model_tensors,
    save_checkpoint,
    split_config,
)

if TYPE_CHECKING:
    from samplegen.platform.study import StudyData

SHAPE = (32, 16)
HP = {"layers": 1, "kernels": 4, "kernel_size": 3}


def _data(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, SHAPE[0], dtype=np.float32)[:, None]
    return (0.5 * ramp + 0.5 * rng.random((n, *SHAPE), dtype=np.float32)).astype(np.float32)


def _trainer(
    lr: float = 3e-3, seed: int = 0, schedule: str = "constant", mixup: float = 0.0
) -> Trainer:
    torch.manual_seed(seed)
    model = build_model("conv2d_ae", HP, SHAPE)
    optim = OptimHparams(8, lr, 0.0, lr_schedule=schedule, mixup=mixup)
    return Trainer(model, optim, _data(40, 1), _data(12, 2), seed=seed, total_epochs=4)


def test_split_config_follows_the_original_scaling() -> None:
    optim, model_hp = split_config({"batch_exp": 5, "lr_exp": -5.0, "layers": 3, "kernels": 9})
    assert optim.batch_size == 32 and optim.lr == pytest.approx(32e-5)
    assert model_hp == {"layers": 3, "kernels": 9}
    optim, _ = split_config({"batch_size": 4, "lr": 0.01, "weight_decay": 1e-4})
    assert (optim.batch_size, optim.lr, optim.weight_decay) == (4, 0.01, 1e-4)
    with pytest.raises(SamplegenError, match="not both"):
        split_config({"lr": 0.1, "lr_exp": -3})
    optim, model_hp = split_config({"lr": 0.01, "lr_schedule": "cosine", "layers": 2})
    assert optim.lr_schedule == "cosine" and model_hp == {"layers": 2}
    with pytest.raises(SamplegenError, match="lr_schedule: 'step'"):
        split_config({"lr_schedule": "step"})
    optim, model_hp = split_config({"mixup": 0.5, "layers": 2})
    assert optim.mixup == 0.5 and model_hp == {"layers": 2}
    assert split_config({})[0].mixup == 0.0
    with pytest.raises(SamplegenError, match="mixup: must be >= 0"):
        split_config({"mixup": -1})


def test_mix_batch_makes_convex_mixes_of_pairs_within_the_batch() -> None:
    x = torch.arange(24, dtype=torch.float32).reshape(6, 2, 2)
    mixed, lam, perm = mix_batch(x, 0.4, np.random.default_rng(0))
    assert mixed.shape == x.shape and sorted(perm) == list(range(6))
    assert ((lam >= 0) & (lam <= 1)).all() and len(set(lam.round(6))) > 1
    for i in range(6):
        expected = lam[i] * x[i] + (1 - lam[i]) * x[perm[i]]
        torch.testing.assert_close(mixed[i], expected)
    again, lam2, perm2 = mix_batch(x, 0.4, np.random.default_rng(0))
    assert torch.equal(again, mixed) and (perm2 == perm).all()


def test_mixup_changes_what_the_trainer_learns() -> None:
    plain, mixed = _trainer(), _trainer(mixup=0.4)
    a, b = plain.run_epoch(1), mixed.run_epoch(1)
    assert np.isfinite(b.train_loss) and a.val_loss != b.val_loss


def test_cosine_schedule_falls_from_lr_to_zero_over_the_run() -> None:
    optim = OptimHparams(16, 0.01, lr_schedule="cosine")
    rates = [optim.lr_at(e, 10) for e in range(1, 12)]
    assert rates[0] == pytest.approx(0.01) and rates[5] == pytest.approx(0.005)
    assert all(a > b for a, b in zip(rates[:9], rates[1:10], strict=True))
    assert rates[10] == pytest.approx(0.0, abs=1e-12)
    assert OptimHparams(16, 0.01).lr_at(7, 10) == 0.01  # constant is the original's rule


def test_the_trainer_steps_at_the_scheduled_rate() -> None:
    trainer = _trainer(schedule="cosine")
    for epoch in (1, 2, 3):
        trainer.run_epoch(epoch)
        assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(
            trainer.optim.lr_at(epoch, 4)
        )
    assert trainer.optimizer.param_groups[0]["lr"] < 3e-3


def test_training_lowers_the_validation_loss() -> None:
    trainer = _trainer()
    first = trainer.run_epoch(1)
    for epoch in range(2, 6):
        last = trainer.run_epoch(epoch)
    assert last.val_loss < first.val_loss
    assert np.isfinite(last.train_loss) and last.seconds > 0


@pytest.mark.parametrize(
    ("schedule", "mixup"), [("constant", 0.0), ("cosine", 0.0), ("cosine", 0.4)]
)
def test_resumed_training_equals_uninterrupted_training(
    tmp_path: Path, schedule: str, mixup: float
) -> None:
    straight = _trainer(schedule=schedule, mixup=mixup)
    losses = [straight.run_epoch(e).val_loss for e in (1, 2, 3, 4)]

    first = _trainer(schedule=schedule, mixup=mixup)
    for e in (1, 2):
        first.run_epoch(e)
    save_checkpoint(tmp_path / "ck", first, {"epoch": 2}, model_tensors(first.model))
    tensors, meta = load_checkpoint(tmp_path / "ck")
    assert meta["epoch"] == 2 and any(k.startswith("optim.") for k in tensors)

    resumed = _trainer(seed=0, schedule=schedule, mixup=mixup)
    resumed.load_state_tensors(tensors, meta["optimizer"])
    again = [resumed.run_epoch(e).val_loss for e in (3, 4)]
    assert again == pytest.approx(losses[2:], rel=1e-5)
    best = load_best_weights(tmp_path / "ck")
    assert set(best) == set(first.model.state_dict())


def test_training_leaves_subnormal_floats_on() -> None:
    trainer = _trainer()
    trainer.run_epoch(1)
    # Flushing is scoped to the epoch: afterwards the process computes subnormals again.
    assert (torch.tensor([1e-39]) * 1.0).item() != 0.0
    assert np.float32(1e-39) * np.float32(1.0) != 0.0


def test_a_diverging_run_raises_non_finite_loss() -> None:
    trainer = _trainer(lr=1e30)
    with pytest.raises(NonFiniteLoss, match="non-finite"):
        for epoch in range(1, 6):
            trainer.run_epoch(epoch)


def test_resource_checks_and_device_choice() -> None:
    cpu_only = {"CPU": 2.0}
    with pytest.raises(ResourceError, match="has no GPU"):
        check_cluster(TrialResources(1, 0.25), cpu_only)
    with pytest.raises(ResourceError, match="more than the cluster's 2 CPU"):
        check_cluster(TrialResources(4, 0), cpu_only)
    check_cluster(TrialResources(1, 0.25), cpu_only, autoscaling=True)
    assert TrialResources(1, 0.25).per_node_limit({"CPU": 16.0, "GPU": 1.0}) == 4
    with pytest.raises(ResourceError, match="--gpus-per-trial: above 1 it must be a whole number"):
        TrialResources(1, 1.5)
    with pytest.raises(ResourceError, match="--gpus-per-trial: must be >= 0, got -0.5"):
        TrialResources(1, -0.5)
    with pytest.raises(ResourceError, match="--cpus-per-trial: must be positive, got 0"):
        TrialResources(0, 0)
    assert TrialResources(0.5, 2).as_dict() == {"cpu": 0.5, "gpu": 2}
    assert trial_device(0.0) == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert trial_device(0.25) == expected


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@needs_cuda
@pytest.mark.parametrize("amp", [False, True])
def test_cuda_training_keeps_the_splits_on_the_gpu_and_learns(amp: bool) -> None:
    torch.manual_seed(0)
    model = build_model("conv2d_ae", HP, SHAPE, device="cuda")
    # With AMP, mixup too: its weights and partners are drawn on the CPU and sent to the GPU.
    optim = OptimHparams(8, 3e-3, lr_schedule="cosine", mixup=0.4 if amp else 0.0)
    trainer = Trainer(model, optim, _data(40, 1), _data(12, 2), device="cuda", amp=amp)
    assert trainer.amp is amp
    assert trainer.train_x.device.type == "cuda" and trainer.val_x.device.type == "cuda"
    first = trainer.run_epoch(1)
    for epoch in range(2, 7):
        last = trainer.run_epoch(epoch)
    assert last.val_loss < first.val_loss
    assert all(p.device.type == "cuda" for p in model.parameters())


@needs_cuda
def test_cuda_training_matches_cpu_training() -> None:
    cpu = _trainer()
    # The CPU trainer's initial weights (a model built on cuda draws them from the CUDA RNG).
    model = build_model("conv2d_ae", HP, SHAPE, device="cuda")
    model.load_state_dict(cpu.model.state_dict())
    gpu = Trainer(model, OptimHparams(8, 3e-3), _data(40, 1), _data(12, 2), device="cuda")
    for epoch in (1, 2, 3):
        # Same seeds, same batches; only the kernels differ (cuDNN may use TF32 for convolutions).
        assert gpu.run_epoch(epoch).val_loss == pytest.approx(
            cpu.run_epoch(epoch).val_loss, rel=2e-2
        )


@needs_cuda
def test_a_gpu_checkpoint_resumes_on_cpu(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("conv2d_ae", HP, SHAPE, device="cuda")
    gpu = Trainer(model, OptimHparams(8, 3e-3), _data(40, 1), _data(12, 2), device="cuda")
    gpu.run_epoch(1)
    save_checkpoint(tmp_path / "ck", gpu, {"epoch": 1}, model_tensors(gpu.model))
    tensors, meta = load_checkpoint(tmp_path / "ck")
    cpu = _trainer()
    cpu.load_state_tensors(tensors, meta["optimizer"])
    assert all(p.device.type == "cpu" for p in cpu.model.parameters())
    assert np.isfinite(cpu.run_epoch(2).val_loss)


def _flat_data(n: int, seed: int) -> np.ndarray:
    # Rows on a 2-dimensional plane of 16 values, plus a little noise.
    rng = np.random.default_rng(seed)
    plane = np.random.default_rng(99).normal(size=(2, 16))
    return (rng.normal(size=(n, 2)) @ plane + 0.01 * rng.normal(size=(n, 16))).astype(np.float32)


def _vae_trainer(anchor_epochs: int, seed: int = 0) -> Trainer:
    torch.manual_seed(seed)
    hp = {"latent": 2, "depth": 2, "ratio": 0.5, "anchor_epochs": anchor_epochs}
    model = build_model("vae", hp, (16,))
    optim = OptimHparams(8, 3e-3, 0.0)
    return Trainer(model, optim, _flat_data(64, 1), _flat_data(16, 2), seed=seed, total_epochs=4)


def _explained(trainer: Trainer) -> float:
    """How much of the anchor targets the encoder's mean explains (R^2 of a linear fit)."""
    model = trainer.model
    assert isinstance(model, VAE)
    x = torch.as_tensor(trainer.train_x)
    with torch.no_grad():
        mu = model.posterior(x)[0].float().cpu()
        targets = model.anchor_targets(x).cpu()
    design = torch.cat([mu, torch.ones(len(mu), 1)], 1)
    fit = design @ torch.linalg.lstsq(design, targets).solution
    return float(1 - (fit - targets).pow(2).sum() / (targets - targets.mean(0)).pow(2).sum())


def test_the_deliberate_start_teaches_the_vae_its_rows_principal_components() -> None:
    trainer = _vae_trainer(anchor_epochs=40)
    before = _explained(trainer)
    assert trainer.anchor() == 40
    assert before < 0.9 < _explained(trainer)
    model = trainer.model
    assert isinstance(model, VAE)
    with torch.no_grad():
        x = torch.as_tensor(trainer.train_x)
        decoded = model.decode(model.anchor_targets(x))
    # The decoder learned to decode them: most of the rows' variance comes back.
    assert float((decoded - x).pow(2).mean()) < 0.1 * float(x.var(0).mean())
    # Training goes on from there as usual.
    assert np.isfinite(trainer.run_epoch(1).val_loss)


def test_the_start_is_the_same_for_a_seed_and_absent_unless_asked() -> None:
    a, b = _vae_trainer(anchor_epochs=3), _vae_trainer(anchor_epochs=3)
    a.anchor(), b.anchor()
    second = b.model.state_dict()
    for name, value in a.model.state_dict().items():
        assert torch.equal(value, second[name]), name
    plain = _vae_trainer(anchor_epochs=0)
    untouched = {k: v.clone() for k, v in plain.model.state_dict().items()}
    assert plain.anchor() == 0
    assert all(torch.equal(v, untouched[k]) for k, v in plain.model.state_dict().items())
    # A model without a deliberate start of its own (an outer model) starts at random.
    assert _trainer().anchor() == 0


def test_a_kl_warmup_is_judged_at_its_full_weight() -> None:
    torch.manual_seed(0)
    hp = {"latent": 2, "depth": 2, "ratio": 0.5, "beta": 1.0, "warmup": "linear"}
    model = build_model("vae", {**hp, "warmup_epochs": 4}, (16,))
    trainer = Trainer(model, OptimHparams(8, 3e-3, 0.0), _flat_data(64, 1), _flat_data(16, 2))
    result = trainer.run_epoch(1)
    now, _ = trainer.evaluate(trainer.val_x, epoch=1)
    settled, recon = trainer.evaluate(trainer.val_x)
    # val_loss is weighed like the epoch's training (KL at a quarter), val_settled like the end.
    assert result.val_loss == pytest.approx(now, rel=1e-5) and recon < now
    assert result.val_settled == pytest.approx(settled, rel=1e-5) and settled > now
    # A model without schedules gives one figure.
    plain = _trainer().run_epoch(1)
    assert plain.val_settled == pytest.approx(plain.val_loss, rel=1e-6)


def test_a_long_run_keeps_its_best_epoch_at_the_kls_full_weight(tmp_path: Path) -> None:
    # Within a linear warm-up the KL's weight grows every epoch, so the validation loss weighed as
    # in training looks best early and rises; the epoch kept must be judged at the full weight.
    from samplegen.dsp.config import CodecConfig
    from samplegen.models.artifact import load_model
    from samplegen.platform.longrun import train_config
    from samplegen.platform.study import StudyData

    data = StudyData(_flat_data(64, 1), _flat_data(16, 2), CodecConfig(), "flat", "test")
    # From the deliberate start the rows are soon reconstructed well, and a strong KL's growing
    # weight then raises the loss weighed as in training at every epoch (epoch 1 looks best).
    hp = {"latent": 2, "depth": 2, "ratio": 0.5, "beta": 4.0, "warmup": "linear"}
    hp |= {"anchor_epochs": 20}
    config = tmp_path / "best_config.json"
    config.write_text(
        json.dumps({"model": "vae", "config": {**hp, "warmup_epochs": 6, "lr": 3e-3}, "seed": 0})
    )
    out = train_config(
        config,
        "",
        tmp_path / "vae",
        epochs=6,
        study_data=data,
        stall_window=0,
        overfit_limit=0,
        echo=None,
    )
    saved = load_model(out)
    trainer = Trainer(saved.model, OptimHparams(8, 3e-3, 0.0), data.train, data.validation)
    best = float(saved.meta.metrics["best_val_loss"])
    assert best == pytest.approx(trainer.evaluate(trainer.val_x)[0], rel=1e-4)


class _RunSettings(TypedDict):
    """The train_config keywords every run of the resumption test shares."""

    epochs: int
    study_data: StudyData
    stall_window: int | None
    overfit_limit: float | None


def test_a_resumed_anchored_run_does_not_start_again(tmp_path: Path) -> None:
    from samplegen.dsp.config import CodecConfig
    from samplegen.models.artifact import load_model
    from samplegen.platform.longrun import train_config
    from samplegen.platform.study import StudyData

    data = StudyData(_flat_data(64, 1), _flat_data(16, 2), CodecConfig(), "flat", "test")
    hp = {"latent": 2, "depth": 2, "ratio": 0.5, "anchor_epochs": 3, "lr": 3e-3, "batch_size": 8}
    config = tmp_path / "best_config.json"
    config.write_text(json.dumps({"model": "vae", "config": hp, "seed": 0}))
    common: _RunSettings = {"epochs": 4, "study_data": data, "stall_window": 0, "overfit_limit": 0}

    said: list[str] = []
    straight = load_model(
        train_config(config, "", tmp_path / "straight", echo=said.append, **common)
    )
    assert any("deliberate start" in line for line in said)

    def stop_after_epoch_2(line: str) -> None:
        if line.startswith("epoch 2:"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_config(config, "", tmp_path / "cut", echo=stop_after_epoch_2, **common)
    said.clear()
    resumed = train_config(config, "", tmp_path / "cut", echo=said.append, resume=True, **common)
    assert said[0] == "resuming at epoch 3"
    assert not any("deliberate start" in line for line in said)
    a, b = straight.model.state_dict(), load_model(resumed).model.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


@needs_cuda
@pytest.mark.parametrize("amp", [False, True])
def test_the_deliberate_start_runs_on_cuda(amp: bool) -> None:
    torch.manual_seed(0)
    hp = {"latent": 2, "depth": 2, "ratio": 0.5, "anchor_epochs": 40}
    model = build_model("vae", hp, (16,), device="cuda")
    trainer = Trainer(
        model, OptimHparams(8, 3e-3), _flat_data(64, 1), _flat_data(16, 2), device="cuda", amp=amp
    )
    assert trainer.anchor() == 40
    assert _explained(trainer) > 0.9
    assert np.isfinite(trainer.run_epoch(1).val_loss)


def test_a_long_run_resumes_only_what_it_was_and_where_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from samplegen.dsp.config import CodecConfig
    from samplegen.models.artifact import load_model
    from samplegen.platform.longrun import train_config
    from samplegen.platform.study import StudyData

    data = StudyData(_flat_data(64, 1), _flat_data(16, 2), CodecConfig(), "flat", "test")
    hp = {"latent": 2, "depth": 2, "ratio": 0.5, "lr": 3e-3, "batch_size": 8}
    config = tmp_path / "best_config.json"
    config.write_text(json.dumps({"model": "vae", "config": hp, "seed": 0}))
    common: _RunSettings = {"epochs": 4, "study_data": data, "stall_window": 0, "overfit_limit": 0}
    straight = load_model(train_config(config, "", tmp_path / "straight", echo=None, **common))

    # Ctrl-C inside epoch 3: its half-trained weights are not saved as epoch 3 done.
    real = Trainer.run_epoch

    def cut_in_epoch_3(self: Trainer, epoch: int) -> Any:
        if epoch == 3:
            raise KeyboardInterrupt
        return real(self, epoch)

    monkeypatch.setattr(Trainer, "run_epoch", cut_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        train_config(config, "", tmp_path / "cut", echo=None, **common)
    monkeypatch.setattr(Trainer, "run_epoch", real)
    # The same command without --resume used to train afresh over the checkpoint.
    with pytest.raises(SamplegenError, match="an earlier run's checkpoint is here; continue"):
        train_config(config, "", tmp_path / "cut", echo=None, **common)
    said: list[str] = []
    resumed = train_config(config, "", tmp_path / "cut", echo=said.append, resume=True, **common)
    assert said[0] == "resuming at epoch 3"
    a, b = straight.model.state_dict(), load_model(resumed).model.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)

    # Its checkpoint is of this data: a resume on other data is another run.
    other = StudyData(_flat_data(64, 3), _flat_data(16, 2), CodecConfig(), "other", "test")
    moved: _RunSettings = {**common, "study_data": other}
    with pytest.raises(SamplegenError, match=r"another run: data 'flat' \(now 'other'\)"):
        train_config(config, "", tmp_path / "cut", echo=None, resume=True, **moved)
    said.clear()
    train_config(
        config, "", tmp_path / "cut", echo=said.append, resume=True, restart_other=True, **moved
    )
    assert "starting afresh" in said[0] and not any("resuming" in line for line in said)

    # A run that stopped on its own rule is done: resumed, it trains no further epoch.
    stalling = tmp_path / "stalling.json"
    stall = {"window": 1, "min_change": 0.9, "overfit_limit": None}
    stalling.write_text(json.dumps({"model": "vae", "config": hp, "seed": 0, "stall": stall}))
    stalls: _RunSettings = {**common, "epochs": 30, "stall_window": None}
    stopped = load_model(train_config(stalling, "", tmp_path / "stall", echo=None, **stalls))
    assert stopped.meta.metrics["status"] == "stalled"
    epochs = stopped.meta.metrics["epochs"]
    assert epochs < 30
    said.clear()
    again = load_model(
        train_config(stalling, "", tmp_path / "stall", echo=said.append, resume=True, **stalls)
    )
    assert not any(line.startswith("epoch ") for line in said)
    assert again.meta.metrics["epochs"] == epochs and again.meta.metrics["status"] == "stalled"
