"""`samplegen train --config BEST --epochs N --data DATASET --out DIR`: train one configuration longer;
`samplegen finetune --model COMBINED --data DATASET --out DIR`: fine-tune a chained model end to end.
`samplegen fit-codes --model DIR --data DATASET`: store the mixture of a model's training codes.
`samplegen refit --study VAE_STUDY --outer DIR --data DATASET --out DIR`: the study's selected VAE
trained again with the validation notes among its training notes (samplegen.platform.refit).

Plain training (no Tune): the study's best configuration (`best_config.json`), or any JSON with
`model` and a flat `config`, trained with the same epoch loop and stopping rule as the trials.
A checkpoint is kept beside OUT, in OUT.checkpoint; `--resume` continues from it after an interruption.
"""

from __future__ import annotations

import argparse
from typing import Any

from samplegen.cli import arg_types


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
    p.add_argument("--seed", type=arg_types.seed, default=None, help="seed (default: the study's)")
    p.add_argument("--stall-window", type=int, default=None, help="stall window (0 = off)")
    p.add_argument("--overfit-limit", type=float, default=None, help="val/train limit (0 = off)")
    p.add_argument(
        "--train-subset",
        type=arg_types.positive_int,
        default=None,
        help="train on k diverse samples",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=1,
        help="epochs between checkpoints (default 1: an interrupted run loses no finished epoch)",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue from OUT.checkpoint (the folder beside OUT)"
    )
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    p.set_defaults(func=run_train, on_interrupt="continue it with the same command and --resume")

    from samplegen.models.code_distribution import COMPONENTS  # light: numpy only
    from samplegen.platform.finetune import FinetuneSettings  # light: no torch, no Ray

    d = FinetuneSettings()
    f = subparsers.add_parser(
        "finetune",
        help="fine-tune a combined model end to end (outer model frozen)",
        description="Train a combined model's inner part on the loss after the frozen outer "
        "decoder, in the input domain; keep the result only if the validation loss falls. "
        "An interrupted run continues from OUT.finetune-checkpoint.",
    )
    f.add_argument("--model", required=True, metavar="COMBINED", help="combined model folder")
    f.add_argument("--data", required=True, metavar="DATASET", help="prepared dataset folder")
    f.add_argument(
        "--out", required=True, metavar="DIR", help="model folder to write (may be --model)"
    )
    f.add_argument("--epochs", type=int, default=None, help=f"epochs (default {d.epochs})")
    f.add_argument("--lr", type=float, default=None, help=f"Adam learning rate (default {d.lr:g})")
    f.add_argument(
        "--batch-size", type=int, default=None, help=f"batch size (default {d.batch_size})"
    )
    f.add_argument("--seed", type=arg_types.seed, default=None, help=f"seed (default {d.seed})")
    f.add_argument(
        "--eq-variants",
        type=int,
        default=d.eq.variants,
        help="EQ copies of each training note to train on beside it, as `tune vae --eq-variants` "
        f"made them for the model's study (default {d.eq.variants})",
    )
    f.add_argument(
        "--eq-db",
        type=float,
        default=d.eq.db,
        help=f"standard deviation of each EQ curve's cosine terms, dB (default {d.eq.db:g})",
    )
    f.add_argument(
        "--eq-seed",
        type=arg_types.seed,
        default=None,
        help="seed of the EQ curves (default: --seed, as `tune vae` draws them)",
    )
    f.add_argument("--device", default="auto", metavar="auto|cpu|cuda", help="device")
    f.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    f.set_defaults(func=run_finetune, on_interrupt="run the same command again to continue it")

    c = subparsers.add_parser(
        "fit-codes",
        help="store with a model the distribution of its training notes' codes",
        description="Encode the training split of DATASET with the model and store the Gaussian "
        "of the codes in its config.json; `samplegen generate random` then draws from it. Models "
        "from `samplegen tune vae`, `finetune` and `run` already carry it.",
    )
    c.add_argument("--model", required=True, metavar="DIR", help="model folder (e.g. combined)")
    c.add_argument("--data", required=True, metavar="DATASET", help="prepared dataset folder")
    c.add_argument(
        "--out", default=None, metavar="DIR", help="model folder to write (default: --model)"
    )
    c.add_argument("--device", default="cpu", metavar="cpu|cuda", help="device")
    c.add_argument(
        "--components",
        type=int,
        default=COMPONENTS,
        help=f"most Gaussians in the mixture (default {COMPONENTS})",
    )
    c.set_defaults(func=run_fit_codes)

    r = subparsers.add_parser(
        "refit",
        help="train a VAE study's selected model again with the validation notes",
        description="After every choice is made on validation: retrace the chained VAE study's "
        "selected trial (its configuration, seed and schedule, to its chosen epoch) on the "
        "training and validation notes, export it with the outer model, and optionally fine-tune "
        "it as `samplegen finetune` would (no selection: validation is trained on). The test "
        "split is never read. Needs Ray (started locally unless --address).",
    )
    r.add_argument("--study", required=True, metavar="STUDY", help="the chained VAE study folder")
    r.add_argument("--outer", required=True, metavar="DIR", help="the study's outer model folder")
    r.add_argument("--data", required=True, metavar="DATASET", help="the dataset it encoded")
    r.add_argument("--out", required=True, metavar="DIR", help="combined model folder to write")
    r.add_argument(
        "--work",
        default=None,
        metavar="DIR",
        help="refit dataset, encodings and inner model (default: OUT.refit-work; reused)",
    )
    r.add_argument(
        "--eq-variants",
        type=int,
        default=d.eq.variants,
        help=f"EQ copies of each training note, as `tune vae` made them (default {d.eq.variants})",
    )
    r.add_argument("--eq-db", type=float, default=d.eq.db, help=f"EQ dB (default {d.eq.db:g})")
    r.add_argument(
        "--seed", type=arg_types.seed, default=0, help="seed of the EQ copies and fine-tuning"
    )
    r.add_argument(
        "--refine-steps", type=int, default=None, help="code refinement (default: the VAE's)"
    )
    r.add_argument(
        "--finetune-epochs",
        type=int,
        default=0,
        help="end-to-end fine-tuning epochs after the refit (default 0: none)",
    )
    r.add_argument("--address", default=None, help="Ray cluster address (default: start locally)")
    r.set_defaults(func=run_refit)


