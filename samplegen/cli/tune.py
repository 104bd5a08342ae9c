"""`samplegen tune outer ...` (a Ray Tune study of outer auto-encoders) and `samplegen study plot`.

`add_study_arguments` and `study_config_from_args` are shared with other study commands (an inner
`tune vae` study adds its own data options and calls `run_study` the same way).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from samplegen.cli import arg_types
from samplegen.cli.job_paths import refuse_relative_outputs

OUTER_KINDS: tuple[str, ...] = ("outer_stft", "outer_wave")


def _opt_float(text: str) -> float | None:
    """A number, or 0 for off (None); a negative one is refused rather than taken for off."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number (0: off), got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (0: off), got {value:g}")
    return None if value == 0 else value


def add_study_arguments(p: argparse.ArgumentParser, *, default_model: str) -> None:
    from samplegen.platform.presets import packaged_preset_spaces

    """Every option of a study (`StudyConfig` fields), except where the data comes from."""
    p.add_argument("--name", required=True, help="study name: its folder under --storage")
    p.add_argument(
        "--model", default=None, help=f"model (default: the --space file's, else {default_model})"
    )
    p.set_defaults(default_model=default_model)
    p.add_argument(
        "--search", default="random", metavar="grid|random|gp|tpe", help="searcher (default random)"
    )
    p.add_argument(
        "--scheduler",
        default="fifo",
        metavar="fifo|asha|cutoff|asha+cutoff",
        help="trial scheduler (default fifo)",
    )
    p.add_argument("--trials", type=int, default=10, help="trials (grid: ignored; default 10)")
    p.add_argument("--epochs", type=int, default=20, help="max epochs per trial (default 20)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per trial (default 1)")
    p.add_argument(
        "--gpus-per-trial",
        type=float,
        default=0.0,
        help="GPUs per trial; 0.25 packs four trials per GPU (default 0)",
    )
    p.add_argument("--max-concurrent", type=int, default=None, help="cap on parallel trials")
    p.add_argument(
        "--storage",
        default="studies",
        help="folder or s3:// / gs:// URI holding studies (default ./studies)",
    )
    p.add_argument(
        "--space",
        default=None,
        metavar="FILE",
        help="search space YAML to use, or a packaged space by name ("
        + ", ".join(packaged_preset_spaces())
        + "); default: the model's own",
    )
    p.add_argument("--seed", type=arg_types.seed, default=0, help="seed (default 0)")
    p.add_argument(
        "--max-params",
        type=int,
        default=20_000_000,
        help="reject models with more parameters (0 = no limit; default 20M)",
    )
    p.add_argument(
        "--train-subset",
        type=arg_types.positive_int,
        default=None,
        help="train on k diverse samples",
    )
    p.add_argument("--stall-window", type=int, default=5, help="stall rule window (0 = off)")
    p.add_argument("--stall-min-change", type=float, default=0.005, help="stall threshold")
    p.add_argument(
        "--overfit-limit", type=_opt_float, default=1.4, help="stop at val/train above (0 = off)"
    )
    p.add_argument("--cutoff-factor", type=float, default=3.0, help="cut-off factor (default 3)")
    p.add_argument(
        "--cutoff-grace", type=int, default=20, help="cut-off from this epoch (default 20)"
    )
    p.add_argument("--asha-grace", type=int, default=1, help="ASHA grace period in epochs")
    p.add_argument("--asha-reduction", type=float, default=2.0, help="ASHA reduction factor")
    p.add_argument("--max-failures", type=int, default=2, help="restarts per crashed trial")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=1,
        help="epochs between checkpoints (a new best epoch is always saved)",
    )
    p.add_argument("--amp", action="store_true", help="bf16 mixed precision on CUDA")
    p.add_argument("--device", default="auto", metavar="auto|cpu|cuda", help="trial device")
    p.add_argument("--no-reuse-actors", action="store_true", help="a fresh actor per trial")
    p.add_argument(
        "--autoscaling",
        action="store_true",
        help="allow GPU requests on a cluster whose GPU workers are not up yet",
    )
    p.add_argument("--time-budget", type=float, default=None, help="stop the study after S s")
    p.add_argument("--fail-at-epoch", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--fail-probability", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--fail-seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument(
        "--examples", action="store_true", help="write a spectrogram + WAV at each trial's end"
    )
    p.add_argument("--no-export", action="store_true", help="do not export the best model")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--wandb", action="store_true", help="log trials to Weights & Biases")
    p.add_argument("--wandb-project", default="samplegen", help="W&B project")
    p.add_argument("--wandb-group", default=None, help="W&B group (default: the study name)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: start locally)")
    p.add_argument(
        "--num-cpus", type=arg_types.positive_int, default=None, help="CPUs for a local Ray"
    )
    p.add_argument("--resume", action="store_true", help="continue an interrupted study")


def space_arg(value: str | None) -> str | None:
    """--space: a file that exists, else a preset's packaged space of that name, else the value
    as given (reading it then fails, naming it)."""
    from samplegen.platform.presets import space_path

    if value is None or Path(value).exists():
        return value
    return space_path(value)


