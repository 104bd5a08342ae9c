"""How often samplegen.dsp.f0 finds the named pitch of a dataset's notes (harmonic_ae's pitch row).

Usage: .venv/bin/python benchmarks/pitch_check.py DATASET [DATASET ...] [--split test]

For every note whose file name names C3, C4 or C5: the measured f0 against the named pitch, in
cents; lists the notes more than 50 cents off. Prints only (no RESULTS section of its own).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

NAMED_HZ = {"C3": 130.81, "C4": 261.63, "C5": 523.25}
TOLERANCE_CENTS = 50.0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("datasets", nargs="+")
    p.add_argument("--split", default="test", choices=("train", "validation", "test"))
    args = p.parse_args(argv)

    import torch

    from samplegen.dsp.f0 import estimate_f0
    from samplegen.models.harmonic_ae import HarmonicAEHParams
    from samplegen.platform.datasets import load_dataset

    hp = HarmonicAEHParams()
    for path in args.datasets:
        loaded = load_dataset(path, splits=(args.split,))
        if loaded.codec.representation != "wave":
            p.error(f"{path}: a wave dataset is needed, this one is {loaded.codec.representation}")
        data = loaded.splits[args.split]
        # The model's own input (mu-law samples): harmonic_ae measures the pitch on it.
        audio = np.asarray(data.x, dtype=np.float32)
        f0 = estimate_f0(torch.from_numpy(audio), loaded.codec.sample_rate, hp.f0_min, hp.f0_max)
        named = [next((k for k in NAMED_HZ if f"_{k}_" in m["name"]), None) for m in data.meta]
        rows = [
            (m["name"], 1200 * np.log2(float(f) / NAMED_HZ[k]))
            for m, f, k in zip(data.meta, f0.numpy(), named, strict=True)
            if k is not None
        ]
        off = [(n, c) for n, c in rows if abs(c) > TOLERANCE_CENTS]
        print(
            f"{path} ({args.split}): {len(rows) - len(off)} of {len(rows)} named notes within "
            f"{TOLERANCE_CENTS:g} cents"
        )
        for name, cents in off:
            print(f"    {name}: {cents:+.0f} cents")
    return 0


if __name__ == "__main__":
    sys.exit(main())
