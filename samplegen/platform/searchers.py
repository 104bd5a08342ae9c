"""Searchers: grid, random, Gaussian process (scikit-optimize) and TPE (hyperopt).

`build_search` turns a SearchSpace into what a Tuner needs: a param_space, a search algorithm (or
None for Tune's own grid/random generator) and the number of samples. The GP searcher is ours
(Ray 2.60 dropped SkOptSearch): ask/tell around `skopt.Optimizer`, a constant liar for trials still
running, and JSON save/restore so `Tuner.restore` continues from the points already told.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray.tune.search import ConcurrencyLimiter, SearchAlgorithm, Searcher

from samplegen.atomic import write_json_atomic
from samplegen.errors import SamplegenError
from samplegen.platform.spaces import SearchSpace, plain, to_skopt, to_tune

SEARCHERS: tuple[str, ...] = ("grid", "random", "gp", "tpe")
# Statuses the trainable reports for trials that produced no usable loss.
FAILED_STATUSES: frozenset[str] = frozenset({"nan", "rejected", "error"})


def usable_loss(result: dict[str, Any] | None, metric: str | None) -> float | None:
    """The trial's metric if it finished with a finite value and no failure status, else None."""
    if not result or metric is None or result.get("status") in FAILED_STATUSES:
        return None
    value = result.get(metric)
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def untried_point(
    space: Any, tried: Callable[[list[Any]], bool], seed: int, draw: int, tries: int = 2000
) -> list[Any] | None:
    """A random point of `space` (skopt dimensions) for which `tried` is false, or None if
    `tries` draws find none. Seeded by (seed, draw), so a restored searcher draws the same."""
    import numpy as np

    rng = np.random.default_rng([seed, draw])
    for _ in range(tries):
        x = [plain(v) for v in space.rvs(n_samples=1, random_state=int(rng.integers(2**31)))[0]]
        if not tried(x):
            return x
    return None


