"""Presets of the main job (`samplegen run --preset quick|full`): every budget in one place.

`quick` fits a 2-core CPU in about 40 minutes of pipeline (README, `samplegen run`) and
reconstructs well; `full` is a real search for a GPU machine or a cluster.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from samplegen.errors import SamplegenError
from samplegen.platform.encoded import EqAugment
from samplegen.platform.resources import check_request


@dataclass(frozen=True)
class StageBudget:
    """One study's search: model, searcher, scheduler, trial count and epochs."""

    model: str
    search: str
    scheduler: str
    trials: int
    epochs: int
    space: str | None = None  # a packaged preset space (spaces/presets/NAME.yaml) or a YAML file
    cutoff_grace: int = 20
    # ASHA's first rung: no trial is stopped by ASHA before this epoch. A VAE's validation loss in
    # its KL warm-up says little about where it ends (mixup's best epochs come late), so the inner
    # studies wait longer than the study default of 1.
    asha_grace: int = 1
    train_subset: int | None = None
    # False turns off the study's overfit stop (validation/train above its limit). A VAE with a
    # small beta fits its training encodings long before its validation loss stops falling.
    stop_on_overfit: bool = True


@dataclass(frozen=True)
class Preset:
    """Everything `samplegen run` decides besides where the data and the run folder are."""

    name: str
    notes: str = "C3,C4,C5"
    augment_mixes: int = 0
    # Training-only notes of the variation presets of the training programs (built-in FluidR3
    # library only; samplegen.dsp.variations; skipped with a note for other sources).
    variations: bool = False
    outer: StageBudget = field(
        default_factory=lambda: StageBudget("frame_ae", "random", "asha+cutoff", 4, 6)
    )
    outer_final_epochs: int = 30
    inner: StageBudget = field(
        default_factory=lambda: StageBudget("vae", "random", "asha+cutoff", 4, 40)
    )
    # EQ copies of each training note added to the VAE study's training rows (samplegen.dsp.equalise);
    # the seed is the run's.
    inner_eq: EqAugment = field(default_factory=EqAugment)
    # Adam steps refining each VAE code when the combined model encodes (0 = the encoder's mean).
    refine_steps: int = 0
    # The VAE study's best N trials (by its encoder-mean loss) are scored again with refined codes
    # and the lowest refined validation loss is kept (samplegen.platform.selection); 1 keeps the
    # study's own choice. Needs refine_steps.
    rescore_trials: int = 1
    # Epochs of end-to-end fine-tuning of the combined model, outer frozen (0 = none; see
    # samplegen.platform.finetune); kept only when it lowers the validation loss.
    finetune_epochs: int = 0
    # After every choice is made on validation, train the selected inner model again with the
    # validation notes among its training notes (samplegen.platform.refit); the final model is
    # the refit one, and the selected one stays in models/selected.
    refit: bool = False
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    griffin_lim_iters: int = 32
    examples: int = 8

    def __post_init__(self) -> None:
        # Checked here, not in the sounds stage, so a bad preset fails before hours of training.
        check_request(
            self.cpus_per_trial,
            self.gpus_per_trial,
            cpus_flag="--cpus-per-trial",
            gpus_flag="--gpus-per-trial",
        )
        if self.rescore_trials < 1:
            raise SamplegenError(
                f"preset {self.name!r}: rescore_trials must be >= 1, got {self.rescore_trials}"
            )
        if self.rescore_trials > 1 and self.refine_steps < 1:
            raise SamplegenError(
                f"preset {self.name!r}: rescore_trials {self.rescore_trials} scores trials with "
                "refined codes, but refine_steps is 0 (no refinement)"
            )
        if self.examples < 4:
            raise SamplegenError(
                f"preset {self.name!r}: examples must be >= 4 (the latent grid's corners), "
                f"got {self.examples}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (recorded in the run folder)."""
        out = dataclasses.asdict(self)
        # Options left out when off, so runs recorded before them resume unchanged.
        for option in ("variations", "refit"):
            if not out[option]:
                del out[option]
        if out["rescore_trials"] == 1:
            del out["rescore_trials"]
        return out


PRESETS: dict[str, Preset] = {
    "quick": Preset(
        name="quick",
        # Validation 1.830% -> 1.782% RMS, test 1.602% -> 1.524% (RESULTS.md, "The quick pipeline
        # with the variation presets").
        variations=True,
        # Both studies run every trial to its end (fifo), not ASHA: with two trials at a time, ASHA
        # judges a trial against those that reached its rung first, so which trial was kept
        # depended on which finished an epoch first. One seed-0 pipeline kept a VAE with test
        # 1.531%, the same command from a fresh clone another one with 1.557% (RESULTS.md, "The
        # quick preset's studies without ASHA"). Now the study keeps the best trial on
        # validation, whatever the order.
        outer=StageBudget("frame_ae", "random", "fifo", trials=3, epochs=4, space="quick_frame_ae"),
        # 60 cosine epochs gave 0.73% test RMS, 80 gave 0.68% (RESULTS.md, sound quality).
        outer_final_epochs=80,
        inner=StageBudget(
            "vae",
            "random",
            "fifo",
            trials=4,
            # Each epoch holds the 1071 training notes and 2 EQ copies of each: 20 epochs are about
            # as many steps as the 60 epochs over the 927 library notes alone were.
            epochs=20,
            space="quick_vae",
            stop_on_overfit=False,
        ),
        # 2 copies through 8 dB EQ curves: refined validation 1.88% against 2.01% (RESULTS.md,
        # "Random EQ copies of the training notes"); of the variation presets' notes too since
        # "EQ copies of the variation presets' notes too, at three seeds".
        inner_eq=EqAugment(variants=2, db=8.0),
        refine_steps=100,
        # 20 epochs at 1e-4: train 1.55 -> 1.34% RMS, validation 1.99 -> 1.97% (RESULTS.md).
        finetune_epochs=20,
        # No refit (`samplegen run --refit` adds it): on this preset's model it moved test from
        # 1.524% to 1.522%, and each held-out half of validation got worse (1.711 -> 1.728%,
        # 1.842 -> 1.851%), for 10.5 more minutes (RESULTS.md, "The refit in the quick pipeline").
        griffin_lim_iters=32,
    ),
    "full": Preset(
        name="full",
        augment_mixes=3000,
        variations=True,  # measured at the quick preset's budget only
        outer=StageBudget(
            "frame_ae",
            "gp",
            "asha+cutoff",
            trials=60,
            epochs=200,
            space="full_frame_ae",
            # Epoch 1 ranked its trials less well than epoch 2 did: a halving rung there would
            # stop the second best of six (RESULTS.md, "What an ASHA rung at each epoch would
            # decide").
            asha_grace=2,
        ),
        outer_final_epochs=1000,
        inner=StageBudget(
            "vae",
            "tpe",
            "asha+cutoff",
            trials=100,
            epochs=400,
            space="full_vae",
            # After the longest KL warm-up its space draws (warmup_epochs up to 50): inside it,
            # ASHA would judge trials by where they are in their warm-ups.
            asha_grace=50,
            stop_on_overfit=False,
        ),
        # The quick preset's EQ copies, measured at its budget only (RESULTS.md, "Random EQ copies").
        inner_eq=EqAugment(variants=2, db=8.0),
        refine_steps=200,
        # Its search moves beta, the decoder and free bits, which change how much refinement
        # gains, so the encoder-mean ranking can misjudge it (RESULTS.md, "Choosing the VAE
        # study's trial with refined codes"). The quick space moves none of them: on its runs
        # both rankings kept the same trial, and it skips the cost.
        rescore_trials=5,
        finetune_epochs=20,  # the measured setting; longer was not measured
        gpus_per_trial=0.25,
        griffin_lim_iters=64,
    ),
}


def with_spaces(preset: Preset, *, outer: str | None = None, inner: str | None = None) -> Preset:
    """`preset` with its outer and/or VAE study searching the given spaces (YAML files, or the
    names of packaged preset spaces) instead of its own. Each space's `model` becomes its study's
    model: an outer model for the outer study, an inner one for the VAE study. Checked here, so a
    bad file fails before the run starts; the path is kept absolute, so a resumed run finds it."""
    from samplegen.models.registry import model_class
    from samplegen.platform.chain import check_inner_model
    from samplegen.platform.schedulers import check_asha_grace
    from samplegen.platform.spaces import load_space
    from samplegen.platform.study import check_space_names

    def override(budget: StageBudget, value: str, flag: str, outer_stage: bool) -> StageBudget:
        path = space_path(value)
        assert path is not None
        space = load_space(path)
        kind = model_class(space.model).kind
        if outer_stage and not kind.startswith("outer"):
            raise SamplegenError(
                f"{flag} {value}: model {space.model!r} is not an outer model (its kind is {kind})"
            )
        if not outer_stage:
            check_inner_model(space.model, f"{flag} {value}: model ")
        check_space_names(space.model, space.names, f"{flag} {value}")
        # Here, not when the study starts, which for the VAE study is after the outer stages.
        check_asha_grace(
            budget.scheduler,
            space,
            asha_grace=budget.asha_grace,
            max_epochs=budget.epochs,
            fixed_by=f"{flag} {value} under preset {preset.name!r}",
        )
        return dataclasses.replace(budget, model=space.model, space=str(Path(path).absolute()))

    if outer is not None:
        preset = dataclasses.replace(
            preset, outer=override(preset.outer, outer, "--outer-space", True)
        )
    if inner is not None:
        preset = dataclasses.replace(
            preset, inner=override(preset.inner, inner, "--vae-space", False)
        )
    return preset


def packaged_preset_spaces() -> list[str]:
    """The names `--space` takes for the packaged spaces of the presets (and harmonic_vae)."""
    return sorted(p.stem for p in (Path(__file__).parent / "spaces" / "presets").glob("*.yaml"))


def space_path(space: str | None) -> str | None:
    """The YAML file of a StageBudget's space: packaged preset spaces by name, else the path."""
    if space is None:
        return None
    packaged = Path(__file__).parent / "spaces" / "presets" / f"{space}.yaml"
    return str(packaged) if packaged.is_file() else space


def get_preset(name: str) -> Preset:
    """The preset called `name`; SamplegenError naming the choices otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise SamplegenError(f"--preset: {name!r} is not one of {', '.join(PRESETS)}") from None
