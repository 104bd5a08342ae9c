"""Render formant-shifted copies of the training programs' notes, for inner-model exploration.

Not a target benchmark: it makes a folder that `explore_inner.py --extra` adds to training. Each
note (C3, C4, C5) of each training program is rendered K semitones away from its pitch and resampled
back to it, so the pitch is the note's and the whole spectral envelope (resonances, brightness)
moves by -K semitones: an instrument the SoundFont does not have, as a smaller or larger body would
sound. The render lasts 2 s / 2^(K/12), so after resampling every note lasts the library's 2 s and
is released at the same moment as a library note. Only training programs are rendered: a validation
or test program's copy would be a relative of an instrument the model must never have trained on.
Usage: .venv/bin/python benchmarks/render_shifted.py --dataset RUN/dataset --out DIR
  [--shifts -3,3] [--notes C3,C4,C5] [--soundfont fluidr3] [--velocity 100]
"""

import argparse
import csv
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from samplegen.dsp.library import midi_to_note, note_to_midi, render_library
from samplegen.platform.datasets import load_dataset

LENGTH_S = 2.0


def shifted(wave: np.ndarray, semitones: int, length: int) -> np.ndarray:
    """`wave`, rendered `semitones` above its target pitch, stretched back down to it and cut or
    padded to `length` samples."""
    ratio = Fraction(2.0 ** (semitones / 12.0)).limit_denominator(200)
    out = resample_poly(wave, ratio.numerator, ratio.denominator)
    return np.pad(out, (0, max(0, length - len(out))))[:length].astype(np.float32)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True, help="a samplegen dataset; its train programs")
    p.add_argument("--out", required=True, help="folder to render into")
    p.add_argument("--shifts", default="-3,3", help="semitones the envelope moves down, each")
    p.add_argument("--notes", default="C3,C4,C5")
    p.add_argument("--soundfont", default="fluidr3")
    p.add_argument("--velocity", type=int, default=100)
    a = p.parse_args()
    try:
        shifts = [int(s) for s in a.shifts.split(",") if s]
    except ValueError:
        p.error(f"--shifts: give whole semitones separated by commas, got {a.shifts!r}")
    if not shifts or 0 in shifts:
        p.error(f"--shifts: give non-zero semitones, got {a.shifts!r}")
    meta = load_dataset(a.dataset, splits=("train",)).splits["train"].meta
    programs = sorted({m["program"] for m in meta if m["program"] is not None})
    targets = [n for n in a.notes.split(",") if n]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    t0 = time.perf_counter()
    for k in shifts:
        played = {midi_to_note(note_to_midi(n) + k): n for n in targets}
        with tempfile.TemporaryDirectory() as tmp:
            report = render_library(
                tmp,
                a.soundfont,
                list(played),
                [a.velocity],
                include_drums=False,  # a kit's pitches are not one instrument's
                duration=LENGTH_S / 2.0 ** (k / 12.0),
                programs=programs,
            )
            with open(Path(tmp) / "metadata.csv", newline="") as fh:
                rendered = list(csv.DictReader(fh))
            for r in rendered:
                wave, rate = sf.read(Path(tmp) / r["file"], dtype="float32")
                note = played[r["note"]]
                file = f"shift{k:+d}_{Path(r['file']).stem}_as_{note.replace('#', 's')}.wav"
                sf.write(out / file, shifted(wave, k, int(LENGTH_S * rate)), rate, "PCM_24")
                rows.append({"file": file, "note": note, "velocity": a.velocity, "shift": k})
        silent = ", ".join(f"{n.program_name} {n.note}" for n in report.silent)
        print(
            f"shift {k:+d}: {report.kept} notes"
            + (f"; silent, left out: {silent}" if silent else ""),
            flush=True,
        )
    with open(out / "metadata.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=("file", "note", "velocity", "shift"))
        w.writeheader()
        w.writerows(rows)
    print(
        f"{len(programs)} programs, shifts {shifts}: {len(rows)} notes in "
        f"{time.perf_counter() - t0:.0f} s -> {out}"
    )


if __name__ == "__main__":
    main()
