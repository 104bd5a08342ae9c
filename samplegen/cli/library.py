"""`samplegen library`: render the built-in sample library (or reuse the cached one)."""

from __future__ import annotations

import argparse
from pathlib import Path

from samplegen.errors import SamplegenError


def _velocities(text: str) -> list[int]:
    values: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            values.append(int(part))
        except ValueError as exc:
            raise SamplegenError(
                f"--velocities: {part!r} is not an integer (expected e.g. 64,100,127)"
            ) from exc
    return values


def _programs(text: str) -> list[int] | None:
    """``"0-7,40"`` -> [0, ..., 7, 40]; ``"all"`` -> None (every program). Range checks are
    make_settings' (it names a program outside 0-127 or a repeated one)."""
    if text.strip().lower() == "all":
        return None
    values: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        lo, dash, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi if dash else lo)
        except ValueError as exc:
            raise SamplegenError(
                f"--programs: {part!r} is not a program number or range (expected e.g. 0-7,40)"
            ) from exc
        if last < first:
            raise SamplegenError(f"--programs: {part!r} is an empty range (write it low-high)")
        values.extend(range(first, last + 1))
    if not values:
        raise SamplegenError("--programs: no program given (expected e.g. 0-7,40 or all)")
    return values


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `library` command."""
    p = subparsers.add_parser(
        "library",
        help="render the built-in sample library from a General MIDI SoundFont",
        description=(
            "Render every General MIDI program (and the standard drum kit) at a few notes and "
            "velocities with FluidSynth into 2 s mono 24-bit WAVs plus metadata.csv and "
            "library.json. Without --out the library goes to the cache ($SAMPLEGEN_CACHE or "
            "~/.cache/samplegen) and is reused when it is already there."
        ),
    )
    p.add_argument(
        "--out", type=Path, default=None, help="render into this folder (default: cache)"
    )
    p.add_argument(
        "--soundfont",
        default="fluidr3",
        help="fluidr3 (default), timgm6mb, or a path to a .sf2/.sf3 file",
    )
    p.add_argument("--notes", default="C3,C4,C5", help="comma-separated notes (default C3,C4,C5)")
    p.add_argument(
        "--velocities", default="64,100,127", help="comma-separated MIDI velocities 1-127"
    )
    p.add_argument(
        "--programs",
        default="all",
        help="GM programs (0-127) to render, e.g. 0-7,40 (default all)",
    )
    p.add_argument("--no-drums", action="store_true", help="leave out the standard drum kit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Render (or find) the library and print its counts and location."""
    import json

    from samplegen.dsp.library import ensure_library, render_library

    notes = [n.strip() for n in str(args.notes).split(",") if n.strip()]
    velocities = _velocities(str(args.velocities))
    include_drums = not args.no_drums
    programs = _programs(str(args.programs))
    if args.out is not None:
        report = render_library(
            args.out,
            args.soundfont,
            notes,
            velocities,
            include_drums=include_drums,
            programs=programs,
        )
        folder = report.out_dir
    else:
        folder = ensure_library(
            args.soundfont,
            notes=notes,
            velocities=velocities,
            include_drums=include_drums,
            programs=programs,
        )
    info = json.loads((folder / "library.json").read_text(encoding="utf-8"))
    c = info["counts"]
    print(f"library: {folder}")
    print(f"soundfont: {info['soundfont']['path']}")
    print(
        f"rendered {c['rendered']}, kept {c['kept']}, silent {c['silent']}, "
        f"missing presets {c['missing_presets']}"
    )
    skipped = ", ".join(f"{s['program_name']} {s['note']} v{s['velocity']}" for s in info["silent"])
    if skipped:
        print(f"silent renders skipped: {skipped}")
    cats = ", ".join(f"{k} {v}" for k, v in c["by_category"].items())
    print(f"categories: {cats}")
    return 0
