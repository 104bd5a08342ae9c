"""`samplegen evaluate MODEL --data DATASET`: quality figures of a trained model on one split."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from samplegen.cli import arg_types


def _run(args: argparse.Namespace) -> int:
    from samplegen.platform.evaluation import evaluate_model
    from samplegen.platform.evaluation.summary import interval_text, other_dataset_warning

    metrics = evaluate_model(
        args.model,
        args.data,
        split=args.split,
        out=args.out,
        griffin_lim_iters=args.griffin_lim_iters,
        device=args.device,
        batch_size=args.batch_size,
        seed=args.seed,
        echo=lambda message: print(message, file=sys.stderr),
    )
    loss = metrics["loss"]
    rms = loss.get("rms_percent")
    ratio = (metrics.get("overfit") or {}).get("ratio")
    interval = interval_text(loss.get("rms_percent_interval"))
    print(
        f"{metrics['model']['name']} on {args.split} ({loss['count']} samples): mean loss "
        f"{loss['mean']:.4g}, RMS {rms:.3f}%"
        + (f" (interval {interval})" if interval else "")
        + (f", overfit {ratio:.3g}" if ratio else "")
        if rms is not None and loss.get("mean") is not None
        else f"{metrics['model']['name']} on {args.split}: loss not available"
    )
    warning = other_dataset_warning(metrics)
    if warning:
        print(f"note: {warning}", file=sys.stderr)
    print(f"metrics: {metrics['files']['metrics']}")
    print(f"summary: {metrics['files']['summary']}")
    return 0


def register(subparsers: Any) -> None:
    """Add the `evaluate` command."""
    p = subparsers.add_parser(
        "evaluate",
        help="measure a trained model on a dataset split",
        description="Measure a trained model (outer or combined) on one split of a prepared "
        "dataset: loss and RMS%, spectral figures before and after Griffin-Lim, per category, "
        "the worst samples, latent statistics, overfit and, for combined models, the same-size "
        "PCA reference. Writes metrics.json and summary.md.",
    )
    p.add_argument("model", type=Path, help="trained model directory (config.json + weights)")
    p.add_argument("--data", type=Path, required=True, help="prepared dataset directory")
    p.add_argument("--split", default="test", help="split to evaluate (default test)")
    p.add_argument(
        "--out", type=Path, default=None, help="output folder (default MODEL/evaluation-SPLIT)"
    )
    p.add_argument(
        "--griffin-lim-iters",
        type=int,
        default=64,
        help="Griffin-Lim iterations for STFT models (default 64)",
    )
    p.add_argument("--device", default="cpu", help="torch device: cpu or cuda (default cpu)")
    p.add_argument("--batch-size", type=int, default=16, help="samples per batch (default 16)")
    p.add_argument("--seed", type=arg_types.seed, default=0, help="Griffin-Lim seed (default 0)")
    p.set_defaults(func=_run)