def run_train(args: argparse.Namespace) -> int:
    """Handler of `samplegen train`."""
    from samplegen.platform.longrun import train_config

    train_config(
        args.config,
        args.data,
        args.out,
        epochs=args.epochs,
        device=args.device,
        amp=args.amp,
        seed=args.seed,
        stall_window=args.stall_window,
        overfit_limit=args.overfit_limit,
        train_subset=args.train_subset,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        echo=None if args.quiet else (lambda m: print(m, flush=True)),
    )
    return 0


def run_finetune(args: argparse.Namespace) -> int:
    """Handler of `samplegen finetune`."""
    import dataclasses

    from samplegen.platform.encoded import EqAugment
    from samplegen.platform.finetune import FinetuneSettings, finetune_combined

    given = {
        "epochs": args.epochs,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "seed": args.seed,
    }
    settings = FinetuneSettings(**{k: v for k, v in given.items() if v is not None})
    eq_seed = settings.seed if args.eq_seed is None else args.eq_seed
    settings = dataclasses.replace(settings, eq=EqAugment(args.eq_variants, args.eq_db, eq_seed))
    record = finetune_combined(
        args.model,
        args.data,
        args.out,
        settings=settings,
        device=args.device,
        echo=None if args.quiet else (lambda m: print(m, flush=True)),
    )
    if record.get("skipped"):
        print(f"{args.out}: the model as it was fine-tuned before ({record['kept']} weights kept)")
        return 0
    before, after = record["val_recon_before"], record["val_recon_after"]
    print(
        f"validation loss {before:.4g} -> {after:.4g}; kept the {record['kept']} weights in {args.out}"
    )
    return 0


def run_fit_codes(args: argparse.Namespace) -> int:
    """Handler of `samplegen fit-codes`."""
    from samplegen.platform.code_fit import fit_model_folder

    fit_model_folder(
        args.model, args.data, args.out, device=args.device, components=args.components
    )
    return 0


def run_refit(args: argparse.Namespace) -> int:
    """Handler of `samplegen refit`."""
    from pathlib import Path

    from samplegen.errors import SamplegenError
    from samplegen.platform.encoded import EqAugment
    from samplegen.platform.finetune import FinetuneSettings
    from samplegen.platform.refit import refit_chain
    from samplegen.platform.study import ensure_ray

    if args.finetune_epochs < 0:
        raise SamplegenError(
            f"--finetune-epochs: must be >= 0 (0: none), got {args.finetune_epochs}"
        )
    eq = EqAugment(args.eq_variants, args.eq_db, args.seed)
    tune = (
        FinetuneSettings(epochs=args.finetune_epochs, seed=args.seed, eq=eq)
        if args.finetune_epochs
        else None
    )
    out = Path(args.out)
    if not (Path(args.study) / "best_config.json").is_file():
        raise SamplegenError(f"--study {args.study}: no best_config.json (a finished VAE study?)")
    ensure_ray(address=args.address)
    path = refit_chain(
        args.study,
        args.outer,
        args.data,
        out,
        work=args.work or out.parent / f"{out.name}.refit-work",
        refine_steps=args.refine_steps,
        eq=eq,
        finetune=tune,
        echo=lambda m: print(m, flush=True),
    )
    print(f"refit model: {path}")
    return 0
