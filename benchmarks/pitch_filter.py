"""How many of the built-in library's melodic notes `data prepare --pitch-check` turns away.

Usage:
  .venv/bin/python benchmarks/pitch_filter.py [--soundfont fluidr3] [--velocity 100] [--no-append]

Every note of GM programs 0-111 (112-127 are percussive and sound effects, with no pitch to check)
at one velocity, as the check sees it (samplegen.platform.pitch, tolerance 10%): rejected by the
original's rule alone (the loudest peak or the first strong low peak at the named pitch), and
rejected once the fundamental found by subharmonic summation (samplegen.dsp.f0) may match too,
with the notes still rejected and what each rule measured. The library's notes are rendered at
their named key, so a rejection means the rule or the instrument's sound disagrees with the key.
Renders the library on first use (cached). Appends a dated section to RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_file import publish  # noqa: E402

TOLERANCE = 0.1
MELODIC = range(112)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--soundfont", default="fluidr3", help="fluidr3 or timgm6mb (default fluidr3)")
    p.add_argument("--velocity", type=int, default=100, help="the velocity rendered (default 100)")
    p.add_argument("--no-append", action="store_true")
    a = p.parse_args(argv)

    from samplegen.dsp.audio import load_wave
    from samplegen.dsp.config import CodecConfig
    from samplegen.dsp.library import ensure_library, note_to_midi
    from samplegen.platform.names import midi_to_hz
    from samplegen.platform.pitch import check_pitch, estimate_pitch

    codec = CodecConfig()
    folder = ensure_library(a.soundfont)  # the whole library, as `data prepare builtin` uses it
    old_rejects, new_rejects, count = [], [], 0
    for path in sorted(folder.glob(f"p*_v{a.velocity}.wav")):
        if int(path.stem[1:4]) not in MELODIC:
            continue
        note = path.stem.rsplit("_", 2)[-2]
        target = midi_to_hz(note_to_midi(note))
        wave, _ = load_wave(path, codec)
        count += 1
        loudest, first = estimate_pitch(wave, codec.sample_rate)
        old_ok = any(f is not None and abs(f / target - 1) <= TOLERANCE for f in (loudest, first))
        result = check_pitch(wave, codec.sample_rate, [target], TOLERANCE)
        row = (path.stem, target, loudest, first, result.f0_hz)
        if not old_ok:
            old_rejects.append(row)
        if not result.ok:
            new_rejects.append(row)
    if count == 0:
        raise SystemExit(f"{folder}: no notes at velocity {a.velocity}")

    def hz(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    given = " ".join(sys.argv[1:] if argv is None else argv)
    command = f".venv/bin/python benchmarks/pitch_filter.py {given}".rstrip()
    lines = [
        f"## How many library notes the pitch check turns away ({dt.date.today().isoformat()})",
        "",
        f"Command: `{command}`",
        f"Machine: {platform.machine()}, {platform.system()} (no GPU); library: {folder.name}.",
        "",
        f"{count} melodic notes (GM programs 0-111) at velocity {a.velocity}, tolerance "
        f"{TOLERANCE:.0%}: the loudest peak or the first strong low peak alone reject "
        f"{len(old_rejects)}; with the subharmonic-summation fundamental as a third candidate, "
        f"{len(new_rejects)}.",
        "",
        "| still rejected | named Hz | loudest peak | first strong peak | fundamental |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {name} | {target:.1f} | {hz(loud)} | {hz(first)} | {hz(f0)} |"
        for name, target, loud, first, f0 in new_rejects
    ]
    accepted = sorted({r[0] for r in old_rejects} - {r[0] for r in new_rejects})
    lines += [
        "",
        f"Accepted now, rejected by the two peaks alone: {', '.join(accepted) or 'none'}.",
    ]
    publish("\n".join(lines) + "\n", append=not a.no_append)


if __name__ == "__main__":
    main()
