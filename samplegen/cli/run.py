"""`samplegen run`: the main job, the whole chain in one command (resumable)."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from samplegen.cli import arg_types
from samplegen.errors import SamplegenError


def register(subparsers: Any) -> None:
    """Add the `run` command."""
    p = subparsers.add_parser(
        "run",
        help="the whole chain: dataset, outer study, VAE study, evaluation, sounds, audition page",
        description=(
            "Run the whole chain into --out. Interrupted? Run the same command again: finished "
            "stages are kept and the run continues where it stopped."
        ),
    )
    p.add_argument("--preset", default="quick", metavar="quick|full", help="budget (default quick)")
    p.add_argument(
        "--data",
        default="builtin",
        metavar="SOURCE",
        help="folder of samples, builtin[:fluidr3|timgm6mb] or a URI (default builtin)",
    )
    p.add_argument(
        "--out", default="runs/main", metavar="DIR", help="run folder (default runs/main)"
    )
    p.add_argument("--repr", default="stft", metavar="stft|wave", help="representation")
    p.add_argument("--seed", type=arg_types.seed, default=0, help="seed (default 0)")
    p.add_argument(
        "--variations",
        action="store_true",
        help="add the SoundFonts' variation presets of the training programs as training-only "
        "notes (built-in FluidR3 library only)",
    )
    p.add_argument(
        "--refit",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="after every choice is made on validation, train the selected VAE again with the "
        "validation notes among its training notes (default: the preset's; off in both)",
    )
    p.add_argument(
        "--rescore",
        type=int,
        default=None,
        metavar="N",
        help="score the VAE study's best N trials again with refined codes, as the final model "
        "encodes, and keep the best (default: the preset's; 1 keeps the study's own choice)",
    )
    p.add_argument(
        "--outer-space",
        default=None,
        metavar="FILE",
        help="search space (YAML) of the outer study instead of the preset's; its `model` is the "
        "outer model searched",
    )
    p.add_argument(
        "--vae-space",
        default=None,
        metavar="FILE",
        help="search space (YAML) of the VAE study instead of the preset's; its `model` is the "
        "inner model searched (vae, bounded_ae or vq_vae)",
    )
    p.add_argument("--address", default=None, help="Ray cluster address (default: start locally)")
    p.add_argument(
        "--num-cpus", type=arg_types.positive_int, default=None, help="CPUs for a local Ray"
    )
    p.add_argument(
        "--autoscaling",
        action="store_true",
        help="allow GPU requests on a cluster whose GPU workers are not up yet",
    )
    p.add_argument(
        "--cpus-per-trial",
        type=float,
        default=None,
        help="CPUs per trial in both studies (default: the preset's, 1)",
    )
    p.add_argument(
        "--gpus-per-trial",
        type=float,
        default=None,
        help="GPUs per trial in both studies; 0.25 packs four trials per GPU (default: the "
        "preset's: 0 in quick, 0.25 in full)",
    )
    p.add_argument(
        "--stage-tasks",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the single-model stages (the outer model's final training, fine-tuning, the "
        "refit, evaluation, sounds) as Ray tasks, on a node with the GPUs they ask for, instead "
        "of in this process (default: as tasks when the trials use GPUs)",
    )
    p.add_argument(
        "--stage-gpus",
        type=float,
        default=None,
        metavar="G",
        help="GPUs each stage task holds; implies --stage-tasks (default: 1 when the trials use "
        "GPUs, else 0)",
    )
    p.add_argument(
        "--stage-cpus",
        type=float,
        default=None,
        metavar="N",
        help="CPUs each stage task holds, and torch's threads in it; implies --stage-tasks "
        "(default: a trial's, --cpus-per-trial)",
    )
    p.add_argument(
        "--wandb",
        action="store_true",
        help="log both studies' trials to Weights & Biases (offline with WANDB_MODE=offline)",
    )
    p.add_argument("--wandb-project", default="samplegen", help="W&B project (default samplegen)")
    p.add_argument(
        "--storage",
        default=None,
        help="where the two studies live: a folder or an s3:// / gs:// URI (default: the run "
        "folder); on a cluster of several nodes, one every node reaches",
    )
    p.set_defaults(
        func=run,
        on_interrupt="run the same command again to continue it (finished stages are kept)",
    )


def run(args: argparse.Namespace) -> int:
    """Handler of `samplegen run`."""
    from samplegen.cli.job_paths import refuse_relative_outputs
    from samplegen.platform.pipeline import run_pipeline
    from samplegen.platform.presets import get_preset, with_spaces

    refuse_relative_outputs(("--out", args.out), ("--storage", args.storage))

    preset = with_spaces(get_preset(args.preset), outer=args.outer_space, inner=args.vae_space)
    if args.variations:
        preset = dataclasses.replace(preset, variations=True)
    if args.refit is not None:
        preset = dataclasses.replace(preset, refit=args.refit)
    if args.rescore is not None:
        if args.rescore < 1:
            # Named as the flag, not as the preset's field it replaces.
            raise SamplegenError(f"--rescore: must be >= 1 (1: off), got {args.rescore}")
        preset = dataclasses.replace(preset, rescore_trials=args.rescore)
    if args.cpus_per_trial is not None:
        preset = dataclasses.replace(preset, cpus_per_trial=args.cpus_per_trial)
    if args.gpus_per_trial is not None:
        preset = dataclasses.replace(preset, gpus_per_trial=args.gpus_per_trial)
    run_pipeline(
        preset,
        args.out,
        source=args.data,
        representation=args.repr,
        seed=args.seed,
        address=args.address,
        num_cpus=args.num_cpus,
        autoscaling=args.autoscaling,
        storage=args.storage,
        wandb_project=args.wandb_project if args.wandb else None,
        stage_tasks=args.stage_tasks,
        stage_gpus=args.stage_gpus,
        stage_cpus=args.stage_cpus,
    )
    return 0
