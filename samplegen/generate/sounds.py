"""Plans of new sounds in a model's latent space: reconstruct, interpolate, grid, random, perturb, sweep.

Each function returns a `Plan`: the latent vectors to decode, with a name, a level (gain) where it
is known and per-sound details. `samplegen.generate.render.render_plan` turns a plan into WAVs,
spectrogram PNGs and a manifest. Plans are pure: the same inputs and seed give the same vectors.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from samplegen.generate.io import safe_stem
from samplegen.generate.latent import GenerationError, LatentSpace, LatentStats, sample_empirical

KINDS: tuple[str, ...] = ("reconstruct", "interpolate", "grid", "random", "perturb", "sweep")


@dataclass(frozen=True)
class SoundInput:
    """One input note, already in the model's representation.

    `peak` is the note's original peak level (what `prepare_wave` divided by), None when unknown;
    `wave` the peak-normalised audio when it is at hand (files), None for encoded-only data.
    """

    name: str
    encoded: np.ndarray
    peak: float | None = None
    source: str = ""
    wave: np.ndarray | None = None
    category: str | None = None

    def describe(self) -> dict[str, Any]:
        """JSON-able description (without the data)."""
        return {
            "name": self.name,
            "source": self.source,
            "peak": self.peak,
            "category": self.category,
        }


@dataclass(frozen=True)
class PlannedSound:
    """One sound to make: its file stem, latent vector, output gain (None: model scale) and details."""

    name: str
    latent: np.ndarray
    gain: float | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """What one generation command makes, with everything the manifest must record."""

    kind: str
    sounds: tuple[PlannedSound, ...]
    inputs: tuple[SoundInput, ...] = ()
    input_latents: tuple[np.ndarray, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)
    stats: LatentStats | None = None
    layout: dict[str, Any] = field(default_factory=dict)


def load_inputs(paths: Sequence[str | os.PathLike[str]], codec: Any) -> list[SoundInput]:
    """Read WAV (or any soundfile format) notes and encode them with the model's codec."""
    from samplegen.dsp.audio import load_wave
    from samplegen.dsp.categories import category_from_name
    from samplegen.dsp.codec import encode

    out = []
    for p in paths:
        wave, peak = load_wave(p, codec)
        encoded = np.asarray(encode(wave, codec))
        name = safe_stem(Path(p).name)
        category = category_from_name(Path(p).stem)
        out.append(SoundInput(name, encoded, float(peak), str(p), wave, category))
    return out


def _log_mix(levels: Sequence[float | None], weights: Sequence[float]) -> float | None:
    """Level between known levels, mixed in dB (None when any is unknown)."""
    known = [v for v in levels if v is not None and v > 0]
    if len(known) != len(levels):
        return None
    return float(math.exp(sum(w * math.log(v) for v, w in zip(known, weights, strict=True))))


def _encode_inputs(space: LatentSpace, inputs: Sequence[SoundInput]) -> np.ndarray:
    return space.encode(np.stack([i.encoded for i in inputs]))


def plan_reconstruct(
    space: LatentSpace, inputs: Sequence[SoundInput], *, variations: int = 0, seed: int = 0
) -> Plan:
    """Each input through encode and decode (its latent mean), plus `variations` posterior samples.

    Variations need a variational model: z = mu + sigma * eps with eps ~ N(0, I) (zero-mean noise).
    """
    if not inputs:
        raise GenerationError("reconstruct: give at least one input sound")
    if variations < 0:
        raise GenerationError(f"--variations: must be >= 0, got {variations}")
    x = np.stack([i.encoded for i in inputs])
    mu, std = space.posterior(x)
    if variations and std is None:
        raise GenerationError(
            "--variations: the model is not variational, so its posterior has no spread to sample"
        )
    rng = np.random.default_rng(seed)
    sounds = []
    for k, inp in enumerate(inputs):
        sounds.append(
            PlannedSound(
                f"{k:02d}_{inp.name}", mu[k], inp.peak, {"input": inp.name, "input_index": k}
            )
        )
        for v in range(variations):
            assert std is not None
            z = mu[k] + std[k] * rng.standard_normal(mu.shape[1])
            sounds.append(
                PlannedSound(
                    f"{k:02d}_{inp.name}_var{v + 1:02d}",
                    z.astype(np.float32),
                    inp.peak,
                    {"input": inp.name, "input_index": k, "variation": v + 1},
                )
            )
    return Plan(
        "reconstruct",
        tuple(sounds),
        tuple(inputs),
        tuple(mu),
        {"variations": variations, "seed": seed},
    )


