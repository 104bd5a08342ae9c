"""Training one configuration for longer (the original's second step), without Tune.

The study's best configuration (`best_config.json`), or any JSON with `model` and a flat `config`,
is trained with the same epoch loop and stopping rule as the trials, keeping the best epoch. A
checkpoint beside the output (`OUT.checkpoint/`) lets an interrupted run resume.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from samplegen.errors import SamplegenError


def read_best_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A best_config.json: {"model": name, "config": {...}, ...}; SamplegenError otherwise."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise SamplegenError(f"{path}: cannot read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise SamplegenError(f"{path}: not valid JSON ({exc})") from None
    if (
        not isinstance(data, dict)
        or "model" not in data
        or not isinstance(data.get("config"), dict)
    ):
        raise SamplegenError(f"{path}: expected a best_config.json with `model` and `config`")
    return data


def _other_run(meta: dict[str, Any], best: dict[str, Any], schedule: dict[str, Any]) -> list[str]:
    """What differs between a checkpoint's run and the one asked for (empty: the same run).
    A setting the checkpoint does not record (one from before it was recorded) is not compared."""
    differ = []
    if meta.get("config") != best["config"] or meta.get("model") != best["model"]:
        differ.append("the configuration")
    recorded = meta.get("schedule") or {}
    differ += [
        f"{k} {recorded[k]!r} (now {v!r})"
        for k, v in schedule.items()
        if k in recorded and recorded[k] != v
    ]
    return differ


def train_config(
    config_path: str | os.PathLike[str],
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    epochs: int,
    device: str = "auto",
    amp: bool = False,
    seed: int | None = None,
    stall_window: int | None = None,
    overfit_limit: float | None = None,
    train_subset: int | None = None,
    checkpoint_every: int = 1,
    resume: bool = False,
    study_data: Any = None,
    stop_at: int | None = None,
    keep: str = "best",
    restart_other: bool = False,
    echo: Callable[[str], None] | None = print,
) -> Path:
    """Train the configuration in `config_path` on dataset `data`; save the best epoch to `out`.

    `stall_window` / `overfit_limit`: None keeps the study's rule, 0 turns that test off.
    `study_data`: a StudyData to train on instead of loading `data` (encodings, for inner models).
    `stop_at`: stop after this epoch, the learning-rate schedule still spanning `epochs` (a refit
    retraces the selected trial's run up to its chosen epoch). `keep`: "best" keeps the epoch of
    lowest validation loss, "last" the final one (a refit trains on its validation rows, so their
    loss chooses nothing).
    """
    import torch

    from samplegen.models.artifact import save_model
    from samplegen.models.registry import build_model
    from samplegen.platform.resources import trial_device
    from samplegen.platform.stopping import StallRule
    from samplegen.platform.study import load_study_data
    from samplegen.platform.trainable import trial_seed
    from samplegen.platform.training import (
        NonFiniteLoss,
        Trainer,
        load_best_weights,
        load_checkpoint,
        model_tensors,
        save_checkpoint,
        split_config,
    )

    say = echo or (lambda _m: None)
    best = read_best_config(config_path)
    if epochs < 1:
        raise SamplegenError(f"--epochs: must be >= 1, got {epochs}")
    if stop_at is not None and not 1 <= stop_at <= epochs:
        raise SamplegenError(f"stop_at: must be in 1..{epochs} (the epochs), got {stop_at}")
    if keep not in ("best", "last"):
        raise SamplegenError(f"keep: 'best' or 'last', got {keep!r}")
    if checkpoint_every < 1:
        raise SamplegenError(f"--checkpoint-every: must be >= 1, got {checkpoint_every}")
    from samplegen.models.artifact import check_model_target

    check_model_target(Path(out))
    if study_data is None:
        study_data = load_study_data(data, train_subset)
    stall = best.get("stall") or {}
    window = stall.get("window", 5) if stall_window is None else (stall_window or None)
    limit = stall.get("overfit_limit", 1.4) if overfit_limit is None else (overfit_limit or None)
    rule = StallRule(window, float(stall.get("min_change", 0.005)), limit)
    seed = trial_seed(best.get("seed", 0) if seed is None else seed, best["config"])
    device = trial_device(1.0 if device != "cpu" else 0.0, device)
    optim, model_hp = split_config(best["config"])
    torch.manual_seed(seed)
    model = build_model(best["model"], model_hp, study_data.input_shape, device=device)
    trainer = Trainer(
        model,
        optim,
        study_data.train,
        study_data.validation,
        device=device,
        seed=seed,
        amp=amp,
        total_epochs=epochs,
    )
    out = Path(out)
    ckdir = out.parent / f"{out.name}.checkpoint"
    history: dict[str, list[float]] = {"train_loss": [], "val_loss": []}
    best_val, best_epoch, best_weights = math.inf, 0, None
    start = 1
    # What shapes the run besides the configuration: resuming under other values would splice
    # two different runs into one model. The data too: a checkpoint trained on another dataset
    # (or, for a refit, other encodings) is another run, even at the same epoch.
    schedule = {
        "epochs": epochs,
        "stop_at": stop_at,
        "keep": keep,
        "seed": seed,
        "data": study_data.fingerprint,
        "train_subset": train_subset,
    }
    stopped: list[str] | None = None
    resumed = None
    if not resume and ckdir.exists():
        # Training afresh would overwrite it: an interrupted run's epochs, lost without a word.
        raise SamplegenError(
            f"{ckdir}: an earlier run's checkpoint is here; continue that run with --resume (a "
            "finished run then trains no further), or remove the checkpoint to train afresh"
        )
    if resume and not ckdir.exists():
        say(f"no checkpoint at {ckdir}: starting at epoch 1")
    if resume and ckdir.exists():
        tensors, meta = load_checkpoint(ckdir)
        differ = _other_run(meta, best, schedule)
        if not differ:
            resumed = tensors, meta
        elif restart_other:
            say(f"{ckdir}: a checkpoint of another run ({', '.join(differ)}); starting afresh")
        else:
            raise SamplegenError(
                f"{ckdir}: checkpoint is for another run: {', '.join(differ)}; remove it to "
                "start again"
            )
    if resumed is not None:
        tensors, meta = resumed
        trainer.load_state_tensors(tensors, meta["optimizer"])
        history = meta["history"]
        best_val, best_epoch = float(meta["best_val_loss"]), int(meta["best_epoch"])
        best_weights = load_best_weights(ckdir)
        start = int(meta["epoch"]) + 1
        stopped = meta.get("stopped")
        if stopped:  # the run had stopped on its own rule: it is done, not to be trained on
            say(f"{ckdir}: the run had stopped at epoch {start - 1} ({stopped[1]})")
        else:
            say(f"resuming at epoch {start}")
    status, reason = "completed", f"reached the epoch limit ({epochs})"

    def checkpoint(epoch: int, stop: tuple[str, str] | None = None) -> None:
        meta = {
            "stopped": list(stop) if stop else None,
            "epoch": epoch,
            "history": history,
            "best_val_loss": best_val,
            "best_epoch": best_epoch,
            "seed": seed,
            "schedule": schedule,
            "model": best["model"],
            "config": best["config"],
        }
        save_checkpoint(ckdir, trainer, meta, best_weights)

    last = epochs if stop_at is None else stop_at
    if stop_at is not None:
        reason = f"stopped at epoch {stop_at} of a {epochs}-epoch schedule"
    if stopped:
        status, reason = stopped
        last = start - 1
    done = saved = start - 1  # the last epoch trained to its end; the last one checkpointed
    in_epoch = False
    try:
        if start == 1 and (passes := trainer.anchor()):
            say(f"started from {passes} epochs of the model's deliberate start")
        for epoch in range(start, last + 1):
            in_epoch = True
            r = trainer.run_epoch(epoch)
            in_epoch = False
            history["train_loss"].append(r.train_loss)
            history["val_loss"].append(r.val_loss)
            # The settled loss: a KL warm-up's epochs would otherwise look best.
            if r.val_settled < best_val or keep == "last":
                best_val, best_epoch, best_weights = r.val_settled, epoch, model_tensors(model)
            done = epoch
            say(
                f"epoch {epoch}: train {r.train_loss:.4g} val {r.val_settled:.4g} ({r.seconds:.2f} s)"
            )
            stop = rule.check(history["train_loss"], history["val_loss"])
            if epoch % checkpoint_every == 0 or stop or epoch == last:
                checkpoint(epoch, stop)
                saved = epoch
            if stop:
                status, reason = stop
                break
    except NonFiniteLoss as exc:
        status, reason = "nan", str(exc)
    except KeyboardInterrupt:
        # Only a whole epoch: the weights of one cut short inside would be saved as done, half
        # trained. The last checkpoint (every epoch by default) then stands.
        if not in_epoch and done > saved:
            checkpoint(done)
        raise
    if best_weights is None:
        raise SamplegenError(f"training produced no usable epoch: {reason}")
    model.load_state_dict(best_weights)
    save_model(
        out,
        model,
        codec=study_data.codec,
        dataset_fingerprint=study_data.fingerprint,
        metrics={
            "best_val_loss": best_val,
            "best_epoch": best_epoch,
            "epochs": len(history["val_loss"]),
            "status": status,
            "reason": reason,
        },
        extra={"config": best["config"], "history": history, "from": str(config_path)},
    )
    chose = "best" if keep == "best" else "last"
    say(f"{status}: {reason}; {chose} val_loss {best_val:.4g} at epoch {best_epoch}; saved {out}")
    return out
