"""Render extra training notes for inner-model exploration: the training split's programs only.

Not a target benchmark: it makes the folders that `explore_inner.py --extra` adds to training, so
no validation or test program is ever rendered (they must stay instruments never trained on).
Usage: .venv/bin/python benchmarks/render_extra.py --dataset RUN/dataset --out DIR
  [--soundfont fluidr3|PATH] [--notes C#3,D3,...] [--velocities 100]
"""

import argparse
import time

from samplegen.dsp.library import render_library
from samplegen.platform.datasets import load_dataset


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--dataset", required=True, help="a samplegen dataset; its train split's programs"
    )
    p.add_argument("--out", required=True, help="folder to render into")
    p.add_argument("--soundfont", default="fluidr3")
    p.add_argument("--notes", default="C3,C4,C5")
    p.add_argument("--velocities", default="100")
    a = p.parse_args()
    meta = load_dataset(a.dataset, splits=("train",)).splits["train"].meta
    programs = sorted({m["program"] for m in meta if m["program"] is not None})
    drums = any(m["program"] is None for m in meta)
    t0 = time.perf_counter()
    report = render_library(
        a.out,
        a.soundfont,
        [n for n in a.notes.split(",") if n],
        [int(v) for v in a.velocities.split(",") if v],
        include_drums=drums,
        programs=programs,
    )
    print(
        f"{len(programs)} programs{' + drums' if drums else ''}: kept {report.kept} notes "
        f"in {time.perf_counter() - t0:.0f} s -> {a.out}"
    )


if __name__ == "__main__":
    main()