def resolve_space_and_model(args: argparse.Namespace) -> None:
    """Settle --space (a file, or a packaged preset space's name) and --model (when not given,
    the space's model, else the command's default) in `args`."""
    from samplegen.platform.spaces import load_space

    given = args.space
    args.space = space_arg(args.space)
    args.model_option = "--model"
    if args.model is None:
        args.model = load_space(args.space).model if args.space else args.default_model
        if args.space:
            args.model_option = f"--space {given} (its model)"


def study_config_from_args(args: argparse.Namespace, data: str = "") -> Any:
    """The StudyConfig the options describe (after `resolve_space_and_model`)."""
    from samplegen.platform.downloads import location_fs
    from samplegen.platform.study import StudyConfig

    location_fs(args.storage)  # a storage URI pyarrow cannot open fails before Ray starts

    return StudyConfig(
        name=args.name,
        model=args.model,
        data=data,
        search=args.search,
        scheduler=args.scheduler,
        trials=args.trials,
        epochs=args.epochs,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        max_concurrent=args.max_concurrent,
        storage=args.storage,
        space=args.space,
        seed=args.seed,
        max_params=args.max_params or None,
        train_subset=args.train_subset,
        stall_window=args.stall_window or None,
        stall_min_change=args.stall_min_change,
        overfit_limit=args.overfit_limit,
        cutoff_factor=args.cutoff_factor,
        cutoff_grace=args.cutoff_grace,
        asha_grace=args.asha_grace,
        asha_reduction=args.asha_reduction,
        max_failures=args.max_failures,
        checkpoint_every=args.checkpoint_every,
        amp=args.amp,
        device=args.device,
        reuse_actors=not args.no_reuse_actors,
        autoscaling=args.autoscaling,
        time_budget_s=args.time_budget,
        fail_at_epoch=args.fail_at_epoch,
        fail_probability=args.fail_probability,
        fail_seed=args.fail_seed,
        write_examples=args.examples,
        export_best=not args.no_export,
        progress=not args.quiet,
        wandb=args.wandb,
        wandb_project=args.wandb_project,
        wandb_group=args.wandb_group,
        address=args.address,
        num_cpus=args.num_cpus,
    )


def _check_outer_model(model: str, option: str = "--model") -> None:
    from samplegen.errors import SamplegenError
    from samplegen.models.registry import model_class, model_names

    outer = [n for kind in OUTER_KINDS for n in model_names(kind)]
    if model not in outer:
        model_class(model)  # unknown names get the registry's message
        raise SamplegenError(
            f"{option}: {model!r} is not an outer auto-encoder (outer models: "
            f"{', '.join(sorted(outer))})"
        )


def _check_dataset(option: str, path: str) -> None:
    """Fail before Ray starts when a dataset option names no prepared dataset."""
    from samplegen.platform.datasets import require_dataset_info

    require_dataset_info(path, label=f"{option} {path}")


def run_outer(args: argparse.Namespace) -> int:
    """Handler of `samplegen tune outer`."""
    from samplegen.platform.study import ensure_ray, run_study

    resolve_space_and_model(args)
    _check_outer_model(args.model, args.model_option)
    refuse_relative_outputs(("--storage", args.storage))
    _check_dataset("--data", args.data)
    config = study_config_from_args(args, data=args.data)
    ensure_ray(config.address, config.num_cpus)
    result = run_study(config, resume=args.resume)
    print(f"study: {result.path}")
    if result.best_model:
        print(f"best model: {result.best_model}")
    if result.interrupted:
        print(f"samplegen: {result.note}", file=sys.stderr)
        return 130
    return _no_loss_is_a_failure(result.best, result.path)


def _no_loss_is_a_failure(best: Any, path: str) -> int:
    # A study whose every trial failed ran, but made nothing: its command (and a Ray job of it)
    # must not report success.
    if best is not None:
        return 0
    print(
        f"samplegen: no trial produced a loss; their errors are in {path} (results.csv, and "
        "error.txt in each trial's folder)",
        file=sys.stderr,
    )
    return 1