def plan_interpolate(space: LatentSpace, a: SoundInput, b: SoundInput, *, steps: int = 5) -> Plan:
    """`steps` points on the line between the latent means of `a` and `b`, end-points included.

    No noise is added: t = 0 and t = 1 are exactly the inputs' latent means.
    """
    if steps < 2:
        raise GenerationError(f"--steps: must be >= 2 (the two end-points), got {steps}")
    za, zb = _encode_inputs(space, [a, b])
    sounds = []
    for s in range(steps):
        t = s / (steps - 1)
        # Written as a weighted sum so t = 0 and t = 1 give za and zb bit for bit.
        z = za if s == 0 else zb if s == steps - 1 else (1.0 - t) * za + t * zb
        sounds.append(
            PlannedSound(
                f"step{s:02d}_t{t:.3f}",
                np.asarray(z, np.float32),
                _log_mix([a.peak, b.peak], [1 - t, t]),
                {"t": t},
            )
        )
    return Plan("interpolate", tuple(sounds), (a, b), (za, zb), {"steps": steps})


def plan_grid(space: LatentSpace, corners: Sequence[SoundInput], *, size: int = 9) -> Plan:
    """A `size` x `size` bilinear grid between four corners A (top left), B (top right),
    C (bottom left), D (bottom right), like NSynth Super's pad."""
    if len(corners) != 4:
        raise GenerationError(f"grid: needs exactly 4 corner sounds, got {len(corners)}")
    if size < 2:
        raise GenerationError(f"--size: must be >= 2, got {size}")
    za, zb, zc, zd = _encode_inputs(space, corners)
    peaks = [c.peak for c in corners]
    last = size - 1
    corners_at = {(0, 0): za, (0, last): zb, (last, 0): zc, (last, last): zd}
    sounds = []
    for r in range(size):
        v = r / last
        for c in range(size):
            u = c / last
            w = [(1 - u) * (1 - v), u * (1 - v), (1 - u) * v, u * v]
            corner = corners_at.get((r, c))
            z = corner if corner is not None else w[0] * za + w[1] * zb + w[2] * zc + w[3] * zd
            sounds.append(
                PlannedSound(
                    f"r{r:02d}_c{c:02d}",
                    np.asarray(z, np.float32),
                    _log_mix(peaks, w),
                    {"row": r, "col": c, "u": u, "v": v},
                )
            )
    return Plan(
        "grid",
        tuple(sounds),
        tuple(corners),
        (za, zb, zc, zd),
        {"size": size},
        layout={"rows": size, "cols": size},
    )


DISTRIBUTIONS: tuple[str, ...] = ("auto", "fitted", "prior")


def plan_random(
    space: LatentSpace,
    *,
    count: int = 8,
    temperature: float = 1.0,
    seed: int = 0,
    reference: Sequence[SoundInput] = (),
    distribution: str = "auto",
) -> Plan:
    """`count` random latent vectors, scaled around their centre by `temperature`.

    `distribution`: `fitted` draws from the Gaussian mixture of the training notes' codes stored
    with the model (closer to real notes than the prior: samplegen.models.code_distribution); `prior` from
    the model's own prior; `auto` from the reference sounds' empirical distribution (mean and
    covariance of their latents) when there are any, else `fitted` when the model has it, else
    `prior`.
    """
    if count < 1:
        raise GenerationError(f"--count: must be >= 1, got {count}")
    if not temperature >= 0 or not np.isfinite(temperature):  # NaN fails the first test
        raise GenerationError(f"--temperature: must be a finite number >= 0, got {temperature}")
    if distribution not in DISTRIBUTIONS:
        raise GenerationError(
            f"--distribution: {distribution!r} is not one of {', '.join(DISTRIBUTIONS)}"
        )
    if reference and distribution != "auto":
        raise GenerationError(
            f"--distribution {distribution} and --reference: the reference sounds define the "
            "distribution; give one or the other"
        )
    stats = None
    fitted = space.fitted if distribution in ("auto", "fitted") and not reference else None
    if distribution == "fitted" and fitted is None:
        raise GenerationError(
            f"--distribution fitted: model {space.meta.get('directory', '')} stores no fitted "
            "code distribution; add one with `samplegen fit-codes --model MODEL --data DATASET`"
        )
    if fitted is not None:
        z = fitted.sample(count, temperature, np.random.default_rng(seed))
        source = (
            f"Gaussian mixture ({fitted.components} components) fitted to the training codes "
            f"({fitted.source})"
        )
        stats = space.stats()
    elif space.has_prior and not reference:
        z = space.sample_prior(count, temperature, seed)
        source = "prior"
    else:
        if not reference:
            space.sample_prior(count, temperature, seed)  # raises the explanatory error
        stats = space.stats(np.stack([r.encoded for r in reference]))
        if stats.samples is None or stats.samples.shape[0] < 2:
            raise GenerationError("--reference: give at least 2 reference sounds")
        z = sample_empirical(stats, count, temperature, np.random.default_rng(seed))
        source = f"empirical distribution of {stats.samples.shape[0]} reference sounds"
    sounds = tuple(PlannedSound(f"random{k:03d}", z[k], None, {"index": k}) for k in range(count))
    return Plan(
        "random",
        sounds,
        tuple(reference),
        (),
        {
            "count": count,
            "temperature": temperature,
            "seed": seed,
            "distribution": source,
        },
        stats,
    )


