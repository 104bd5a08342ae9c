"""Does refining each code from several starting points help? (exploration, not a target).

Usage: .venv/bin/python benchmarks/explore_multistart.py RUN [--starts 4]
For the run's combined model, each validation and test note's code is refined end to end (as the
model encodes) from the encoder's mean and from the codes of the `--starts` training notes whose
reconstructions are nearest to it; the best fit is kept. Prints RMS% from the encoder's mean alone
and from the best start, and how often each start won.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch

from samplegen.models.artifact import load_model
from samplegen.models.combined import CombinedModel
from samplegen.models.refine import refine_codes
from samplegen.platform.datasets import load_dataset


def batches(x: np.ndarray, n: int) -> list[torch.Tensor]:
    return [torch.from_numpy(np.ascontiguousarray(x[i : i + n])) for i in range(0, len(x), n)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--starts", type=int, default=4)
    args = p.parse_args()
    torch.set_num_threads(2)
    model = load_model(f"{args.run}/models/combined").model.eval()
    if not isinstance(model, CombinedModel):
        raise SystemExit(f"{args.run}/models/combined: not a combined model")
    data = load_dataset(f"{args.run}/dataset", splits=("train", "validation", "test"))
    settings = model.inner.refinement()
    if settings is None:
        raise SystemExit(f"{args.run}: the combined model does not refine its codes")
    with torch.no_grad():
        z_train = torch.cat(
            [model.encode_amortized(b) for b in batches(data.splits["train"].x, 64)]
        )
        decoded = torch.cat([model.decode(z).flatten(1) for z in z_train.split(64)])
    for split in ("validation", "test"):
        x = data.splits[split].x
        first = best = 0.0
        wins = np.zeros(args.starts + 1, dtype=int)
        for xb in batches(x, 32):
            with torch.no_grad():
                nearest = torch.cdist(xb.flatten(1), decoded).topk(args.starts, largest=False)
            starts = [model.encode_amortized(xb)]
            starts += [z_train[nearest.indices[:, k]] for k in range(args.starts)]
            errors = []
            for z0 in starts:
                z = refine_codes(model.decode, z0, xb, settings)
                with torch.no_grad():
                    errors.append((model.decode(z) - xb).pow(2).flatten(1).sum(1))
            e = torch.stack(errors)
            first += float(e[0].sum())
            best += float(e.min(0).values.sum())
            wins += np.bincount(e.argmin(0).numpy(), minlength=args.starts + 1)
        n = len(x) * int(np.prod(x.shape[1:]))
        print(
            f"{split}: encoder's mean {100 * math.sqrt(first / n):.3f}%, best of "
            f"{args.starts + 1} starts {100 * math.sqrt(best / n):.3f}% (wins per start: "
            f"{wins.tolist()})"
        )


if __name__ == "__main__":
    main()
