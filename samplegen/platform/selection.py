"""The chained study's last choice: its best trials judged as the combined model will be used.

A chained study ranks its trials by the end-to-end validation loss of the encoder's mean code.
A combined model whose VAE refines its codes (`refine_steps`) is used with refined codes, and the
two rankings can disagree: a frame decoder with SiLU looked better than ReLU on the encoder's mean
and fitted worse once codes were refined (benchmarks/RESULTS.md, "The frame decoder's activation
and time features"). `choose_refined` scores the study's best few trials again with refined codes,
on the same validation notes and in the same units, and the lowest refined loss is the choice.

Each score is written to the study's `refined_choice.json` as soon as it is known, so an
interrupted choice continues where it stopped and a repeated one computes nothing.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from samplegen import atomic
from samplegen.errors import SamplegenError

REFINED_CHOICE = "refined_choice.json"


class SelectionError(SamplegenError):
    """The study's trials cannot be scored again: which trial or setting, and why."""


def latest_checkpoint(trial_dir: str | os.PathLike[str]) -> Path:
    """The newest checkpoint folder of a trial, by the epoch it holds (it holds the trial's
    best-epoch weights)."""
    import pyarrow.fs as pafs

    from samplegen.platform.checkpoint_folders import checkpoints_newest_first

    found = [str(p) for p in Path(trial_dir).glob("checkpoint_*") if p.is_dir()]
    if not found:
        raise SelectionError(f"{trial_dir}: the trial kept no checkpoint")
    return Path(checkpoints_newest_first(pafs.LocalFileSystem(), found)[0])


def refined_loss(
    model_name: str,
    params: dict[str, Any],
    weights: dict[str, Any],
    outer: Any,
    target: Any,
    *,
    refine_steps: int,
    device: str = "cpu",
    batch_size: int = 64,
) -> float:
    """Mean per-sample SSE of the combined model (`outer` + this inner model, its codes refined
    by `refine_steps` steps) reconstructing `target` (N, *input_shape): the study's units."""
    from samplegen.models.combined import CombinedModel
    from samplegen.platform.chain import with_refine_steps
    from samplegen.platform.evaluation.inference import run_model
    from samplegen.platform.training import split_config

    _, hp = split_config(params)
    input_shape = (math.prod(outer.latent_shape),)
    inner = with_refine_steps(model_name, hp, weights, input_shape, refine_steps)
    combined = CombinedModel.from_parts(outer, inner).to(device)
    out = run_model(combined, target, batch_size=batch_size, device=device, keep_recon=False)
    return float(out.losses.mean())


def choose_refined(
    study_dir: str | os.PathLike[str],
    rows: Sequence[dict[str, Any]],
    model_name: str,
    outer: Any,
    target: Any,
    *,
    refine_steps: int,
    top: int,
    device: str = "cpu",
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Score the study's `top` best trials with codes refined by `refine_steps` steps; returns
    the record kept in STUDY/refined_choice.json: each trial's study and refined losses, and the
    chosen trial (the lowest refined loss; ties go to the study's own order).

    `rows`: the study's results rows (`trial_id`, `status`, `best_val_loss`, `config.*`); each
    trial's weights are read from its folder, STUDY/trial_ID.
    `outer`: the frozen outer model; `target`: the validation samples (the study's units).
    """
    from samplegen.platform.study import ranked_rows, trial_params
    from samplegen.platform.training import load_best_weights

    if top < 1:
        raise SelectionError(f"rescore: the number of trials to score must be >= 1, got {top}")
    if refine_steps < 1:
        raise SelectionError(f"rescore: needs codes refined by >= 1 step, got {refine_steps}")
    chosen = ranked_rows(rows)[:top]
    if not chosen:
        raise SelectionError(f"{study_dir}: no trial produced a validation loss")
    path = Path(study_dir) / REFINED_CHOICE
    known = _reusable(path, refine_steps)
    scored: list[dict[str, Any]] = []
    for row in chosen:
        tid, study_loss = str(row["trial_id"]), float(row["best_val_loss"])
        hit = known.get(tid)
        if hit is not None and hit["study_loss"] == study_loss:
            loss = float(hit["refined_loss"])
        else:
            params = trial_params(row)
            weights = load_best_weights(latest_checkpoint(Path(study_dir) / f"trial_{tid}"))
            loss = refined_loss(
                model_name, params, weights, outer, target, refine_steps=refine_steps, device=device
            )
            echo(
                f"trial {tid}: validation loss {study_loss:.4g} (encoder mean) -> {loss:.4g} (refined)"
            )
        scored.append({"trial_id": tid, "study_loss": study_loss, "refined_loss": loss})
        _write(path, refine_steps, scored, None)
    best = min(scored, key=lambda s: s["refined_loss"])
    return _write(path, refine_steps, scored, best["trial_id"])


def _reusable(path: Path, refine_steps: int) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    record = json.loads(path.read_text())
    if record.get("refine_steps") != refine_steps:
        return {}
    return {s["trial_id"]: s for s in record.get("trials", [])}


def _write(
    path: Path, refine_steps: int, scored: list[dict[str, Any]], chosen: str | None
) -> dict[str, Any]:
    record = {
        "refine_steps": refine_steps,
        "trials": scored,
        "chosen": chosen,
        "how": "the study's best trials by encoder-mean validation loss, scored again on the "
        "same validation notes with refined codes; the lowest refined loss is chosen",
    }
    atomic.write_json_atomic(path, record, indent=2, sort_keys=True)
    return record
