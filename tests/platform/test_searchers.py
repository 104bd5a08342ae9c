"""Search spaces (parsing, conversion), the GP searcher's ask/tell/liar/save/restore, and each
searcher in a real study."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter, Searcher
from tune_helpers import TINY_SPACE, tiny_config, tiny_data, write_space

from samplegen.errors import SamplegenError
from samplegen.platform.searchers import DistinctRandomSearcher, SkoptSearcher, build_search
from samplegen.platform.spaces import (
    SpaceError,
    default_space,
    load_space,
    packaged_spaces,
    parse_space,
    resolve_space,
    to_skopt,
    to_tune,
)
from samplegen.platform.study import check_space_names, run_study, search_plan


def test_every_packaged_space_parses_and_matches_its_model() -> None:
    names = packaged_spaces()
    models = ("conv2d_ae", "frame_ae", "mlp_ae", "rnn_ae", "audio_conv_ae", "harmonic_ae")
    for model in (*models, "vae", "bounded_ae", "vq_vae"):
        assert model in names
        space = default_space(model)
        assert space.model == model
        check_space_names(model, space.names, model)  # names are the model's hyper-parameters
        assert space.grid_size() >= 1
        assert len(to_skopt(space)) == len(space.searched)
        assert set(to_tune(space, grid=False)) == set(space.names)


def test_grid_values_and_types() -> None:
    space = parse_space(
        {
            "model": "m",
            "params": {
                "a": {"type": "int", "low": 1, "high": 4},
                "b": {"type": "int", "low": 1, "high": 100, "log": True, "grid_points": 3},
                "c": {"type": "float", "low": 0.0, "high": 1.0},
                "d": {"type": "choice", "values": ["x", "y"]},
                "e": {"type": "const", "value": 0.5},
                "f": {"type": "float", "low": 1e-4, "high": 1e-2, "grid": [1e-3]},
            },
        }
    )
    p = {x.name: x for x in space.params}
    assert p["a"].grid_values() == [1, 2, 3, 4]
    assert p["b"].grid_values() == [1, 10, 100]
    assert p["c"].grid_values() == [0.0, 0.5, 1.0]
    assert p["d"].grid_values() == ["x", "y"]
    assert space.constants == {"e": 0.5}
    assert space.grid_size() == 4 * 3 * 3 * 2 * 1 * 1


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"a": {"type": "real", "low": 0, "high": 1}}, "type must be one of"),
        ({"a": {"type": "int", "low": 3, "high": 1}}, "low 3 > high 1"),
        ({"a": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}, "log range needs low > 0"),
        ({"a": {"type": "int", "low": 1, "high": 5, "grid": [9]}}, "grid value 9 outside"),
        ({"a": {"type": "choice", "values": []}}, "non-empty `values`"),
        ({"a": {"type": "choice", "values": ["x", "y"], "grid": ["z"]}}, "'z' is not one of"),
        ({"a": {"type": "int", "low": 1, "high": 2, "step": 1}}, "unknown key"),
        ({"a": {"type": "const"}}, "needs `value`"),
    ],
)
def test_bad_spaces_name_file_and_parameter(tmp_path: Path, params: dict, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"model": "conv2d_ae", "params": params}))
    with pytest.raises(SpaceError, match=message) as info:
        load_space(path)
    assert str(path) in str(info.value) and "'a'" in str(info.value)


def test_space_model_mismatch_and_unknown_names(tmp_path: Path) -> None:
    path = write_space(tmp_path / "s.yaml")
    with pytest.raises(SpaceError, match="not 'mlp_ae'"):
        resolve_space("mlp_ae", path)
    with pytest.raises(SpaceError, match="no packaged search space"):
        resolve_space("nonexistent_model")
    with pytest.raises(Exception, match="not hyper-parameters of model conv2d_ae"):
        check_space_names("conv2d_ae", ["layers", "depthh"], "s.yaml")


def test_grid_runs_each_point_once() -> None:
    space = parse_space(TINY_SPACE)
    plan = build_search("grid", space, trials=50, metric="val_loss")
    assert plan.num_samples == 1 and plan.search_alg is None
    assert "4 points" in plan.note and "--trials 50 ignored" in plan.note


def _gp(seed: int = 0) -> SkoptSearcher:
    return SkoptSearcher(parse_space(TINY_SPACE), "val_loss", "min", seed=seed, n_initial_points=3)


def _suggest(gp: Searcher, trial_id: str) -> dict[str, Any]:
    config = gp.suggest(trial_id)
    assert config is not None
    return config


def _loss(config: dict[str, Any]) -> float:
    return (config["lr_exp"] + 3.5) ** 2 + config["layers"] + 0.1 * config["kernels"]


def test_gp_suggests_plain_python_values_and_learns() -> None:
    gp = _gp()
    for i in range(8):
        config = gp.suggest(f"t{i}")
        assert config is not None
        assert type(config["layers"]) is int and type(config["lr_exp"]) is float
        assert config["kernel_size"] == 3  # constants are added
        gp.on_trial_complete(f"t{i}", {"val_loss": _loss(config), "status": "completed"})
    assert len(gp.xs) == 8 and gp.pending == {}
    assert min(gp.ys) < sorted(gp.ys)[len(gp.ys) // 2]


def test_gp_constant_liar_spreads_parallel_suggestions() -> None:
    gp = _gp()
    for i in range(4):
        c = _suggest(gp, f"t{i}")
        gp.on_trial_complete(f"t{i}", {"val_loss": _loss(c), "status": "completed"})
    in_flight = [_suggest(gp, f"p{i}") for i in range(3)]
    points = {tuple(sorted(c.items())) for c in in_flight}
    assert len(points) == 3  # three trials in flight, three different points
    assert len(gp.pending) == 3


def test_gp_failed_trials_get_the_worst_value_not_a_huge_penalty() -> None:
    gp = _gp()
    c0 = gp.suggest("a")
    gp.on_trial_complete("a", {"val_loss": float("inf"), "status": "rejected"})
    assert gp.xs == []  # nothing told yet: the failure is dropped
    c1 = gp.suggest("b")
    gp.on_trial_complete("b", {"val_loss": 5.0, "status": "completed"})
    gp.suggest("c")
    gp.on_trial_complete("c", {"val_loss": float("nan"), "status": "nan"})
    gp.suggest("d")
    gp.on_trial_complete("d", None, error=True)
    assert gp.ys == [5.0, 5.0, 5.0] and c0 is not None and c1 is not None


def test_gp_save_restore_continues_from_told_points(tmp_path: Path) -> None:
    gp = _gp(seed=3)
    for i in range(5):
        c = _suggest(gp, f"t{i}")
        gp.on_trial_complete(f"t{i}", {"val_loss": _loss(c), "status": "completed"})
    gp.suggest("running")
    path = tmp_path / "searcher-state.json"
    gp.save(str(path))
    restored = _gp(seed=99)
    restored.restore(str(path))
    assert restored.xs == gp.xs and restored.ys == gp.ys and restored.seed == 3
    assert restored.pending == gp.pending and restored.suggested == 6
    assert len(restored._opt.Xi) == 5  # the GP is refitted on every told point
    # The trial still running when the state was saved completes into the restored searcher.
    restored.on_trial_complete("running", {"val_loss": 1.0, "status": "completed"})
    assert len(restored.xs) == 6
    with pytest.raises(Exception, match="different search space"):
        other = SkoptSearcher(default_space("conv2d_ae"), "val_loss", "min")
        other.restore(str(path))


def test_build_search_wraps_gp_and_tpe_in_a_concurrency_limiter() -> None:
    space = parse_space(TINY_SPACE)
    for name in ("gp", "tpe"):
        plan = build_search(name, space, trials=6, metric="val_loss", max_concurrent=2)
        assert isinstance(plan.search_alg, ConcurrencyLimiter) and plan.num_samples == 6
    with pytest.raises(Exception, match="--search"):
        build_search("bayes", space, trials=3, metric="val_loss")


def test_a_space_with_nothing_to_vary_runs_once_and_is_not_searched() -> None:
    # The packaged harmonic_vae space is all constants: skopt and hyperopt used to fail deep
    # inside (a bare AssertionError, a RuntimeError), and random trials were copies of one run.
    from samplegen.platform.presets import space_path

    space = load_space(str(space_path("harmonic_vae")))
    assert not space.searched
    for name in ("gp", "tpe"):
        with pytest.raises(SamplegenError, match=f"--search {name}: .* nothing to search"):
            build_search(name, space, trials=4, metric="val_loss")
    with pytest.raises(SamplegenError, match="--trials 4: .* the same run; use --trials 1"):
        build_search("random", space, trials=4, metric="val_loss")
    assert build_search("random", space, trials=1, metric="val_loss").num_samples == 1
    assert build_search("grid", space, trials=4, metric="val_loss").num_samples == 1


FINITE_SPACE = {
    "model": "conv2d_ae",
    "params": {
        "layers": {"type": "choice", "values": [1, 2, 3]},
        "kernels": {"type": "int", "low": 1, "high": 3},
    },
}


def test_gp_never_runs_a_point_of_a_finite_space_twice() -> None:
    # 9 configurations, 9 trials. Before, with this seed and loss, skopt proposed (2, 3) twice
    # and (1, 3) never: a copy of a finished trial (same configuration, same seed).
    gp = SkoptSearcher(parse_space(FINITE_SPACE), "val_loss", "min", seed=0, n_initial_points=3)
    assert sorted(_nine_trials(gp)) == [(a, b) for a in (1, 2, 3) for b in (1, 2, 3)]


def _nine_trials(searcher: Searcher) -> list[tuple[int, int]]:
    """The (layers, kernels) of 9 trials in turn on FINITE_SPACE, each told its loss."""
    points = []
    for i in range(9):
        c = _suggest(searcher, f"t{i}")
        points.append((c["layers"], c["kernels"]))
        loss = (c["layers"] - 2) ** 2 + (c["kernels"] - 2) ** 2
        searcher.on_trial_complete(f"t{i}", {"val_loss": loss, "status": "completed"})
    return points


def test_gp_in_flight_points_of_a_finite_space_are_all_different() -> None:
    gp = SkoptSearcher(parse_space(FINITE_SPACE), "val_loss", "min", seed=1, n_initial_points=2)
    c = _suggest(gp, "done")
    gp.on_trial_complete("done", {"val_loss": 1.0, "status": "completed"})
    in_flight = [_suggest(gp, f"p{i}") for i in range(8)]
    assert len({(c["layers"], c["kernels"]) for c in [c, *in_flight]}) == 9


def test_more_trials_than_a_finite_space_holds_are_refused() -> None:
    space = parse_space(FINITE_SPACE)
    assert space.distinct_points() == 9
    assert parse_space(TINY_SPACE).distinct_points() is None  # a float range: endless
    for name in ("random", "gp", "tpe"):
        with pytest.raises(SamplegenError, match="--trials 10: .* only 9 different .* --trials 9"):
            build_search(name, space, trials=10, metric="val_loss")
        assert build_search(name, space, trials=9, metric="val_loss").num_samples == 9
    assert build_search("grid", space, trials=10, metric="val_loss").num_samples == 1


def test_random_search_on_a_finite_space_draws_each_configuration_once(tmp_path: Path) -> None:
    plan = build_search("random", parse_space(FINITE_SPACE), trials=9, metric="val_loss")
    random = plan.search_alg
    assert isinstance(random, DistinctRandomSearcher) and plan.num_samples == 9
    assert "each a different one of 9 configurations" in plan.note
    first = [random.suggest(f"t{i}") for i in range(4)]
    random.save(str(tmp_path / "state.json"))
    # A resumed study's searcher (another instance, as Tune restores it) keeps drawing new ones.
    restored = DistinctRandomSearcher(parse_space(FINITE_SPACE), "val_loss", "min")
    restored.restore(str(tmp_path / "state.json"))
    rest = [restored.suggest(f"t{i}") for i in range(4, 9)]
    points = sorted((c["layers"], c["kernels"]) for c in [*first, *rest] if c is not None)
    assert points == [(a, b) for a in (1, 2, 3) for b in (1, 2, 3)]
    with pytest.raises(SamplegenError, match="all 9 configurations of the space were drawn"):
        restored.suggest("t9")
    with pytest.raises(SamplegenError, match="different search space"):
        DistinctRandomSearcher(parse_space(TINY_SPACE)).restore(str(tmp_path / "state.json"))
    # A space with a float range keeps Tune's own random search.
    tune_random = build_search("random", parse_space(TINY_SPACE), trials=9, metric="x")
    assert isinstance(tune_random.search_alg, BasicVariantGenerator)


def test_a_random_study_on_a_finite_space_resumed_runs_every_configuration_once(
    tmp_path: Path, ray_session: None
) -> None:
    space = write_space(
        tmp_path / "space.yaml",
        kernels={"type": "choice", "values": [2, 4]},
        lr_exp={"type": "const", "value": -4.0},
        batch_exp={"type": "const", "value": 3},
    )
    config = tiny_config(
        tmp_path / "studies", space, "distinct", search="random", trials=4, max_concurrent=1
    )
    first = run_study(config, tiny_data(), interrupt_after=2)
    assert first.interrupted
    second = run_study(config, tiny_data(), resume=True)
    assert not second.interrupted and len(second.rows) == 4
    configs = sorted((r["config.layers"], r["config.kernels"]) for r in second.rows)
    assert configs == [(1, 2), (1, 4), (2, 2), (2, 4)]


@pytest.mark.parametrize("search", ["random", "gp", "tpe"])
def test_a_studys_searcher_keeps_its_cap_and_learns_from_each_trials_best_epoch(
    search: str, tmp_path: Path
) -> None:
    """--max-concurrent holds for every searcher (random, the default, used to run unlimited),
    and the searchers learn the number the study ranks trials by, not the last epoch's."""
    path = write_space(tmp_path / "space.yaml")
    config = tiny_config(tmp_path, path, "s", search=search, max_concurrent=2)
    plan = search_plan(config, load_space(path), 2)
    alg: Any = plan.search_alg
    if search == "random":
        assert alg.max_concurrent == 2
        return
    assert isinstance(alg, ConcurrencyLimiter) and alg.max_concurrent == 2
    # What Tune does before the study starts: it offers the schedulers' per-epoch metric.
    alg.set_search_properties("val_loss", "min", plan.param_space)
    assert alg.searcher.metric == "best_val_loss"