def plan_perturb(
    space: LatentSpace,
    a: SoundInput,
    *,
    levels: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5),
    per_level: int = 1,
    seed: int = 0,
    reference: Sequence[SoundInput] = (),
) -> Plan:
    """Zero-mean Gaussian noise of std `level * per-dimension latent std` around `a`'s latent mean.

    Level 0 gives `a`'s own latent mean exactly.
    """
    if not levels:
        raise GenerationError("--levels: give at least one level")
    if not all(lv >= 0 and np.isfinite(lv) for lv in levels):  # NaN fails the first test
        raise GenerationError(f"--levels: must be finite numbers >= 0, got {list(levels)}")
    if per_level < 1:
        raise GenerationError(f"--per-level: must be >= 1, got {per_level}")
    (za,) = _encode_inputs(space, [a])
    stats = space.stats(np.stack([r.encoded for r in reference]) if reference else None)
    rng = np.random.default_rng(seed)
    sounds = []
    for i, level in enumerate(levels):
        for j in range(per_level if level > 0 else 1):
            noise = rng.standard_normal(space.dim) * stats.std * float(level)
            z = za if level == 0 else (za + noise).astype(np.float32)
            suffix = f"_{j + 1:02d}" if per_level > 1 and level > 0 else ""
            sounds.append(
                PlannedSound(
                    f"level{i:02d}_{level:g}{suffix}",
                    np.asarray(z, np.float32),
                    a.peak,
                    {"level": float(level), "draw": j + 1},
                )
            )
    return Plan(
        "perturb",
        tuple(sounds),
        (a,),
        (za,),
        {"levels": [float(v) for v in levels], "per_level": per_level, "seed": seed},
        stats,
    )


def _refuse_repeats(option: str, items: Sequence[Any]) -> None:
    """Each sound's file is named by its item: a repeat would overwrite the first one's file."""
    repeated = sorted({x for x in items if items.count(x) > 1})
    if repeated:
        shown = ", ".join(f"{x:g}" if isinstance(x, float) else str(x) for x in repeated)
        raise GenerationError(f"{option}: {shown} given more than once")


def plan_sweep(
    space: LatentSpace,
    *,
    values: Sequence[float] = (-2.0, -1.0, 0.0, 1.0, 2.0),
    dims: Sequence[int] | None = None,
    max_dims: int = 16,
    reference: Sequence[SoundInput] = (),
) -> Plan:
    """Each latent dimension alone at `mean + value * std`, the others at the mean.

    For a variational model (prior N(0, 1)) that is the original's "each dimension at v, others 0".
    Without `dims`, every dimension when there are at most `max_dims`, else the `max_dims` with the
    largest spread.
    """
    if not values:
        raise GenerationError("--values: give at least one value")
    if not all(np.isfinite(v) for v in values):
        raise GenerationError(f"--values: must be finite numbers, got {list(values)}")
    _refuse_repeats("--values", [float(v) for v in values])
    if dims is not None:
        if not dims:
            raise GenerationError("--dims: give at least one dimension")
        _refuse_repeats("--dims", list(dims))
    stats = space.stats(np.stack([r.encoded for r in reference]) if reference else None)
    if dims is None:
        if space.dim <= max_dims:
            chosen = list(range(space.dim))
            how = "all dimensions"
        else:
            chosen = sorted(np.argsort(-stats.std, kind="stable")[:max_dims].tolist())
            how = f"the {max_dims} dimensions with the largest std of {space.dim}"
    else:
        bad = [d for d in dims if not 0 <= d < space.dim]
        if bad:
            raise GenerationError(f"--dims: {bad} out of range 0..{space.dim - 1}")
        chosen, how = list(dims), "chosen dimensions"
    sounds = []
    for d in chosen:
        for v in values:
            z = stats.mean.copy()
            z[d] = stats.mean[d] + float(v) * stats.std[d]
            sounds.append(
                PlannedSound(
                    f"dim{d:03d}_v{v:+g}", z.astype(np.float32), None, {"dim": d, "value": float(v)}
                )
            )
    return Plan(
        "sweep",
        tuple(sounds),
        tuple(reference),
        (),
        {"values": [float(v) for v in values], "dims": chosen, "selection": how},
        stats,
        layout={"rows": len(chosen), "cols": len(values)},
    )
