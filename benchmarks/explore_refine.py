"""How many refinement steps a run's combined VAE model needs (not a target benchmark).

Usage: .venv/bin/python benchmarks/explore_refine.py RUN [--steps 0,50,100,200,400]
  [--prior-scale 1]
Rebuilds the run's combined model with each `refine_steps` value (same weights) and prints the
end-to-end RMS% on the validation split (for choosing) and the test split (for reporting).
`--prior-scale 0,0.5,1` also scales the weight of |z|^2 in the refinement (the package uses the
VAE's beta / 2, the MAP code; 0 is the code that fits best), for every step count.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools

import numpy as np
import torch

from samplegen.dsp.metrics import rms_percent
from samplegen.models.artifact import load_model
from samplegen.models.base import InnerModel
from samplegen.models.combined import CombinedModel
from samplegen.models.registry import build_model
from samplegen.platform.datasets import load_dataset


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--steps", default="0,50,100,200,400")
    p.add_argument("--prior-scale", default="1")
    args = p.parse_args()
    try:
        scales = [float(s) for s in args.prior_scale.split(",")]
    except ValueError:
        p.error(f"--prior-scale: expected numbers separated by commas, got {args.prior_scale!r}")
    if any(s < 0 for s in scales):
        p.error(f"--prior-scale: every scale must be >= 0, got {args.prior_scale}")
    torch.set_num_threads(1)
    combined = load_model(f"{args.run}/models/combined").model
    if not isinstance(combined, CombinedModel):
        raise SystemExit(f"{args.run}/models/combined: not a combined model")
    data = load_dataset(f"{args.run}/dataset", splits=("validation", "test"))
    inner = combined.inner
    for steps, scale in itertools.product((int(s) for s in args.steps.split(",")), scales):
        hp = dataclasses.asdict(dataclasses.replace(inner.hparams, refine_steps=steps))
        refined = build_model(inner.name, hp, inner.input_shape)
        assert isinstance(refined, InnerModel)  # built as the combined model's inner part
        refined.load_state_dict(inner.state_dict())
        settings = refined.refinement()
        if settings is not None and scale != 1:
            scaled = dataclasses.replace(settings, prior=settings.prior * scale)
            # An instance attribute shadows the method for this model alone (the package has no
            # setting for the prior's weight).
            refined.__dict__["refinement"] = lambda scaled=scaled: scaled
        combined.inner = refined.eval()
        figures = []
        for split in ("validation", "test"):
            x = data.splits[split].x
            total = 0.0
            with torch.no_grad():
                for i in range(0, len(x), 64):
                    xb = torch.from_numpy(np.ascontiguousarray(x[i : i + 64]))
                    total += float((combined.reconstruct(xb) - xb).pow(2).sum())
            figures.append(rms_percent(total / len(x), int(np.prod(x.shape[1:]))))
        print(
            f"refine_steps {steps} prior x{scale:g}: validation {figures[0]:.3f}% test {figures[1]:.3f}%"
        )


if __name__ == "__main__":
    main()
