"""`samplegen export MODEL --format onnx|torchscript --out DIR`: encoder + decoder for plug-in hosts."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the `export` command."""
    p = subparsers.add_parser(
        "export",
        help="export a model's encoder and decoder (ONNX or TorchScript) for a plug-in host",
        description="Write encoder and decoder graphs (dynamic batch) and export.json (shapes, "
        "names, codec settings, latent statistics, check against PyTorch).",
    )
    p.add_argument("model", type=Path, help="trained model directory")
    p.add_argument(
        "--format", choices=("onnx", "torchscript"), default="onnx", help="(default onnx)"
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--device", default="cpu", help="torch device used while exporting")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from samplegen.generate.export import export_model

    result = export_model(args.model, args.out, args.format, device=args.device)
    diffs = ", ".join(f"{k} {v:.2e}" for k, v in result.max_abs_diff.items())
    print(
        f"exported {result.encoder.name} and {result.decoder.name} to {result.directory} "
        f"(sidecar {result.sidecar.name}; max |export - pytorch|: {diffs})"
    )
    return 0
