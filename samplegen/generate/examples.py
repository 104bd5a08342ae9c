"""The standard set of example sounds for a run folder: every generation kind from one model.

`generate_examples(model_dir, inputs, RUN_DIR / "sounds")` writes `<kind>/` folders that the
audition page (`samplegen report`) presents.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from samplegen.generate import sounds as S
from samplegen.generate.latent import GenerationError, LatentSpace
from samplegen.generate.render import RenderSettings, render_plan


@dataclass(frozen=True)
class ExampleSettings:
    """How many sounds of each kind the example set holds."""

    reconstruct: int = 8
    variations: int = 1
    steps: int = 5
    grid_size: int = 5
    random_count: int = 8
    temperature: float = 1.0
    perturb_levels: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0)
    sweep_values: tuple[float, ...] = (-2.0, -1.0, 0.0, 1.0, 2.0)
    sweep_max_dims: int = 8


def generate_examples(
    space: LatentSpace,
    inputs: Sequence[S.SoundInput],
    out_root: str | os.PathLike[str],
    *,
    settings: ExampleSettings | None = None,
    render: RenderSettings | None = None,
    model_path: str | os.PathLike[str] | None = None,
) -> dict[str, Path]:
    """Write reconstruct, interpolate, grid, random, perturb and sweep folders under `out_root`.

    Needs at least 4 inputs (the grid's corners; interpolation uses the first two). Returns
    {kind: manifest path}. Non-variational models without a prior use the inputs as reference.
    """
    if len(inputs) < 4:
        raise GenerationError(f"examples: need at least 4 input sounds, got {len(inputs)}")
    settings = settings or ExampleSettings()
    render = render or RenderSettings()
    root = Path(out_root)
    # Reference sounds stand in for a distribution only when the model has none of its own.
    reference = () if space.has_prior or space.fitted is not None else tuple(inputs)
    variations = settings.variations if space.is_variational else 0
    plans = [
        S.plan_reconstruct(
            space, inputs[: settings.reconstruct], variations=variations, seed=render.seed
        ),
        S.plan_interpolate(space, inputs[0], inputs[1], steps=settings.steps),
        S.plan_grid(space, inputs[:4], size=settings.grid_size),
        S.plan_random(
            space,
            count=settings.random_count,
            temperature=settings.temperature,
            seed=render.seed,
            reference=reference,
        ),
        S.plan_perturb(
            space, inputs[2], levels=settings.perturb_levels, seed=render.seed, reference=reference
        ),
        S.plan_sweep(
            space,
            values=settings.sweep_values,
            max_dims=settings.sweep_max_dims,
            reference=reference,
        ),
    ]
    return {
        plan.kind: render_plan(space, plan, root / plan.kind, render, model_path=model_path)
        for plan in plans
    }
