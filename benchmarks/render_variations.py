"""Render a SoundFont's variation presets of the training split's programs, for exploration.

Not a target benchmark: it makes a folder that `explore_inner.py --extra` adds to training. GS
SoundFonts hold, beside bank 0's 128 GM programs, variation tones in other banks under the same
program number (FluidR3_GM: bank 8's "Detuned EP 1", "Hawaiian Guitar", "Synth Bass 3"...;
FluidR3_GS: banks 1-8 of the sound effects). They are other instruments, so only variations of
programs in the dataset's training split are rendered: a validation or test program's variation
would teach the model a relative of an instrument it must never have trained on.
Usage: .venv/bin/python benchmarks/render_variations.py --dataset RUN/dataset --out DIR
  [--soundfont PATH] [--soundfont PATH] [--notes C3,C4,C5] [--velocity 100]
"""

import argparse
import csv
import time
from pathlib import Path

import numpy as np

from samplegen.dsp.audio import write_wav
from samplegen.dsp.library import (
    DRUM_BANK,
    _renderer,
    find_soundfont,
    make_settings,
    midi_to_note,
    note_to_midi,
    slug,
)
from samplegen.platform.datasets import load_dataset


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True, help="a samplegen dataset; its train programs")
    p.add_argument("--out", required=True, help="folder to render into")
    p.add_argument("--soundfont", action="append", default=None, help="repeatable; fluidr3")
    p.add_argument("--notes", default="C3,C4,C5")
    p.add_argument("--velocity", type=int, default=100)
    a = p.parse_args()
    meta = load_dataset(a.dataset, splits=("train",)).splits["train"].meta
    programs = sorted({m["program"] for m in meta if m["program"] is not None})
    keys = [note_to_midi(n) for n in a.notes.split(",") if n]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    t0 = time.perf_counter()
    for sf in a.soundfont or ["fluidr3"]:
        path = find_soundfont(sf)
        settings = make_settings(path, velocities=[a.velocity], include_drums=False)
        with _renderer(path, settings) as r:
            for bank in range(1, DRUM_BANK):
                for program in programs:
                    name = r.synth.sfpreset_name(r.sfid, bank, program)
                    if name is None:
                        continue
                    prefix = f"{slug(path.stem)}_b{bank:03d}_p{program:03d}_{slug(name)}"
                    for key in keys:
                        mono = r.note(0, bank, program, key, a.velocity)
                        if not mono.size or float(np.max(np.abs(mono))) < 1e-3:
                            print(f"silent, left out: {prefix} {midi_to_note(key)}")
                            continue
                        file = f"{prefix}_{midi_to_note(key).replace('#', 's')}.wav"
                        write_wav(out / file, mono, settings.sample_rate, subtype=settings.subtype)
                        rows.append((file, program, bank, name, midi_to_note(key), a.velocity))
    with open(out / "metadata.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(("file", "program", "bank", "program_name", "note", "velocity"))
        w.writerows(rows)
    presets = sorted({(r[2], r[1], r[3]) for r in rows})
    print(
        f"{len(presets)} variation presets of training programs, {len(rows)} notes in "
        f"{time.perf_counter() - t0:.0f} s -> {out}"
    )
    for bank, program, name in presets:
        print(f"  bank {bank} program {program}: {name}")


if __name__ == "__main__":
    main()
