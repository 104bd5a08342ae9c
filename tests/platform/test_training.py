"""The epoch loop without Ray: config split, learning, exact resumption from a checkpoint, NaN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from samplegen.errors import SamplegenError
from samplegen.models.registry import build_model
from samplegen.platform.resources import ResourceError, TrialResources, check_cluster, trial_device
from samplegen.platform.training import (
    NonFiniteLoss,
    OptimHparams,
    Trainer,
    load_best_weights,
    load_checkpoint,
    model_tensors,
    save_checkpoint,
    split_config,
)

SHAPE = (32, 16)
HP = {"layers": 1, "kernels": 4, "kernel_size": 3}


def _data(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, SHAPE[0], dtype=np.float32)[:, None]
    return (0.5 * ramp + 0.5 * rng.random((n, *SHAPE), dtype=np.float32)).astype(np.float32)


def _trainer(lr: float = 3e-3, seed: int = 0, schedule: str = "constant") -> Trainer:
    torch.manual_seed(seed)
    model = build_model("conv2d_ae", HP, SHAPE)
    optim = OptimHparams(8, lr, 0.0, lr_schedule=schedule)
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


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_resumed_training_equals_uninterrupted_training(tmp_path: Path, schedule: str) -> None:
    straight = _trainer(schedule=schedule)
    losses = [straight.run_epoch(e).val_loss for e in (1, 2, 3, 4)]

    first = _trainer(schedule=schedule)
    for e in (1, 2):
        first.run_epoch(e)
    save_checkpoint(tmp_path / "ck", first, {"epoch": 2}, model_tensors(first.model))
    tensors, meta = load_checkpoint(tmp_path / "ck")
    assert meta["epoch"] == 2 and any(k.startswith("optim.") for k in tensors)

    resumed = _trainer(seed=0, schedule=schedule)
    resumed.load_state_tensors(tensors, meta["optimizer"])
    again = [resumed.run_epoch(e).val_loss for e in (3, 4)]
    assert again == pytest.approx(losses[2:], rel=1e-5)
    best = load_best_weights(tmp_path / "ck")
    assert set(best) == set(first.model.state_dict())


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
    with pytest.raises(ResourceError, match="whole number"):
        TrialResources(1, 1.5)
    assert trial_device(0.0) == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert trial_device(0.25) == expected
