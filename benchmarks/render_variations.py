"""Render a SoundFont's variation presets of the training split's programs, for exploration.

Not a target benchmark: it makes a folder that `explore_inner.py --extra` adds to training, with
samplegen.dsp.variations (the module behind `samplegen data prepare --variations`). Only
variations of programs in the dataset's training split are rendered: a validation or test
program's variation would teach the model a relative of an instrument it must never have trained on.
Usage: .venv/bin/python benchmarks/render_variations.py --dataset RUN/dataset --out DIR
  [--soundfont fluidr3] [--soundfont fluidr3-gs] [--notes C3,C4,C5] [--velocity 100]
"""

import argparse
import time

from samplegen.dsp.variations import (
    FLUIDR3_VARIATIONS,
    VARIATION_VELOCITY,
    render_variations,
    variation_settings,
)
from samplegen.platform.datasets import load_dataset


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True, help="a samplegen dataset; its train programs")
    p.add_argument("--out", required=True, help="folder to render into")
    p.add_argument("--soundfont", action="append", default=None, help="repeatable")
    p.add_argument("--notes", default="C3,C4,C5")
    p.add_argument("--velocity", type=int, default=VARIATION_VELOCITY)
    a = p.parse_args()
    meta = load_dataset(a.dataset, splits=("train",)).splits["train"].meta
    programs = sorted({m["program"] for m in meta if m["program"] is not None})
    settings = variation_settings(
        programs,
        [n for n in a.notes.split(",") if n],
        a.soundfont or FLUIDR3_VARIATIONS,
        a.velocity,
    )
    t0 = time.perf_counter()
    notes = render_variations(a.out, settings)
    presets = sorted({(v.bank, v.program, v.program_name) for v in notes})
    print(
        f"{len(presets)} variation presets of training programs, {len(notes)} notes in "
        f"{time.perf_counter() - t0:.0f} s -> {a.out}"
    )
    for bank, program, name in presets:
        print(f"  bank {bank} program {program}: {name}")


if __name__ == "__main__":
    main()