@pytest.mark.parametrize("search", ["grid", "random", "gp", "tpe"])
def test_each_searcher_runs_a_real_study(search: str, tmp_path: Path, ray_session: None) -> None:
    space = write_space(tmp_path / "space.yaml")
    config = tiny_config(tmp_path / "studies", space, f"search-{search}", search=search, trials=4)
    result = run_study(config, tiny_data())
    assert not result.interrupted
    assert len(result.rows) == 4  # grid: 2 x 2 points; the others: --trials 4
    assert all(r["status"] == "completed" and r["epochs"] == 3 for r in result.rows)
    configs = {(r["config.layers"], r["config.kernels"], r["config.lr_exp"]) for r in result.rows}
    if search == "grid":
        assert configs == {(a, b, -4.0) for a in (1, 2) for b in (2, 4)}
    else:
        assert len(configs) == 4
    for r in result.rows:
        assert 1 <= r["config.layers"] <= 2 and -5 <= r["config.lr_exp"] <= -3
    best = result.best
    assert best is not None and best["best_val_loss"] == min(
        r["best_val_loss"] for r in result.rows
    )
    assert result.best_model is not None and Path(result.best_model, "config.json").exists()


def test_a_spaces_corners_are_its_ranges_ends_and_its_every_choice() -> None:
    space = parse_space(
        {
            "model": "vae",
            "params": {
                "depth": {"type": "int", "low": 1, "high": 4},
                "decoder": {"type": "choice", "values": ["mlp", "frames", "conv"]},
                "latent": {"type": "const", "value": 8},
                "ratio": {"type": "float", "low": 0.1, "high": 0.2, "log": True},
            },
        }
    )
    corners = space.corners()
    assert len(corners) == 12
    assert {(c["depth"], c["decoder"], c["ratio"]) for c in corners} == {
        (d, k, r) for d in (1, 4) for k in ("mlp", "frames", "conv") for r in (0.1, 0.2)
    }
    assert all(c["latent"] == 8 for c in corners)
    drawn = space.corners(limit=5, seed=1)
    assert len(drawn) == 5 and all(c in corners for c in drawn)
    assert drawn == space.corners(limit=5, seed=1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tpe_never_runs_a_point_of_a_finite_space_twice(seed: int) -> None:
    plan = build_search("tpe", parse_space(FINITE_SPACE), trials=9, metric="val_loss", seed=seed)
    # Before, with each of these seeds, TPE proposed a finished trial's configuration again.
    tpe = plan.search_alg
    assert isinstance(tpe, Searcher)
    assert tpe.set_search_properties("val_loss", "min", plan.param_space)
    assert sorted(_nine_trials(tpe)) == [(a, b) for a in (1, 2, 3) for b in (1, 2, 3)]


def test_tpe_restored_from_its_saved_state_still_never_repeats(tmp_path: Path) -> None:
    def fresh() -> Searcher:
        plan = build_search("tpe", parse_space(FINITE_SPACE), trials=9, metric="val_loss")
        assert isinstance(plan.search_alg, Searcher)
        assert plan.search_alg.set_search_properties("val_loss", "min", plan.param_space)
        return plan.search_alg

    first = fresh()
    points = []
    for i in range(4):
        c = _suggest(first, f"t{i}")
        points.append((c["layers"], c["kernels"]))
        first.on_trial_complete(f"t{i}", {"val_loss": float(i), "status": "completed"})
    first.save(str(tmp_path / "tpe.pkl"))  # Tune's own searcher checkpoint (cloudpickle)
    resumed = fresh()
    resumed.restore(str(tmp_path / "tpe.pkl"))
    for i in range(4, 9):
        c = _suggest(resumed, f"t{i}")
        points.append((c["layers"], c["kernels"]))
        resumed.on_trial_complete(f"t{i}", {"val_loss": float(i), "status": "completed"})
    assert sorted(points) == [(a, b) for a in (1, 2, 3) for b in (1, 2, 3)]
