"""Every preset's search spaces load, respect the issue's limits and build a model at each corner;
a run's own spaces replace a preset's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from samplegen.dsp.config import CodecConfig
from samplegen.errors import SamplegenError
from samplegen.models.registry import build_model
from samplegen.platform.presets import PRESETS, get_preset, space_path, with_spaces
from samplegen.platform.schedulers import check_asha_grace
from samplegen.platform.spaces import Param, bind_code_frames, load_space, resolve_space
from samplegen.platform.study import StudyConfig
from samplegen.platform.training import split_config

STAGES = [(name, stage) for name in PRESETS for stage in ("outer", "inner")]


def _corners(param: Param) -> list[Any]:
    if param.type in ("choice", "const"):
        return list(param.values)
    assert param.low is not None and param.high is not None
    cast = int if param.type == "int" else float
    return [cast(param.low), cast(param.high)]


@pytest.mark.parametrize(("preset", "stage"), STAGES)
def test_preset_spaces_build_at_every_corner(preset: str, stage: str) -> None:
    budget = getattr(PRESETS[preset], stage)
    path = space_path(budget.space)
    space = load_space(path) if path else resolve_space(budget.model)
    assert space.model == budget.model
    # The study would refuse an ASHA rung inside the space's KL warm-up; so must the preset.
    check_asha_grace(
        budget.scheduler, space, asha_grace=budget.asha_grace, max_epochs=budget.epochs
    )
    if stage == "inner":
        # Issue 9: at most 8 latent variables for the chained VAE.
        assert max(_corners(next(p for p in space.params if p.name == "latent"))) <= 8
    codec = CodecConfig()
    # The inner study's input is the outer encoding, flat: size it by the largest frame_latent the
    # same preset's outer space allows, so no corner is rejected by the study's parameter cap.
    outer_path = space_path(PRESETS[preset].outer.space)
    outer_space = (
        load_space(outer_path) if outer_path else resolve_space(PRESETS[preset].outer.model)
    )
    frame_latent = max(_corners(next(p for p in outer_space.params if p.name == "frame_latent")))
    shape = codec.shape if stage == "outer" else (int(frame_latent) * codec.shape[1],)
    # The chained study fixes a frame decoder's frame count from the outer code, as here.
    space = bind_code_frames(space, None if stage == "outer" else codec.shape[1])
    cap = StudyConfig.max_params  # the field's default: the cap a study applies unless told
    # Every end of every range and every choice, one parameter at a time, plus all-low and
    # all-high together (the corners bound model size).
    low = {p.name: _corners(p)[0] for p in space.params}
    high = {p.name: _corners(p)[-1] for p in space.params}
    configs = [low, high] + [{**low, p.name: v} for p in space.params for v in _corners(p)[1:]]
    for config in configs:
        optim, model_hp = split_config(config)
        assert optim.lr > 0
        model = build_model(budget.model, model_hp, shape, max_params=cap, device="meta")
        assert model.num_params() > 0, config


def test_every_packaged_space_names_its_models_hyper_parameters() -> None:
    # Also those no preset uses (harmonic_vae, the waveform path's VAE in the README).
    from samplegen.platform.study import check_space_names

    folder = Path(_packaged("quick_vae")).parent
    names = sorted(p.stem for p in folder.glob("*.yaml"))
    assert "harmonic_vae" in names
    for name in names:
        space = load_space(_packaged(name))
        check_space_names(space.model, space.names, space.source)
        low = {p.name: _corners(p)[0] for p in space.params}
        split_config(low)


def _packaged(space: str | None) -> str:
    path = space_path(space)
    assert path is not None
    return path


def test_only_a_space_that_picks_a_decoder_gets_the_outer_codes_frame_count() -> None:
    quick = load_space(_packaged(PRESETS["quick"].inner.space))
    bound = bind_code_frames(quick, 87)
    assert bound.constants["frames"] == 87 and bound.names[:-1] == quick.names
    assert bind_code_frames(quick, None) == quick  # an outer code that is not frames x values
    assert bind_code_frames(bound, 12).constants["frames"] == 87  # a space's own value stays
    outer = load_space(_packaged(PRESETS["quick"].outer.space))
    assert bind_code_frames(outer, 87) == outer


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_a_runs_own_spaces_replace_the_presets_and_pick_its_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    quick = get_preset("quick")
    monkeypatch.chdir(tmp_path)
    outer = _write(
        tmp_path / "outer.yaml",
        "model: conv2d_ae\nparams:\n  layers: {type: const, value: 2}\n"
        "  lr_exp: {type: float, low: -4, high: -3}\n",
    )
    mine = with_spaces(quick, outer="outer.yaml")
    assert (mine.outer.model, mine.outer.space) == ("conv2d_ae", outer)
    assert (mine.outer.trials, mine.outer.epochs, mine.inner) == (
        quick.outer.trials,
        quick.outer.epochs,
        quick.inner,
    )
    # A packaged preset space by name: the full preset's VAE space under the quick budget.
    mine = with_spaces(quick, inner="full_vae")
    packaged = space_path("full_vae")
    assert packaged is not None and Path(packaged).is_absolute()
    assert (mine.inner.model, mine.inner.space, mine.outer) == ("vae", packaged, quick.outer)
    assert with_spaces(quick) == quick


@pytest.mark.parametrize(
    ("flag", "text", "message"),
    [
        ("outer", "model: vae\nparams:\n  latent: {type: const, value: 8}\n", "is not an outer"),
        ("inner", "model: frame_ae\nparams:\n  hidden: {type: const, value: 8}\n", "not an inner"),
        ("inner", "model: vae\nparams:\n  latnet: {type: const, value: 8}\n", "latnet"),
        ("inner", "model: vae\nparams: [1, 2]\n", "expected a mapping"),
    ],
)
def test_a_bad_space_for_a_run_names_its_flag_and_file(
    tmp_path: Path, flag: str, text: str, message: str
) -> None:
    path = _write(tmp_path / "space.yaml", text)
    with pytest.raises(SamplegenError, match=message) as err:
        with_spaces(get_preset("quick"), **{flag: path})
    assert path in str(err.value)


def test_a_runs_vae_space_must_settle_before_the_presets_first_asha_rung(tmp_path: Path) -> None:
    text = (
        "model: vae\nparams:\n  latent: {type: const, value: 8}\n"
        "  warmup: {type: const, value: linear}\n  warmup_epochs: {type: const, value: WARM}\n"
    )
    full = get_preset("full")  # ASHA, first rung at epoch 50
    late = _write(tmp_path / "late.yaml", text.replace("WARM", "80"))
    with pytest.raises(SamplegenError, match="until epoch 80") as err:
        with_spaces(full, inner=late)
    assert f"--vae-space {late} under preset 'full'" in str(err.value)
    assert "Keep warmup_epochs at most 50" in str(err.value)
    assert with_spaces(full, inner=_write(tmp_path / "ok.yaml", text.replace("WARM", "50")))
    # The quick preset's studies are fifo: no rung to fall inside a warm-up.
    assert with_spaces(get_preset("quick"), inner=late).inner.space == late
