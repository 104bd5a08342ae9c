"""Search spaces as plain data: one small typed YAML file per model, converted per searcher.

File format (`samplegen/platform/spaces/<model>.yaml`, or any file given with --space)::

    model: conv2d_ae
    params:
      layer_count: {type: int, low: 3, high: 6}
      kernel_count: {type: int, low: 4, high: 30, log: true, grid: [10, 15, 20]}
      lr_exp: {type: float, low: -7, high: -3}
      activation: {type: choice, values: [relu, tanh]}
      weight_decay: {type: const, value: 0.0}

Types: `int` and `float` (inclusive `low`/`high`, optional `log: true`), `choice` (`values`),
`const` (`value`). Every parameter may carry `grid: [...]`, the values the grid searcher uses;
without it, an int range with at most 8 values uses all of them, wider ranges and floats use
`grid_points` (default 3) evenly spaced values (log-spaced with `log: true`).

Training parameters live in the same space (see `samplegen.platform.training.split_config`):
`batch_exp` (batch = 2^b) or `batch_size`; `lr_exp` (lr = 10^lr_exp x batch, as the original) or
`lr` (a plain learning rate); `weight_decay`; `lr_schedule` (constant or cosine); `mixup` (alpha,
0 = off). Every other name is a model hyper-parameter.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from samplegen.errors import SamplegenError

PARAM_TYPES: tuple[str, ...] = ("int", "float", "choice", "const")
GRID_ALL_INTS = 8


class SpaceError(SamplegenError, ValueError):
    """A search-space file is malformed; the message names the file and the parameter."""


@dataclass(frozen=True)
class Param:
    """One searched (or fixed) parameter."""

    name: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    values: tuple[Any, ...] = ()
    grid: tuple[Any, ...] = ()
    grid_points: int = 3

    def bounds(self) -> tuple[float, float]:
        """(low, high) of a range parameter (int or float); parsing guarantees both are set."""
        if self.low is None or self.high is None:
            raise SpaceError(f"parameter {self.name!r}: a {self.type} range needs low and high")
        return self.low, self.high

    def grid_values(self) -> list[Any]:
        """The values the grid searcher tries, in order, without duplicates."""
        if self.grid:
            return list(self.grid)
        if self.type in ("choice", "const"):
            return list(self.values)
        low, high = self.bounds()
        if self.type == "int" and high - low + 1 <= GRID_ALL_INTS:
            return list(range(int(low), int(high) + 1))
        n = max(self.grid_points, 1)
        if n == 1:
            points = [low]
        elif self.log:
            a, b = math.log(low), math.log(high)
            points = [math.exp(a + (b - a) * i / (n - 1)) for i in range(n)]
        else:
            points = [low + (high - low) * i / (n - 1) for i in range(n)]
        if self.type == "int":
            return list(dict.fromkeys(int(round(p)) for p in points))
        return [float(p) for p in points]


@dataclass(frozen=True)
class SearchSpace:
    """A named, ordered set of parameters for one model."""

    model: str
    params: tuple[Param, ...]
    source: str = ""

    @property
    def names(self) -> list[str]:
        """Parameter names in file order."""
        return [p.name for p in self.params]

    @property
    def searched(self) -> list[Param]:
        """Parameters that vary (everything but `const`)."""
        return [p for p in self.params if p.type != "const"]

    @property
    def constants(self) -> dict[str, Any]:
        """The fixed parameters and their values."""
        return {p.name: p.values[0] for p in self.params if p.type == "const"}

    def distinct_points(self) -> int | None:
        """How many different configurations the space holds; None when a float makes it endless."""
        n = 1
        for p in self.params:
            if p.type == "float":
                return None
            if p.type == "int":
                low, high = p.bounds()
                n *= int(high) - int(low) + 1
            else:
                n *= len(p.values)
        return n

    def corners(self, limit: int = 64, seed: int = 0) -> list[dict[str, Any]]:
        """Configurations at the ends of every range (each choice's every value, each constant),
        all of them up to `limit`, else `limit` of them drawn at random (seeded): where a model's
        smallest and largest sizes lie when its size grows or shrinks with each setting."""
        import itertools
        import random

        options: list[list[Any]] = []
        for p in self.params:
            if p.type in ("int", "float"):
                low, high = p.bounds()
                ends = [low, high] if p.type == "float" else [int(low), int(high)]
                options.append(list(dict.fromkeys(ends)))
            else:
                options.append(list(p.values))
        names = self.names
        if math.prod(len(o) for o in options) <= limit:
            return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*options)]
        rng = random.Random(seed)
        return [
            {name: rng.choice(values) for name, values in zip(names, options, strict=True)}
            for _ in range(limit)
        ]

    def grid_size(self) -> int:
        """Number of points the grid searcher runs."""
        n = 1
        for p in self.params:
            n *= len(p.grid_values())
        return n

    def to_dict(self) -> dict[str, Any]:
        """The space in its file format (for study records)."""
        out: dict[str, Any] = {}
        for p in self.params:
            entry: dict[str, Any] = {"type": p.type}
            if p.type in ("int", "float"):
                entry.update(low=p.low, high=p.high)
                if p.log:
                    entry["log"] = True
            elif p.type == "choice":
                entry["values"] = list(p.values)
            else:
                entry["value"] = p.values[0]
            if p.grid:
                entry["grid"] = list(p.grid)
            out[p.name] = entry
        return {"model": self.model, "params": out}


def bind_code_frames(space: SearchSpace, code_frames: int | None) -> SearchSpace:
    """The space with `frames` fixed to the outer code's frame count when it searches a VAE's
    `decoder` and leaves `frames` out (a frame decoder needs it; a plain decoder ignores it).

    Fixing it in the space, rather than when building each model, puts it in every trial's
    config, so best_config.json and the exported model carry it too.
    """
    if not code_frames or "decoder" not in space.names or "frames" in space.names:
        return space
    frames = Param("frames", "const", values=(int(code_frames),))
    return dataclasses.replace(space, params=(*space.params, frames))


def _parse_param(name: str, spec: Any, where: str) -> Param:
    if not isinstance(spec, dict):
        raise SpaceError(f"{where}: parameter {name!r}: expected a mapping, got {spec!r}")
    kind = spec.get("type")
    if kind not in PARAM_TYPES:
        raise SpaceError(
            f"{where}: parameter {name!r}: type must be one of {', '.join(PARAM_TYPES)}, got {kind!r}"
        )
    allowed = {
        "int": {"type", "low", "high", "log", "grid", "grid_points"},
        "float": {"type", "low", "high", "log", "grid", "grid_points"},
        "choice": {"type", "values", "grid"},
        "const": {"type", "value"},
    }[kind]
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise SpaceError(f"{where}: parameter {name!r}: unknown key(s) {', '.join(unknown)}")
    grid = tuple(spec.get("grid") or ())
    if kind == "const":
        if "value" not in spec:
            raise SpaceError(f"{where}: parameter {name!r}: const needs `value`")
        return Param(name, kind, values=(spec["value"],))
    if kind == "choice":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise SpaceError(f"{where}: parameter {name!r}: choice needs a non-empty `values` list")
        for g in grid:
            if g not in values:
                raise SpaceError(
                    f"{where}: parameter {name!r}: grid value {g!r} is not one of its values {values}"
                )
        return Param(name, kind, values=tuple(values), grid=grid)
    if "low" not in spec or "high" not in spec:
        raise SpaceError(f"{where}: parameter {name!r}: {kind} needs `low` and `high`")
    cast = int if kind == "int" else float
    try:
        low, high = cast(spec["low"]), cast(spec["high"])
    except (TypeError, ValueError) as exc:
        raise SpaceError(f"{where}: parameter {name!r}: low/high must be {kind}s ({exc})") from None
    if kind == "int" and (low != spec["low"] or high != spec["high"]):
        raise SpaceError(f"{where}: parameter {name!r}: int bounds must be whole numbers")
    if low > high:
        raise SpaceError(f"{where}: parameter {name!r}: low {low} > high {high}")
    log = bool(spec.get("log", False))
    if log and low <= 0:
        raise SpaceError(f"{where}: parameter {name!r}: a log range needs low > 0, got {low}")
    for g in grid:
        if not low <= g <= high:
            raise SpaceError(f"{where}: parameter {name!r}: grid value {g} outside [{low}, {high}]")
    points = int(spec.get("grid_points", 3))
    return Param(name, kind, low=low, high=high, log=log, grid=grid, grid_points=points)


def parse_space(data: Any, where: str = "search space") -> SearchSpace:
    """Build a SearchSpace from parsed YAML (`where` names the source in error messages)."""
    if not isinstance(data, dict) or not isinstance(data.get("params"), dict):
        raise SpaceError(f"{where}: expected a mapping with `model` and a `params` mapping")
    unknown = sorted(set(data) - {"model", "params", "description"})
    if unknown:
        raise SpaceError(f"{where}: unknown top-level key(s) {', '.join(unknown)}")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise SpaceError(f"{where}: `model` must name a model")
    params = tuple(_parse_param(str(k), v, where) for k, v in data["params"].items())
    if not params:
        raise SpaceError(f"{where}: `params` is empty")
    return SearchSpace(model=model, params=params, source=where)


def load_space(path: str | Path) -> SearchSpace:
    """Read a search-space YAML file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SpaceError(f"{path}: cannot read search space ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise SpaceError(f"{path}: not valid YAML ({exc})") from None
    return parse_space(data, str(path))


def packaged_spaces() -> list[str]:
    """Names of the models with a search space shipped in the package."""
    folder = resources.files("samplegen.platform").joinpath("spaces")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def default_space(model: str) -> SearchSpace:
    """The packaged search space for `model`."""
    res = resources.files("samplegen.platform") / "spaces" / f"{model}.yaml"
    if not res.is_file():
        raise SpaceError(
            f"no packaged search space for model {model!r} (have: {', '.join(packaged_spaces())}); "
            "pass one with --space FILE"
        )
    return parse_space(yaml.safe_load(res.read_text()), f"spaces/{model}.yaml")


def resolve_space(model: str, path: str | Path | None = None) -> SearchSpace:
    """The space from `path` if given (its `model` must match), else the packaged one."""
    if path is None:
        return default_space(model)
    space = load_space(path)
    if space.model != model:
        raise SpaceError(f"{path}: this space is for model {space.model!r}, not {model!r}")
    return space


def to_tune(space: SearchSpace, *, grid: bool) -> dict[str, Any]:
    """A Tune param_space: grid_search for every parameter when `grid`, else sampling domains."""
    from ray import tune

    out: dict[str, Any] = {}
    for p in space.params:
        if p.type == "const":
            out[p.name] = p.values[0]
        elif grid:
            out[p.name] = tune.grid_search(p.grid_values())
        elif p.type == "choice":
            out[p.name] = tune.choice(list(p.values))
        elif p.type == "int":
            low, high = p.bounds()
            # Tune's integer upper bound is exclusive.
            ilow, ihigh = int(low), int(high) + 1
            out[p.name] = tune.lograndint(ilow, ihigh) if p.log else tune.randint(ilow, ihigh)
        else:
            low, high = p.bounds()
            out[p.name] = tune.loguniform(low, high) if p.log else tune.uniform(low, high)
    return out


def to_skopt(space: SearchSpace) -> list[Any]:
    """scikit-optimize dimensions for the searched parameters, in `space.searched` order."""
    from skopt.space import Categorical, Integer, Real

    dims: list[Any] = []
    for p in space.searched:
        prior = "log-uniform" if p.log else "uniform"
        if p.type == "choice":
            dims.append(Categorical(list(p.values), name=p.name))
            continue
        low, high = p.bounds()
        if p.type == "int":
            if low == high:
                dims.append(Categorical([int(low)], name=p.name))
            else:
                dims.append(Integer(int(low), int(high), prior=prior, name=p.name))
        elif low == high:
            dims.append(Categorical([float(low)], name=p.name))
        else:
            dims.append(Real(float(low), float(high), prior=prior, name=p.name))
    return dims


def plain(value: Any) -> Any:
    """A numpy scalar (as skopt returns) as the plain Python value Tune configs need."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value
