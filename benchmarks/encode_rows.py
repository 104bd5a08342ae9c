"""What encoding one note at a time costs, and what batching changed in the codes.

Usage: .venv/bin/python benchmarks/encode_rows.py OUTER_MODEL --data DATASET [--notes 256]
       [--repeats 3] [--no-append]

`samplegen`'s encoder actor (samplegen.platform.encoded) encodes each note alone, on one CPU thread,
so that a code does not depend on the notes Ray Data batched it with. This times that against
batches of 32 and 7 on the same notes (the dataset's first training rows, best of `--repeats`), and
counts the codes whose bits differ from the one-at-a-time ones.
Appends a dated section to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import sys
import time

from results_file import publish

BATCHES = (1, 7, 32)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="an outer model directory")
    p.add_argument("--data", required=True, help="its STFT dataset directory")
    p.add_argument("--notes", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-append", action="store_true")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error(f"--repeats: must be >= 1, got {args.repeats}")

    import numpy as np
    import torch

    from samplegen.errors import SamplegenError
    from samplegen.models.artifact import load_model
    from samplegen.platform.datasets import load_dataset

    torch.set_num_threads(1)  # as the encoder actor runs
    try:
        loaded = load_model(args.model)
        train = load_dataset(args.data, splits=("train",)).splits["train"]
    except SamplegenError as exc:
        raise SystemExit(str(exc)) from exc
    model = loaded.model.eval()
    x = torch.from_numpy(train.x[: args.notes])

    def encode(batch: int) -> tuple[float, np.ndarray]:
        best, z = float("inf"), None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            with torch.no_grad():
                parts = [model.encode(x[i : i + batch]).flatten(1) for i in range(0, len(x), batch)]
            best = min(best, time.perf_counter() - t0)
            z = torch.cat(parts).numpy()
        assert z is not None  # --repeats >= 1
        return best, z

    runs = {b: encode(b) for b in BATCHES}
    alone = runs[1][1]
    lines = [
        f"## Encoding one note at a time (benchmarks/encode_rows.py), {dt.date.today()}",
        "",
        f"- Command: `.venv/bin/python benchmarks/encode_rows.py {args.model} --data {args.data} "
        f"--notes {args.notes} --repeats {args.repeats}`",
        f"- Machine: {platform.machine()} CPU, no GPU, torch {torch.__version__}, 1 thread (as the "
        f"encoder actor); model {loaded.meta.name}, {len(x)} training notes, best of {args.repeats}",
        "",
        "| batch | seconds | codes whose bits differ from one at a time | largest difference |",
        "|---:|---:|---:|---:|",
    ]
    for b, (seconds, z) in runs.items():
        differ = int((z != alone).any(axis=1).sum())
        lines.append(
            f"| {b} | {seconds:.3f} | {differ} of {len(z)} | {np.abs(z - alone).max():.2g} |"
        )
    text = "\n".join([*lines, ""])
    publish(text, append=not args.no_append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