def run_vae(args: argparse.Namespace) -> int:
    """Handler of `samplegen tune vae`: encode once with the frozen outer model, study inner models."""
    from samplegen.errors import SamplegenError
    from samplegen.platform.chain import (
        check_inner_model,
        check_rescore,
        encodings_dir,
        resolve_outer,
        run_chain,
    )
    from samplegen.platform.encoded import EqAugment
    from samplegen.platform.study import StudyFiles, ensure_ray

    resolve_space_and_model(args)
    check_inner_model(args.model, f"{args.model_option}: ")
    if args.refine_steps is not None and args.refine_steps < 0:
        raise SamplegenError(f"--refine-steps: must be >= 0, got {args.refine_steps}")
    check_rescore(args.rescore, args.model, args.refine_steps)
    # Path and setting mistakes fail before Ray starts.
    eq = EqAugment(args.eq_variants, args.eq_db, args.seed)
    refuse_relative_outputs(("--storage", args.storage), ("--encoded", args.encoded))
    resolve_outer(args.outer)
    if args.data:
        _check_dataset("--data", args.data)
    config = study_config_from_args(args)
    encodings_dir(StudyFiles(config.storage, config.name), args.encoded)
    ensure_ray(config.address, config.num_cpus)
    result = run_chain(
        config,
        args.outer,
        data=args.data,
        encoded=args.encoded,
        resume=args.resume,
        refine_steps=args.refine_steps,
        rescore=args.rescore,
        eq=eq,
    )
    print(f"encodings: {result.encoded}")
    print(f"study: {result.study.path}")
    if result.combined_model:
        print(f"best combined model: {result.combined_model}")
    if result.study.interrupted:
        print(f"samplegen: {result.study.note}", file=sys.stderr)
        return 130
    return _no_loss_is_a_failure(result.study.best, result.study.path)


def run_plot(args: argparse.Namespace) -> int:
    """Handler of `samplegen study plot`."""
    from pathlib import Path

    from samplegen.errors import SamplegenError
    from samplegen.platform.study import plot_study

    if args.out is not None and Path(args.out).is_dir():
        image = Path(args.out) / "progress.png"
        raise SamplegenError(f"--out {args.out}: is a folder; give the image's file path ({image})")
    out = plot_study(args.study, args.out)
    print(f"wrote {out}")
    return 0


def register(subparsers: Any) -> None:
    """Add `tune outer`, `tune vae` and `study plot`."""
    from samplegen.platform.encoded import EqAugment

    tune = subparsers.add_parser("tune", help="hyper-parameter studies with Ray Tune")
    tsub = tune.add_subparsers(dest="tune_command", metavar="SUBCOMMAND")
    outer = tsub.add_parser(
        "outer",
        help="search outer auto-encoders on a prepared dataset",
        description=(
            "Run a Ray Tune study of one outer auto-encoder kind on a prepared dataset: results "
            "table, best configuration and best model under STORAGE/NAME."
        ),
    )
    outer.add_argument("--data", required=True, metavar="DATASET", help="prepared dataset folder")
    add_study_arguments(outer, default_model="conv2d_ae")
    outer.set_defaults(func=run_outer)

    vae = tsub.add_parser(
        "vae",
        help="search inner models (vae, bounded_ae, vq_vae) over a frozen outer encoder",
        description=(
            "Encode every sample once with the frozen outer model, run a study of inner models on "
            "the encodings only, select on the end-to-end validation loss (through the outer "
            "decoder) and export the best combined model to STORAGE/NAME/best_combined."
        ),
    )
    vae.add_argument(
        "--outer",
        required=True,
        metavar="MODEL_DIR_OR_STUDY",
        help="outer model directory, or an outer study folder (its best model is used)",
    )
    vae.add_argument(
        "--data",
        default=None,
        metavar="DATASET",
        help="dataset to encode (default: the one the outer study ran on)",
    )
    vae.add_argument(
        "--encoded",
        default=None,
        metavar="DIR",
        help="encodings folder (default STORAGE/NAME-encoded; required when --storage is a URI: "
        "the encodings are kept locally)",
    )
    vae.add_argument(
        "--refine-steps",
        type=int,
        default=None,
        metavar="N",
        help="optimisation steps refining each code of the exported combined model "
        "(VAE only; default: none)",
    )
    vae.add_argument(
        "--rescore",
        type=int,
        default=1,
        metavar="N",
        help="score the study's best N trials again with codes refined by --refine-steps, as "
        "the combined model encodes, and export the lowest refined validation loss "
        "(default 1: the study's own choice)",
    )
    vae.add_argument(
        "--eq-variants",
        type=int,
        default=0,
        metavar="K",
        help="add K copies of each training note through random EQ curves to the inner "
        "study's training rows (STFT outer models; default 0)",
    )
    vae.add_argument(
        "--eq-db",
        type=float,
        default=EqAugment.db,
        metavar="DB",
        help=f"standard deviation of each EQ curve's cosine terms, dB (default {EqAugment.db:g})",
    )
    add_study_arguments(vae, default_model="vae")
    vae.set_defaults(func=run_vae)

    study = subparsers.add_parser("study", help="inspect studies")
    ssub = study.add_subparsers(dest="study_command", metavar="SUBCOMMAND")
    plot = ssub.add_parser("plot", help="draw a study's search progress as PNG")
    plot.add_argument(
        "study", metavar="STUDY", help="the study folder (STORAGE/NAME), or its s3:// / gs:// URI"
    )
    plot.add_argument("--out", default=None, help="PNG path (default STUDY/progress.png)")
    plot.set_defaults(func=run_plot)


def main_outer(argv: Sequence[str] | None = None) -> int:
    """`samplegen tune outer` as a standalone program (jobs/tune_outer.py)."""
    from samplegen.cli.main import main

    return main(["tune", "outer", *(argv if argv is not None else sys.argv[1:])])