class SpaceSearcher(Searcher):
    """What our searchers share: a SearchSpace and a seed, the study's metric and mode, and a
    state saved as JSON (never pickled), refused on restore when it is of another space."""

    kind = ""  # names the searcher in errors

    def __init__(
        self,
        space: SearchSpace,
        metric: str | None = None,
        mode: str | None = None,
        *,
        seed: int = 0,
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        self.space = space
        self.seed = int(seed)
        self.names = [p.name for p in space.searched]
        self._start()

    def _start(self) -> None:
        """A subclass's own fields, set up fresh (before any state is restored)."""

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict, **spec: Any
    ) -> bool:
        """Accept the study's metric and mode (the space comes from the constructor)."""
        # Tune passes the schedulers' per-epoch metric; the searcher keeps the one it was built
        # with (what the study ranks trials by).
        self._metric = self._metric or metric
        self._mode = self._mode or mode
        return True

    def _config(self, x: list[Any]) -> dict[str, Any]:
        """The configuration of a point: its searched values plus the constants."""
        config = dict(zip(self.names, x, strict=True))
        config.update(self.space.constants)
        return config

    def get_state(self) -> dict[str, Any]:
        """Everything needed to continue, JSON-able."""
        raise NotImplementedError

    def set_state(self, state: dict[str, Any]) -> None:
        """Continue from `get_state` output."""
        raise NotImplementedError

    def save(self, checkpoint_path: str) -> None:
        """Write the state as JSON (atomically; Tune passes a temporary file name)."""
        write_json_atomic(checkpoint_path, self.get_state(), indent=None)

    def restore(self, checkpoint_path: str) -> None:
        """Read a state written by `save`."""
        try:
            state = json.loads(Path(checkpoint_path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SamplegenError(
                f"{checkpoint_path}: cannot restore {self.kind} searcher ({exc})"
            ) from None
        if state.get("space") != self.space.to_dict():
            raise SamplegenError(
                f"{self.kind} searcher: saved state is for a different search space"
            )
        self.set_state(state)


class DistinctRandomSearcher(SpaceSearcher):
    """Random search over a space of ints and choices that never draws a configuration twice.

    Tune's own random search draws each trial independently, so on a finite space some trials
    would be copies of others (a trial's seed comes from its configuration). The points drawn
    are saved, so a resumed study keeps drawing new ones.
    """

    kind = "random"

    def _start(self) -> None:
        from skopt.space import Space

        self._dims = Space(to_skopt(self.space))
        self.drawn: list[list[Any]] = []

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        """A configuration not drawn before (`build_search` asks for no more than there are)."""
        x = untried_point(self._dims, self.drawn.__contains__, self.seed, len(self.drawn))
        if x is None:  # random draws miss the last few points of a large space: go through them
            x = next((p for p in _all_points(self.space) if p not in self.drawn), None)
            if x is None:
                raise SamplegenError(
                    f"random searcher: all {len(self.drawn)} configurations of the space were "
                    "drawn already"
                )
        self.drawn.append(x)
        return self._config(x)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        """Nothing to learn: the draws do not depend on results."""

    def get_state(self) -> dict[str, Any]:
        """The points drawn so far."""
        return {"version": 1, "space": self.space.to_dict(), "seed": self.seed, "drawn": self.drawn}

    def set_state(self, state: dict[str, Any]) -> None:
        """Continue from `get_state` output."""
        self.seed = int(state["seed"])
        self.drawn = [list(x) for x in state["drawn"]]


def _all_points(space: SearchSpace) -> Iterator[list[Any]]:
    """Every point of a space of ints and choices, its searched parameters in order."""
    axes = []
    for p in space.searched:
        if p.type == "choice":
            axes.append(list(p.values))
        else:
            low, high = p.bounds()
            axes.append(list(range(int(low), int(high) + 1)))
    for combo in itertools.product(*axes):
        yield [plain(v) for v in combo]


class SkoptSearcher(SpaceSearcher):
    """Gaussian-process search with scikit-optimize's ask/tell Optimizer.

    Trials in flight get a constant lie (the best value told so far, "cl_min") so that parallel
    suggestions spread out instead of asking the same point. Trials that failed (NaN, rejected,
    errored) are told the worst value seen so far, so the model learns to avoid them without a
    penalty that would wreck the GP's scale; with nothing told yet they are dropped.
    """

    kind = "gp"

    def __init__(
        self,
        space: SearchSpace,
        metric: str | None = None,
        mode: str | None = None,
        *,
        seed: int = 0,
        n_initial_points: int = 10,
        acq_func: str = "gp_hedge",
    ) -> None:
        super().__init__(space, metric, mode, seed=seed)
        self.n_initial_points = int(n_initial_points)
        self.acq_func = acq_func
        self.xs: list[list[Any]] = []  # points told, in order
        self.ys: list[float] = []  # values told (minimised: negated for mode="max")
        self.pending: dict[str, list[Any]] = {}
        self.suggested = 0
        self._opt = self._new_optimizer()

    def _new_optimizer(self) -> Any:
        from skopt import Optimizer

        # Re-seed from the number of points told, so a restored searcher is reproducible.
        opt = Optimizer(
            to_skopt(self.space),
            base_estimator="gp",
            n_initial_points=self.n_initial_points,
            acq_func=self.acq_func,
            # Sampling the acquisition function is much faster than L-BFGS restarts and plenty
            # for spaces of a handful of dimensions.
            acq_optimizer="sampling",
            random_state=self.seed + len(self.xs),
        )
        if self.xs:
            opt.tell([list(x) for x in self.xs], list(self.ys))
        return opt

    def _ask(self) -> list[Any]:
        if not self.pending or not self.ys:
            return self._opt.ask()
        # Constant liar: a copy of the optimiser that believes every pending point scored the best
        # value so far, so the next point is chosen away from them.
        liar = self._opt.copy(random_state=self.seed + 7919 * (self.suggested + 1))
        lie = min(self.ys)
        liar.tell([list(x) for x in self.pending.values()], [lie] * len(self.pending))
        return liar.ask()

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        """The next configuration: searched values (plain Python) plus the constants."""
        if self._metric is None:
            raise SamplegenError("gp searcher: no metric set")
        x = [plain(v) for v in self._ask()]
        if self._tried(x):
            # On a space of ints and choices the GP can propose a point it has already run (or
            # is running), which would train a copy of that trial (same configuration, same seed).
            x = untried_point(self._opt.space, self._tried, self.seed, self.suggested) or x
        self.pending[trial_id] = x
        self.suggested += 1
        return self._config(x)

    def _tried(self, x: list[Any]) -> bool:
        return x in self.xs or x in self.pending.values()

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        """Tell the optimiser the trial's final value (or the worst so far for failures)."""
        x = self.pending.pop(trial_id, None)
        if x is None:
            return
        value = None if error else usable_loss(result, self._metric)
        if value is not None and self._mode == "max":
            value = -value
        if value is None:
            if not self.ys:
                return
            value = max(self.ys)
        self.xs.append(x)
        self.ys.append(float(value))
        self._opt.tell(x, float(value))

    def get_state(self) -> dict[str, Any]:
        """Everything needed to continue: points and values told, pending points, counters."""
        return {
            "version": 1,
            "space": self.space.to_dict(),
            "metric": self._metric,
            "mode": self._mode,
            "seed": self.seed,
            "n_initial_points": self.n_initial_points,
            "acq_func": self.acq_func,
            "xs": self.xs,
            "ys": self.ys,
            "pending": self.pending,
            "suggested": self.suggested,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Continue from `get_state` output (refit the GP on the told points)."""
        self._metric = state["metric"]
        self._mode = state["mode"]
        self.seed = int(state["seed"])
        self.n_initial_points = int(state["n_initial_points"])
        self.acq_func = state["acq_func"]
        self.xs = [list(x) for x in state["xs"]]
        self.ys = [float(y) for y in state["ys"]]
        self.pending = {k: list(v) for k, v in state["pending"].items()}
        self.suggested = int(state["suggested"])
        self._opt = self._new_optimizer()


# How often TPE may propose a configuration already tried or running, then hyperopt's own random
# draw, before a repeat is let through (only possible on a space almost wholly tried).
_TPE_RETRIES = 5
_RANDOM_RETRIES = 2000


def _distinct_suggestions(algo: Any) -> Any:
    """hyperopt's `algo` (TPE), proposing on a finite space only configurations not yet tried.

    A repeat is replaced by hyperopt's own draw (TPE again with another seed, then `rand`), so the
    trial document hyperopt records is the configuration that runs: replacing the configuration
    Tune gets would teach TPE one configuration's loss under another's name.
    """
    import hyperopt as hpo

    def suggest(new_ids: list[int], domain: Any, trials: Any, seed: int) -> list[Any]:
        seen = [t["misc"]["vals"] for t in trials.trials]
        rng = random.Random(seed)
        docs = algo(new_ids, domain, trials, seed)
        for attempt in range(_TPE_RETRIES + _RANDOM_RETRIES):
            if docs[0]["misc"]["vals"] not in seen:
                break
            again = algo if attempt < _TPE_RETRIES else hpo.rand.suggest
            docs = again(new_ids, domain, trials, rng.randrange(2**31 - 1))
        return list(docs)

    return suggest


def _tpe_class() -> type:
    from ray.tune.search.hyperopt import HyperOptSearch

    class FailureAwareHyperOpt(HyperOptSearch):
        """HyperOptSearch that records NaN/rejected trials as hyperopt errors, not as losses, and
        (`distinct`) never proposes a configuration of a finite space twice."""

        def __init__(self, *args: Any, distinct: bool = False, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if distinct:
                me: Any = self  # HyperOptSearch sets `algo` untyped
                me.algo = _distinct_suggestions(me.algo)

        def set_search_properties(
            self, metric: str | None, mode: str | None, config: dict[str, Any], **spec: Any
        ) -> bool:
            # Tune passes the schedulers' per-epoch metric; the searcher keeps the one it was
            # built with (what the study ranks trials by).
            return bool(super().set_search_properties(self._metric or metric, mode, config, **spec))

        def on_trial_complete(
            self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
        ) -> None:
            if not error and usable_loss(result, self._metric) is None:
                error = True
            super().on_trial_complete(trial_id, result, error)

    return FailureAwareHyperOpt


@dataclass(frozen=True)
class SearchPlan:
    """What a Tuner needs from a searcher choice."""

    param_space: dict[str, Any]
    search_alg: Searcher | SearchAlgorithm | None
    num_samples: int
    note: str = ""


def build_search(
    name: str,
    space: SearchSpace,
    *,
    trials: int,
    metric: str,
    mode: str = "min",
    seed: int = 0,
    max_concurrent: int | None = None,
) -> SearchPlan:
    """A SearchPlan for `grid`, `random`, `gp` or `tpe` over `space`.

    grid runs every point of the space once: Tune multiplies grid points by num_samples, so
    num_samples is forced to 1 and `trials` is ignored (the note says so).
    """
    if trials < 1:
        raise SamplegenError(f"--trials: must be >= 1, got {trials}")
    if not space.searched and name != "grid":
        # skopt and hyperopt fail deep inside on an empty space; random would train copies.
        if name in ("gp", "tpe"):
            raise SamplegenError(
                f"--search {name}: the space ({space.source}) has no parameter that varies, so "
                "there is nothing to search; run its one configuration with --trials 1"
            )
        if trials > 1:
            raise SamplegenError(
                f"--trials {trials}: the space ({space.source}) has no parameter that varies, so "
                "every trial would be the same run; use --trials 1"
            )
    points = space.distinct_points()
    if name != "grid" and points is not None and trials > points:
        # A trial's seed comes from its configuration, so a configuration run twice is the same
        # run twice: the trials past the space's size could only be copies.
        raise SamplegenError(
            f"--trials {trials}: the space ({space.source}) holds only {points} different "
            f"configurations, so some trials would be copies of others; use --search grid to run "
            f"each once, or --trials {points} or fewer"
        )
    if name == "grid":
        size = space.grid_size()
        note = f"grid search: {size} points, each run once (--trials {trials} ignored)"
        return SearchPlan(to_tune(space, grid=True), None, 1, note)
    if name == "random" and points is not None:
        distinct: Searcher = DistinctRandomSearcher(space, metric, mode, seed=seed)
        if max_concurrent:
            distinct = ConcurrencyLimiter(distinct, max_concurrent=max_concurrent)
        return SearchPlan(
            {},
            distinct,
            trials,
            f"random search: {trials} trials, each a different one of {points} configurations",
        )
    if name == "random":
        from ray.tune.search import BasicVariantGenerator

        alg = BasicVariantGenerator(random_state=seed, max_concurrent=max_concurrent or 0)
        return SearchPlan(
            to_tune(space, grid=False), alg, trials, f"random search: {trials} trials"
        )
    n_initial = max(2, min(10, trials // 3))
    if name == "gp":
        # metric and mode go in here: Tune skips set_search_properties for an empty param_space.
        searcher: Searcher = SkoptSearcher(
            space, metric, mode, seed=seed, n_initial_points=n_initial
        )
        if max_concurrent:
            searcher = ConcurrencyLimiter(searcher, max_concurrent=max_concurrent)
        # The space lives in the searcher; Tune gets only the constants.
        return SearchPlan(
            {}, searcher, trials, f"gp search: {trials} trials, {n_initial} random first"
        )
    if name == "tpe":
        searcher = _tpe_class()(
            metric=metric,
            mode=mode,
            random_state_seed=seed,
            n_initial_points=n_initial,
            distinct=points is not None,
        )
        if max_concurrent:
            searcher = ConcurrencyLimiter(searcher, max_concurrent=max_concurrent)
        return SearchPlan(
            to_tune(space, grid=False),
            searcher,
            trials,
            f"tpe search: {trials} trials, {n_initial} random first",
        )
    raise SamplegenError(f"--search: {name!r} is not one of {', '.join(SEARCHERS)}")
