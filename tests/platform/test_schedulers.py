"""The cut-off rule on hand-made curves, ASHA + cut-off combined, and each scheduler in a real study."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from tune_helpers import tiny_config, tiny_data, write_space

from samplegen.errors import SamplegenError
from samplegen.platform.schedulers import (
    CombinedScheduler,
    CutoffScheduler,
    build_scheduler,
    check_asha_grace,
    warmup_end,
)
from samplegen.platform.spaces import parse_space
from samplegen.platform.study import run_study

STOP, CONTINUE = TrialScheduler.STOP, TrialScheduler.CONTINUE


def _feed(
    s: CutoffScheduler, curves: Mapping[str, Sequence[float]], order: list[tuple[str, int]]
) -> dict[str, int]:
    """Feed (trial, epoch) results in `order`; returns the first epoch each trial was stopped at."""
    stopped: dict[str, int] = {}
    for trial, epoch in order:
        if trial in stopped:
            continue
        if s.decide(trial, epoch, curves[trial][epoch - 1]) == STOP:
            stopped[trial] = epoch
    return stopped


def test_cutoff_stops_only_after_grace_and_above_factor() -> None:
    s = CutoffScheduler(factor=3.0, grace=3, metric="val_loss", mode="min")
    curves = {
        "good": [100, 50, 20, 10, 5],
        "bad": [400, 300, 200, 100, 90],  # 4x, 6x, 10x, 10x, 18x the best at each epoch
        "close": [120, 80, 50, 25, 14],  # never more than 3x the best
    }
    order = [(t, e) for e in range(1, 6) for t in ("good", "bad", "close")]
    assert _feed(s, curves, order) == {"bad": 3}  # 10x at epoch 3, but not before the grace
    assert s.best_at == {1: 100, 2: 50, 3: 20, 4: 10, 5: 5}
    assert "more than 3x" in s.stopped["bad"]


def test_cutoff_is_per_epoch_with_asynchronous_trials() -> None:
    """A slow trial reaching epoch e late is compared with the best at epoch e, not the latest."""
    s = CutoffScheduler(factor=3.0, grace=2, metric="val_loss", mode="min")
    curves = {"fast": [10, 8, 6, 4, 2, 1], "slow": [25, 20, 15, 11, 7, 5]}
    # fast runs all 6 epochs before slow reports anything: slow at epoch 2 is 20 vs best 8 (2.5x)
    # and at epoch 4 is 11 vs 4 (2.75x): kept; at epoch 5 it is 7 vs 2 (3.5x): stopped.
    order = [("fast", e) for e in range(1, 7)] + [("slow", e) for e in range(1, 7)]
    assert _feed(s, curves, order) == {"slow": 5}
    # Interleaved arrival gives the same decision: the table is indexed by epoch.
    s2 = CutoffScheduler(factor=3.0, grace=2, metric="val_loss", mode="min")
    order2 = [("slow", 1), ("fast", 1), ("slow", 2), ("fast", 2), ("fast", 3), ("slow", 3)]
    order2 += [("fast", 4), ("fast", 5), ("slow", 4), ("slow", 5), ("fast", 6), ("slow", 6)]
    assert _feed(s2, curves, order2) == {"slow": 5}


def test_cutoff_first_trial_at_an_epoch_sets_the_reference_and_nan_is_ignored() -> None:
    s = CutoffScheduler(factor=2.0, grace=1, metric="loss", mode="min")
    assert s.decide("a", 1, 100.0) == CONTINUE  # only trial so far: it is the best
    assert s.decide("b", 1, float("nan")) == CONTINUE
    assert s.decide("c", 1, 201.0) == STOP
    assert s.decide("d", 1, 199.0) == CONTINUE


def test_cutoff_max_mode_and_bad_settings() -> None:
    s = CutoffScheduler(factor=2.0, grace=1, metric="acc", mode="max")
    assert s.decide("a", 1, 0.9) == CONTINUE
    assert s.decide("b", 1, 0.5) == CONTINUE
    assert s.decide("c", 1, 0.4) == STOP
    with pytest.raises(SamplegenError, match="factor"):
        CutoffScheduler(factor=1.0)
    with pytest.raises(SamplegenError, match="grace"):
        CutoffScheduler(grace=0)
    with pytest.raises(SamplegenError, match="scheduler"):
        build_scheduler("median", max_epochs=5)


def _trial(i: int) -> Trial:
    return Trial("__fake", stub=True, trial_id=f"t{i}", config={})


def test_combined_scheduler_stops_when_either_says_so() -> None:
    """Real Trial objects through ASHA + cut-off: each rule stops a different trial."""
    asha = ASHAScheduler(time_attr="epoch", max_t=8, grace_period=4, reduction_factor=2)
    cut = CutoffScheduler(factor=3.0, grace=2)
    combined = CombinedScheduler(asha, cut)
    assert combined.set_search_properties("val_loss", "min")
    trials = [_trial(i) for i in range(3)]
    # None stands in for Tune's TuneController, which these schedulers never use.
    for t in trials:
        combined.on_trial_add(None, t)  # type: ignore[arg-type]

    def result(epoch: int, value: float) -> dict:
        return {"epoch": epoch, "val_loss": value}

    # t0 is good; t1 is 5x worse from epoch 2 (cut-off); t2 is slightly worse (ASHA at rung 4).
    actions = {}
    for epoch in range(1, 5):
        for t, value in zip(trials, (10.0 / epoch, 50.0 / epoch, 12.0 / epoch), strict=True):
            if t.trial_id in actions:
                continue
            a = combined.on_trial_result(None, t, result(epoch, value))  # type: ignore[arg-type]
            if a == STOP:
                actions[t.trial_id] = epoch
    assert actions["t1"] == 2  # the cut-off, before ASHA's grace period
    assert actions.get("t2") == 4  # ASHA's rung at 4: worse than the median of {t0, t2}
    assert "t0" not in actions
    assert "t1" in cut.stopped and "t2" not in cut.stopped
    assert "early cut-off" in combined.debug_string()


def test_build_scheduler_names() -> None:
    assert isinstance(build_scheduler("fifo", max_epochs=3), FIFOScheduler)
    assert isinstance(build_scheduler("asha", max_epochs=3), ASHAScheduler)
    assert isinstance(build_scheduler("cutoff", max_epochs=3), CutoffScheduler)
    assert isinstance(build_scheduler("asha+cutoff", max_epochs=3), CombinedScheduler)


def _vae_space(**params: object) -> dict:
    base: dict[str, object] = {
        "latent": {"type": "const", "value": 3},
        "warmup": {"type": "const", "value": "linear"},
        "warmup_epochs": {"type": "int", "low": 10, "high": 50},
        "lr_exp": {"type": "const", "value": -4},
    }
    return {"model": "vae", "params": {**base, **params}}


def test_warmup_end_is_the_longest_warmup_the_space_draws() -> None:
    assert warmup_end(parse_space(_vae_space()), 400) == 50
    assert warmup_end(parse_space(_vae_space()), 30) == 30
    fixed = {"type": "choice", "values": [7, 12]}
    assert warmup_end(parse_space(_vae_space(warmup_epochs=fixed)), 400) == 12
    # A cyclical warm-up starts again every period: it never settles.
    cyclical = {"type": "choice", "values": ["none", "cyclical"]}
    assert warmup_end(parse_space(_vae_space(warmup=cyclical)), 400) == 400
    assert warmup_end(parse_space(_vae_space(warmup={"type": "const", "value": "none"})), 400) == 0
    # Left out of the space, each takes the VAE's default: no warm-up, or 10 epochs of one.
    latent_only = {"model": "vae", "params": {"latent": {"type": "const", "value": 3}}}
    assert warmup_end(parse_space(latent_only), 400) == 0
    linear = {
        "latent": {"type": "const", "value": 3},
        "warmup": {"type": "const", "value": "linear"},
    }
    assert warmup_end(parse_space({"model": "vae", "params": linear}), 400) == 10
    outer = {"model": "frame_ae", "params": {"hidden": {"type": "const", "value": 8}}}
    assert warmup_end(parse_space(outer), 400) == 0


def test_asha_grace_must_reach_past_every_warmup() -> None:
    space = parse_space(_vae_space(), where="my_vae.yaml")
    for scheduler in ("asha", "asha+cutoff"):
        with pytest.raises(SamplegenError) as err:
            check_asha_grace(scheduler, space, asha_grace=25, max_epochs=400)
        msg = str(err.value)
        assert "--asha-grace" in msg and "epoch 25" in msg and "my_vae.yaml" in msg
        assert "until epoch 50" in msg
        check_asha_grace(scheduler, space, asha_grace=50, max_epochs=400)
        # A study shorter than the warm-up has no rung inside it that could stop a trial.
        check_asha_grace(scheduler, space, asha_grace=20, max_epochs=20)
    for scheduler in ("fifo", "cutoff"):
        check_asha_grace(scheduler, space, asha_grace=1, max_epochs=400)
    no_warmup = parse_space(_vae_space(warmup={"type": "const", "value": "none"}))
    check_asha_grace("asha", no_warmup, asha_grace=1, max_epochs=400)


def test_a_study_whose_asha_rung_is_inside_the_warmup_stops_before_training(
    tmp_path: Path, ray_session: None
) -> None:
    import yaml

    space = tmp_path / "vae.yaml"
    space.write_text(yaml.safe_dump(_vae_space()))
    config = tiny_config(
        tmp_path / "studies", space, "early-rung", model="vae", scheduler="asha", epochs=60
    )
    with pytest.raises(SamplegenError, match="--asha-grace"):
        run_study(config, tiny_data())
    assert not (tmp_path / "studies" / "early-rung" / "study.json").exists()


@pytest.mark.parametrize("scheduler", ["fifo", "asha", "cutoff", "asha+cutoff"])
def test_each_scheduler_runs_a_real_study(
    scheduler: str, tmp_path: Path, ray_session: None
) -> None:
    """Grid, one at a time in grid order: one fast trial, then three whose learning rate is far
    too small (their loss stays near the start, more than 3x the fast one's)."""
    space = write_space(
        tmp_path / "space.yaml",
        layers={"type": "const", "value": 1},
        kernels={"type": "const", "value": 4},
        lr_exp={"type": "float", "low": -12.0, "high": -2.0, "grid": [-2.5, -12.0, -12.0, -12.0]},
    )
    config = tiny_config(
        tmp_path / "studies",
        space,
        f"sched-{scheduler.replace('+', '-')}",
        search="grid",
        scheduler=scheduler,
        epochs=4,
        max_concurrent=1,
        asha_grace=2,
    )
    result = run_study(config, tiny_data())
    assert not result.interrupted
    rows = {r["config.lr_exp"]: r for r in result.rows}
    assert len(result.rows) == 4
    assert result.best is not None and result.best["config.lr_exp"] == -2.5
    assert result.best["status"] == "completed" and result.best["epochs"] == 4
    slow = [r for r in result.rows if r["config.lr_exp"] == -12.0]
    assert rows[-2.5]["best_val_loss"] * 3 < min(r["best_val_loss"] for r in slow)
    if scheduler == "fifo":
        assert all(r["status"] == "completed" and r["epochs"] == 4 for r in slow)
    elif scheduler in ("cutoff", "asha+cutoff"):
        # Grace 2: each slow trial is cut at epoch 2.
        assert all(r["status"] == "stopped" and r["epochs"] == 2 for r in slow)
    else:  # ASHA's first rung is at epoch 2; later slow trials fall below the rung's median
        assert any(r["status"] == "stopped" and r["epochs"] == 2 for r in slow)
    assert Path(result.path, "results.parquet").exists()


@pytest.mark.parametrize("scheduler", ["cutoff", "asha"])
def test_a_resumed_study_still_compares_with_the_epochs_before_the_resume(
    scheduler: str, tmp_path: Path, ray_session: None
) -> None:
    """Tune restores a scheduler as it was when the study began, empty. Interrupted after the fast
    trial, the two slow ones run after the resume: each must still be judged against the fast
    trial's epochs (without them, the first slow trial sets the bar for the second, and both run
    to the end)."""
    space = write_space(
        tmp_path / "space.yaml",
        layers={"type": "const", "value": 1},
        kernels={"type": "const", "value": 4},
        lr_exp={"type": "float", "low": -12.0, "high": -2.0, "grid": [-2.5, -12.0, -12.0]},
    )
    config = tiny_config(
        tmp_path / "studies",
        space,
        f"resumed-{scheduler}",
        search="grid",
        scheduler=scheduler,
        epochs=4,
        max_concurrent=1,
        asha_grace=2,
    )
    first = run_study(config, tiny_data(), interrupt_after=1)
    assert first.interrupted
    assert [r["config.lr_exp"] for r in first.rows if r["status"] == "completed"] == [-2.5]
    result = run_study(config, tiny_data(), resume=True)
    assert not result.interrupted and len(result.rows) == 3
    slow = [r for r in result.rows if r["config.lr_exp"] == -12.0]
    assert [(r["status"], r["epochs"]) for r in slow] == [("stopped", 2)] * 2


def test_a_trial_stopped_between_checkpoints_keeps_the_weights_of_its_best_epoch(
    tmp_path: Path, ray_session: None
) -> None:
    """With --checkpoint-every above the epochs a trial lives, the cut-off stops the slow trials at
    epoch 2 with no epoch-count checkpoint behind them: what the study exports must still be the
    best epoch it reports."""
    import json

    from samplegen.platform.selection import latest_checkpoint

    space = write_space(
        tmp_path / "space.yaml",
        layers={"type": "const", "value": 1},
        kernels={"type": "const", "value": 4},
        lr_exp={"type": "float", "low": -12.0, "high": -2.0, "grid": [-2.5, -12.0]},
    )
    config = tiny_config(
        tmp_path / "studies",
        space,
        "sparse-checkpoints",
        search="grid",
        scheduler="cutoff",
        epochs=4,
        max_concurrent=1,
        checkpoint_every=5,
    )
    result = run_study(config, tiny_data())
    assert sorted((r["status"], r["epochs"]) for r in result.rows) == [
        ("completed", 4),
        ("stopped", 2),
    ]
    for row in result.rows:
        saved = json.loads((latest_checkpoint(row["path"]) / "state.json").read_text())
        assert (saved["best_epoch"], saved["best_val_loss"]) == (
            row["best_epoch"],
            row["best_val_loss"],
        )
