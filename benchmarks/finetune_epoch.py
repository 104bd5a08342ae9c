"""Fine-tuning epoch time on outer encodings computed once against the notes (not a target).

Usage: .venv/bin/python benchmarks/finetune_epoch.py MODEL DATASET [--epochs 5]
Trains the combined model in MODEL on DATASET's training notes two ways in one process, an epoch
of each in turn: over `TrainsOnEncodings` rows (what `samplegen finetune` does) and over the notes
themselves, every batch through the frozen outer encoder (what it did before). Prints each epoch's
seconds and the medians. Interleaving keeps the machine's drift out of the comparison.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from samplegen.models.artifact import load_model
from samplegen.models.combined import CombinedModel, TrainsOnEncodings
from samplegen.platform.study import load_study_data
from samplegen.platform.training import OptimHparams, Trainer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("dataset")
    p.add_argument("--epochs", type=int, default=5)
    args = p.parse_args()
    model, copy = load_model(args.model).model, load_model(args.model).model
    if not isinstance(model, CombinedModel) or not isinstance(copy, CombinedModel):
        raise SystemExit(f"{args.model}: not a combined model")
    data = load_study_data(args.dataset)
    for param in [*model.outer.parameters(), *copy.outer.parameters()]:
        param.requires_grad_(False)
    rows = TrainsOnEncodings(copy)
    optim = OptimHparams(batch_size=32, lr=1e-4, lr_schedule="cosine")
    t0 = time.perf_counter()
    train_rows = rows.rows([data.train])
    print(f"encoding {len(data.train)} notes once: {time.perf_counter() - t0:.2f} s")
    trainers = {
        "encoded rows": Trainer(
            rows, optim, train_rows, rows.rows([data.validation]), total_epochs=args.epochs
        ),
        "notes": Trainer(model, optim, data.train, data.validation, total_epochs=args.epochs),
    }
    times: dict[str, list[float]] = {name: [] for name in trainers}
    for epoch in range(1, args.epochs + 1):
        for name, trainer in trainers.items():
            t0 = time.perf_counter()
            trainer.train_epoch(epoch)
            times[name].append(time.perf_counter() - t0)
    for name, seconds in times.items():
        each = " ".join(f"{s:.2f}" for s in seconds)
        print(f"{name:>12}: {each} s; median {np.median(seconds):.2f} s")


if __name__ == "__main__":
    main()
