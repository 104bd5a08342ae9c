"""`samplegen train --config BEST --epochs N --data DATASET --out DIR`: train one configuration longer.

Plain training (no Tune): the study's best configuration (`best_config.json`), or any JSON with
`model` and a flat `config`, trained with the same epoch loop and stopping rule as the trials.
A checkpoint is kept in OUT/checkpoint; `--resume` continues from it after an interruption.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the `train` command."""
    p = subparsers.add_parser(
        "train",
        help="train one configuration (e.g. a study's best) for longer",
        description="Train the configuration in a best_config.json on a dataset; save a model folder.",
    )
    p.add_argument("--config", required=True, metavar="BEST", help="best_config.json of a study")
    p.add_argument("--data", required=True, metavar="DATASET", help="prepared dataset folder")
    p.add_argument("--out", required=True, metavar="DIR", help="model folder to write")
    p.add_argument("--epochs", type=int, required=True, help="maximum epochs")
    p.add_argument("--device", default="auto", metavar="auto|cpu|cuda", help="device")
    p.add_argument("--amp", action="store_true", help="bf16 mixed precision on CUDA")
    p.add_argument("--seed", type=int, default=None, help="seed (default: the study's)")
    p.add_argument("--stall-window", type=int, default=None, help="stall window (0 = off)")
    p.add_argument("--overfit-limit", type=float, default=None, help="val/train limit (0 = off)")
    p.add_argument("--train-subset", type=int, default=None, help="train on k diverse samples")
    p.add_argument("--checkpoint-every", type=int, default=10, help="epochs between checkpoints")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    p.set_defaults(func=run_train)


def _read_config(path: str) -> dict[str, Any]:
    from samplegen.errors import SamplegenError

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


def run_train(args: argparse.Namespace) -> int:
    """Handler of `samplegen train`."""
    import torch

    from samplegen.errors import SamplegenError
    from samplegen.models.artifact import save_model
    from samplegen.models.registry import build_model
    from samplegen.platform.resources import trial_device
    from samplegen.platform.stopping import StallRule
    from samplegen.platform.study import load_study_data
    from samplegen.platform.trainable import trial_seed
    from samplegen.platform.training import (
        NonFiniteLoss,
        Trainer,
        load_checkpoint,
        model_tensors,
        save_checkpoint,
        split_config,
    )

    best = _read_config(args.config)
    if args.epochs < 1:
        raise SamplegenError(f"--epochs: must be >= 1, got {args.epochs}")
    data = load_study_data(args.data, args.train_subset)
    stall = best.get("stall") or {}
    window = stall.get("window", 5) if args.stall_window is None else (args.stall_window or None)
    limit = (
        stall.get("overfit_limit", 1.4)
        if args.overfit_limit is None
        else (args.overfit_limit or None)
    )
    rule = StallRule(window, float(stall.get("min_change", 0.005)), limit)
    seed = trial_seed(best.get("seed", 0) if args.seed is None else args.seed, best["config"])
    device = trial_device(1.0 if args.device != "cpu" else 0.0, args.device)
    optim, model_hp = split_config(best["config"])
    torch.manual_seed(seed)
    model = build_model(best["model"], model_hp, data.input_shape, device=device)
    trainer = Trainer(
        model, optim, data.train, data.validation, device=device, seed=seed, amp=args.amp
    )
    out = Path(args.out)
    ckdir = out.parent / f"{out.name}.checkpoint"
    history: dict[str, list[float]] = {"train_loss": [], "val_loss": []}
    best_val, best_epoch, best_weights = math.inf, 0, None
    start = 1
    if args.resume and ckdir.exists():
        tensors, meta = load_checkpoint(ckdir)
        if meta.get("config") != best["config"] or meta.get("model") != best["model"]:
            raise SamplegenError(f"{ckdir}: checkpoint is for another configuration")
        trainer.load_state_tensors(tensors, meta["optimizer"])
        history = meta["history"]
        best_val, best_epoch = float(meta["best_val_loss"]), int(meta["best_epoch"])
        from samplegen.platform.training import load_best_weights

        best_weights = load_best_weights(ckdir)
        start = int(meta["epoch"]) + 1
        print(f"resuming at epoch {start}")
    status, reason = "completed", f"reached the epoch limit ({args.epochs})"

    def checkpoint(epoch: int) -> None:
        meta = {
            "epoch": epoch,
            "history": history,
            "best_val_loss": best_val,
            "best_epoch": best_epoch,
            "seed": seed,
            "model": best["model"],
            "config": best["config"],
        }
        save_checkpoint(ckdir, trainer, meta, best_weights)

    epoch = start - 1
    try:
        for epoch in range(start, args.epochs + 1):
            r = trainer.run_epoch(epoch)
            history["train_loss"].append(r.train_loss)
            history["val_loss"].append(r.val_loss)
            if r.val_loss < best_val:
                best_val, best_epoch, best_weights = r.val_loss, epoch, model_tensors(model)
            if not args.quiet:
                print(
                    f"epoch {epoch}: train {r.train_loss:.4g} val {r.val_loss:.4g} "
                    f"({r.seconds:.2f} s)",
                    flush=True,
                )
            stop = rule.check(history["train_loss"], history["val_loss"])
            if epoch % args.checkpoint_every == 0 or stop:
                checkpoint(epoch)
            if stop:
                status, reason = stop
                break
    except NonFiniteLoss as exc:
        status, reason = "nan", str(exc)
    except KeyboardInterrupt:
        checkpoint(epoch)
        raise
    if best_weights is None:
        raise SamplegenError(f"training produced no usable epoch: {reason}")
    model.load_state_dict(best_weights)
    save_model(
        out,
        model,
        codec=data.codec,
        dataset_fingerprint=data.fingerprint,
        metrics={
            "best_val_loss": best_val,
            "best_epoch": best_epoch,
            "epochs": len(history["val_loss"]),
            "status": status,
            "reason": reason,
        },
        extra={"config": best["config"], "history": history, "from": str(args.config)},
    )
    print(f"{status}: {reason}; best val_loss {best_val:.4g} at epoch {best_epoch}; saved {out}")
    return 0
