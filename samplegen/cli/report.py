"""`samplegen report RUN_DIR`: the static audition page of a run folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from samplegen.errors import SamplegenError


def register(subparsers: Any) -> None:
    """Add the `report` command."""
    p = subparsers.add_parser(
        "report",
        help="write the audition page (static HTML) of a run folder",
        description="Write a self-contained static HTML page presenting a run folder: dataset, "
        "studies, best models, evaluation and generated sounds, with players and spectrograms. "
        "Open it straight from the file system; it needs no server and no network.",
    )
    p.add_argument(
        "run_dir", type=Path, help="run folder (dataset/, *_study/, models/, sounds/ ...)"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="page path (default RUN_DIR/index.html; keep it "
        "inside the run folder so relative links to the audio work)",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from samplegen.generate.page import build_page

    if not args.run_dir.is_dir():
        raise SamplegenError(f"{args.run_dir}: no such run folder")
    missing: list[str] = []
    path = build_page(args.run_dir, args.out, missing=missing)
    print(f"audition page written: {path}")
    if missing:
        # A folder that is not a `samplegen run` folder gives a page of gaps: say so here too.
        print(
            f"note: {len(missing)} part(s) of a run folder missing (listed on the page): "
            + ", ".join(missing[:8])
            + (" ..." if len(missing) > 8 else ""),
            file=sys.stderr,
        )
    return 0
