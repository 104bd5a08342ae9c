"""`samplegen data prepare|info`: build a dataset from samples and describe one."""

from __future__ import annotations

import argparse
import os
from typing import Any

from samplegen.cli import arg_types


def register(subparsers: Any) -> None:
    """Add the `data` command group."""
    data = subparsers.add_parser("data", help="prepare and inspect datasets")
    sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    prep = sub.add_parser(
        "prepare",
        help="build a dataset (Parquet + report) from a folder, the built-in library or a URI",
        description=(
            "Read, check, split and encode samples with Ray Data. SOURCE is a folder (recursive), "
            "'builtin', 'builtin:fluidr3', 'builtin:timgm6mb', or a pyarrow URI (file://, s3://, gs://)."
        ),
    )
    prep.add_argument("source", metavar="SOURCE")
    prep.add_argument("--out", required=True, metavar="DATASET", help="dataset folder to write")
    # No argparse `choices`: CodecConfig names the bad value in one line, exit code 2.
    prep.add_argument(
        "--repr", default="stft", metavar="stft|wave", help="representation (default stft)"
    )
    prep.add_argument(
        "--notes",
        default="C3,C4,C5",
        help="notes to keep by file name, or 'all' (default C3,C4,C5)",
    )
    prep.add_argument("--duration", type=float, default=None, help="seconds per note (default 2.0)")
    prep.add_argument(
        "--sample-rate", type=int, default=None, help="sample rate in Hz (default 44100)"
    )
    prep.add_argument(
        "--pitch-check", action="store_true", help="also check the pitch of the audio"
    )
    prep.add_argument(
        "--pitch-tolerance", type=float, default=0.1, help="relative tolerance (default 0.1)"
    )
    prep.add_argument(
        "--augment-mixes", type=int, default=0, metavar="N", help="training-only mixes to add"
    )
    prep.add_argument(
        "--variations",
        action="store_true",
        help="add the SoundFonts' variation presets of the training programs as training-only "
        "notes (builtin / builtin:fluidr3 only)",
    )
    prep.add_argument(
        "--mix-range", default="0.3,0.7", metavar="LO,HI", help="mix amount range (default 0.3,0.7)"
    )
    prep.add_argument(
        "--splits",
        default="0.8,0.1,0.1",
        metavar="TR,VA,TE",
        help="split fractions (default 0.8,0.1,0.1)",
    )
    prep.add_argument(
        "--seed", type=arg_types.seed, default=0, help="seed for augmentation (default 0)"
    )
    prep.add_argument(
        "--batch-size", type=int, default=16, help="files per Ray Data task (default 16)"
    )
    prep.add_argument(
        "--num-cpus",
        type=arg_types.positive_int,
        default=None,
        help="CPUs for a local Ray started here",
    )
    prep.add_argument(
        "--force",
        action="store_true",
        help="rebuild even when the dataset is up to date, scanning and encoding every file again "
        "(the work an interrupted build kept is still used)",
    )
    prep.set_defaults(
        func=_prepare,
        on_interrupt="run the same command again to continue it (files scanned and encoded are kept)",
    )

    info = sub.add_parser(
        "info",
        help="print a dataset's settings, its counts (rejected and filtered files by reason) and "
        "the path of its report (report.md names every file)",
    )
    info.add_argument("dataset", metavar="DATASET")
    info.set_defaults(func=_info)

    data.set_defaults(func=lambda _args: data.print_help() or 2)


def _ensure_ray(num_cpus: int | None) -> None:
    import logging

    from samplegen.platform.study import ensure_ray

    # Ray Data logs every execution plan at INFO; the command prints its own progress lines.
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    # A cluster that RAY_ADDRESS names, or a new local instance, never one that `ray start` left
    # running on this machine: as the studies do.
    ensure_ray(num_cpus=num_cpus)


def _prepare(args: argparse.Namespace) -> int:
    from samplegen.dsp.config import CodecConfig
    from samplegen.platform.datasets import check_prepare_inputs, prepare_dataset

    changes: dict[str, Any] = {"representation": args.repr}
    if args.duration is not None:
        changes["duration"] = args.duration
    if args.sample_rate is not None:
        changes["sample_rate"] = args.sample_rate
    config = CodecConfig().replace(**changes)
    check_prepare_inputs(args.source, args.out)
    _ensure_ray(args.num_cpus)
    prepare_dataset(
        args.source,
        args.out,
        config,
        notes=args.notes,
        pitch_check=args.pitch_check,
        pitch_tolerance=args.pitch_tolerance,
        augment_mixes=args.augment_mixes,
        mix_range=args.mix_range,
        splits=args.splits,
        seed=args.seed,
        force=args.force,
        batch_size=args.batch_size,
        variations=args.variations,
    )
    return 0


def _info(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from samplegen.platform.datasets import DatasetError, read_dataset_info

    root = Path(args.dataset)
    info = read_dataset_info(root)
    if info is None:
        raise DatasetError(f"{root}: not a samplegen dataset (no dataset.json)")
    c = info["counts"]
    print(f"dataset      {root}")
    print(f"source       {info['source']} ({info['source_kind']})")
    print(f"fingerprint  {info['fingerprint']}   created {info['created']}")
    print(
        f"codec        {info['codec']['representation']} shape {tuple(info['shape'])}, {json.dumps(info['codec'])}"
    )
    print(f"settings     {json.dumps(info['settings'])}")
    print(
        f"files        seen {c['seen']}, kept {c['kept']}, rejected {c['rejected']}, filtered {c['filtered']}"
    )
    rows = info["rows_per_split"]
    print(
        f"rows         {c['rows']} (train {rows['train']}, validation {rows['validation']}, test {rows['test']}; {c['augmented']} augmented)"
    )
    report_path = root / "report.json"
    if report_path.is_file():
        report = json.loads(report_path.read_text(encoding="utf-8"))
        for status in ("rejected", "filtered"):
            reasons = report.get(f"{status}_by_reason", {})
            if reasons:
                print(f"{status:<12} " + ", ".join(f"{r} {n}" for r, n in reasons.items()))
        for w in report.get("warnings", []):
            print(f"warning      {w}")
    print(f"report       {root / 'report.md'}")
    return 0
