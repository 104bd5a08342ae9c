"""`evaluate_model`: every quality figure of a trained model on one split of a prepared dataset.

Runs in the calling process (torch, no Ray): a split is at most a few hundred samples, and one
process keeps the figures deterministic. Writes metrics.json and summary.md into the output folder.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from samplegen.atomic import write_text_atomic
from samplegen.errors import SamplegenError
from samplegen.platform.evaluation.inference import SplitOutputs, is_combined, joined, run_model
from samplegen.platform.evaluation.jsonsafe import NullReasons, sanitize
from samplegen.platform.evaluation.kept import KeptBatches, inputs_key
from samplegen.platform.evaluation.reference import combined_reference
from samplegen.platform.evaluation.sections import (
    group_interval,
    inner_latent_stats,
    latent_section,
    loss_section,
    overfit_section,
    per_category,
    worst_samples,
)
from samplegen.platform.evaluation.spectral import audio_section, magnitude_section
from samplegen.platform.evaluation.summary import render_summary
from samplegen.platform.progress_parts import progress_folder
from samplegen.platform.stages import write_json_atomic

SCHEMA_VERSION = 1
EVALUATED_KINDS = ("outer_stft", "outer_wave", "combined")


class EvaluationError(SamplegenError):
    """A model, dataset or setting that evaluation cannot use; the message says which and why."""


@dataclass(frozen=True)
class EvaluationSettings:
    """How to evaluate: the split, Griffin-Lim iterations, seed, device, batch size, worst-n."""

    split: str = "test"
    griffin_lim_iters: int = 64
    seed: int = 0
    device: str = "cpu"
    batch_size: int = 16
    worst: int = 10

    def __post_init__(self) -> None:
        if self.griffin_lim_iters < 0:
            raise EvaluationError(f"griffin_lim_iters: must be >= 0, got {self.griffin_lim_iters}")
        if self.batch_size < 1:
            raise EvaluationError(f"batch_size: must be >= 1, got {self.batch_size}")
        if self.worst < 1:
            raise EvaluationError(f"worst: must be >= 1, got {self.worst}")


def default_out_dir(model_dir: str | os.PathLike[str], split: str) -> Path:
    """Where results go when no folder is given: MODEL/evaluation-<split>/."""
    return Path(model_dir) / f"evaluation-{split}"


def _names_and_categories(meta: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    names = [str(row.get("name") or f"sample {i}") for i, row in enumerate(meta)]
    cats = [str(row.get("category") or "No Category") for row in meta]
    return names, cats


def _groups(meta: list[dict[str, Any]], names: list[str]) -> list[str]:
    """Each sample's split group (its instrument); a sample without one is its own."""
    return [
        str(row.get("group") or f"sample:{name}") for row, name in zip(meta, names, strict=True)
    ]


def _check_paths(model_dir: Path, dataset_dir: Path) -> None:
    if not model_dir.is_dir():
        raise EvaluationError(f"{model_dir}: no such model directory")
    if not (model_dir / "config.json").is_file():
        raise EvaluationError(f"{model_dir}: not a model directory (no config.json)")
    if not dataset_dir.is_dir():
        raise EvaluationError(f"{dataset_dir}: no such dataset directory")


def _check_device(device: str) -> None:
    from samplegen.models.device import torch_device

    torch_device(device)


def _load(model_dir: Path, dataset_dir: Path, settings: EvaluationSettings) -> tuple[Any, Any]:
    from samplegen.models.artifact import check_dataset, load_model
    from samplegen.platform.datasets import load_dataset

    loaded = load_model(model_dir, device=settings.device)
    kind = getattr(loaded.model, "kind", "")
    if kind not in EVALUATED_KINDS:
        raise EvaluationError(
            f"{model_dir}: a {kind or 'unknown'} model cannot be evaluated on audio data "
            f"(evaluate an outer or a combined model)"
        )
    # Only the evaluated split and train (for overfit and the PCA reference) are read, and
    # validation for a refit model, which trained on it (its PCA reference fits on it too).
    splits = {settings.split, "train"} | ({"validation"} if _refit(loaded) else set())
    dataset = load_dataset(dataset_dir, splits=sorted(splits))
    check_dataset(loaded, dataset)
    return loaded, dataset


def _refit(loaded: Any) -> bool:
    """A model refitted with the validation notes among its training notes (platform.refit)."""
    return bool((loaded.meta.extra or {}).get("refit"))


def _real_rows(dataset: Any, name: str) -> tuple[np.ndarray, list[dict[str, Any]], int]:
    """A split's samples without augmentation mixes (x, meta rows, number of mixes left out).

    Mixes are synthetic training aids; figures describe real notes only.
    """
    split = dataset.splits[name]
    meta = list(split.meta)
    keep = [i for i, row in enumerate(meta) if not row.get("augmented")]
    x = np.asarray(split.x)
    if len(keep) != len(meta):
        x = x[np.asarray(keep, dtype=np.int64)]
    return np.asarray(x, dtype=np.float32), [meta[i] for i in keep], len(meta) - len(keep)


def _model_info(model_dir: Path, loaded: Any, dataset: Any) -> dict[str, Any]:
    model = loaded.model
    trained_on = getattr(loaded.meta, "dataset_fingerprint", None)
    info = {
        "dir": str(model_dir),
        "name": model.name,
        "kind": model.kind,
        "input_shape": list(model.input_shape),
        "latent_shape": list(model.latent_shape),
        "latent_dims": int(math.prod(model.latent_shape)),
        "num_params": int(model.num_params()),
        "compression": float(model.compression),
        "dataset_fingerprint": trained_on,
        # False: the model was trained on another dataset (e.g. a generalisation test).
        "trained_on_this_dataset": None
        if trained_on is None
        else trained_on == dataset.fingerprint,
    }
    if is_combined(model):
        info["outer"] = {"name": model.outer.name, "latent_shape": list(model.outer.latent_shape)}
        info["inner"] = {"name": model.inner.name, "latent_shape": list(model.inner.latent_shape)}
    return info


def _latent(
    model: Any, out: SplitOutputs, settings: EvaluationSettings, nulls: NullReasons
) -> dict[str, Any]:
    if is_combined(model) and out.outer_latent is not None and out.outer_latent.shape[0] > 0:
        stats = inner_latent_stats(model.inner, out.outer_latent, settings.device)
        return latent_section(out.latent, model.latent_shape, nulls, stats=stats)
    return latent_section(out.latent, model.latent_shape, nulls)


def _counter(
    total: int, split: str, say: Callable[[str], None] | None
) -> Callable[[int], None] | None:
    """What counts a split's evaluated notes: a code refined through both decoders takes about a
    quarter of a second on two CPU cores, so the training split alone can take minutes."""
    from samplegen.platform.progress_count import Counter

    return None if say is None else Counter(total, f"{split} split: evaluated", say).add


def compute_metrics(
    model_dir: Path,
    dataset_dir: Path,
    settings: EvaluationSettings,
    kept: KeptBatches | None = None,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Every section of metrics.json for one model and split (not yet sanitised). `kept`: where
    the model's outputs are kept a batch at a time, and found when an evaluation was stopped.
    `say`: told now and then how far a long evaluation has come (progress_count.Counter)."""
    _check_paths(model_dir, dataset_dir)
    _check_device(settings.device)
    loaded, dataset = _load(model_dir, dataset_dir, settings)
    model, codec = loaded.model, loaded.codec
    x, meta, mixes = _real_rows(dataset, settings.split)
    n = int(x.shape[0])
    if n == 0:
        raise EvaluationError(f"{dataset_dir}: split {settings.split!r} has no samples")
    names, cats = _names_and_categories(meta)
    vps = int(math.prod(x.shape[1:]))
    nulls = NullReasons()
    batch_size, device = settings.batch_size, settings.device
    out = run_model(
        model,
        x,
        batch_size=batch_size,
        device=device,
        kept=None if kept is None else (kept, settings.split),
        done=_counter(n, settings.split, say),
    )
    assert out.recon is not None

    def outputs_of(split: str) -> tuple[np.ndarray, SplitOutputs]:
        """Another split's real rows and outputs; the evaluated split's are reused."""
        if split == settings.split:
            return x, out
        rows, _, _ = _real_rows(dataset, split)
        return rows, run_model(
            model,
            rows,
            batch_size=batch_size,
            device=device,
            keep_recon=False,
            kept=None if kept is None else (kept, split),
            done=_counter(rows.shape[0], split, say),
        )

    train_x = None
    train_out: SplitOutputs | None = None
    if "train" in dataset.splits:
        train_x, train_out = outputs_of("train")
    loss = loss_section(out.losses, vps)
    loss["rms_percent_interval"] = group_interval(
        out.losses, _groups(meta, names), vps, seed=settings.seed
    )
    if loss["rms_percent_interval"] is None:
        nulls.add("loss.rms_percent_interval", "needs at least 2 groups (instruments) in the split")
    train_mean = float(train_out.losses.mean()) if train_out and train_out.losses.size else None
    metrics: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "model": _model_info(model_dir, loaded, dataset),
        "dataset": {
            "dir": str(dataset_dir),
            "fingerprint": dataset.fingerprint,
            "split": settings.split,
            "count": n,
            "augmentation_mixes_left_out": mixes,
            "train_count": int(train_x.shape[0]) if train_x is not None else 0,
            "codec": codec.to_dict(),
        },
        "settings": asdict(settings),
        "loss": loss,
        "spectral": {
            "magnitude": magnitude_section(
                out.recon, x, codec, batch_size=settings.batch_size, device=settings.device
            ),
            "audio": audio_section(
                out.recon,
                x,
                codec,
                griffin_lim_iters=settings.griffin_lim_iters,
                seed=settings.seed,
                batch_size=settings.batch_size,
                device=settings.device,
                nulls=nulls,
            ),
        },
        "per_category": per_category(out.losses, cats, vps),
        "worst": worst_samples(out.losses, names, cats, vps, n=settings.worst),
        "latent": _latent(model, out, settings, nulls),
        "overfit": overfit_section(loss["mean"], train_mean, settings.split, nulls),
    }
    if metrics["model"]["dataset_fingerprint"] is None:
        for key in ("dataset_fingerprint", "trained_on_this_dataset"):
            nulls.add(f"model.{key}", "the model records no training dataset fingerprint")
    if is_combined(model):
        if train_out is None or train_x is None or train_out.losses.size < 2:
            metrics["pca_reference"] = None
            nulls.add("pca_reference", "needs a train split with at least 2 samples")
        else:
            fit_x, fit_out, fitted_on = train_x, train_out, ["train"]
            if _refit(loaded) and "validation" in dataset.splits:
                # A refit model trained on validation too: so does its linear reference.
                val_x, val_out = outputs_of("validation")
                fit_x, fit_out = np.concatenate([train_x, val_x]), joined(train_out, val_out)
                fitted_on = ["train", "validation"]
            metrics["pca_reference"] = combined_reference(
                model,
                fit_x,
                x,
                fit_out,
                out,
                fitted_on=fitted_on,
                batch_size=batch_size,
                device=device,
            )
    metrics["null_reasons"] = nulls
    return metrics


def evaluate_model(
    model_dir: str | os.PathLike[str],
    dataset_dir: str | os.PathLike[str],
    split: str = "test",
    out: str | os.PathLike[str] | None = None,
    *,
    griffin_lim_iters: int = 64,
    device: str = "cpu",
    batch_size: int = 16,
    seed: int = 0,
    worst: int = 10,
    reuse: bool = False,
    echo: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Evaluate a model directory on one split of a prepared dataset; returns metrics.json's dict.

    Writes ``metrics.json`` (every value finite or null, with the reason under ``null_reasons``)
    and ``summary.md`` into `out` (default MODEL/evaluation-<split>/). Raises EvaluationError
    (a SamplegenError) for a missing model or dataset, an unknown split, or a model that is not an
    outer or combined model; the models package refuses a dataset encoded with other codec
    settings. Deterministic: reconstructions use posterior means, Griffin-Lim is seeded with
    ``seed + sample index``. `reuse`: return the metrics.json already in `out` when it was made
    from the same model weights, dataset and settings (`inputs` in metrics.json), instead of
    evaluating again (saying so through `echo`); off by default, since a change to the evaluation
    code itself would go unnoticed.
    """
    settings = EvaluationSettings(
        split=split,
        griffin_lim_iters=griffin_lim_iters,
        seed=seed,
        device=str(device),
        batch_size=batch_size,
        worst=worst,
    )
    model_path, data_path = Path(model_dir), Path(dataset_dir)
    target = Path(out) if out is not None else default_out_dir(model_path, split)
    inputs = None
    # A model or dataset that cannot be read: the evaluation itself says what is wrong.
    with contextlib.suppress(SamplegenError):
        inputs = evaluation_inputs(model_path, data_path, settings)
    if reuse:
        earlier = None if inputs is None else _earlier_metrics(target, inputs)
        if earlier is not None:
            if echo is not None:
                echo(f"{target} holds this evaluation already (same model, dataset, settings)")
            return earlier
    kept = None if inputs is None else KeptBatches(progress_folder(target), inputs_key(inputs))
    if kept is not None and (why := kept.unwritable()) is not None:
        # Keeping batches only spares a rerun work: the evaluation goes on without it.
        if echo is not None:
            echo(
                f"note: {kept.folder}: cannot keep this evaluation's batches there ({why}), so a "
                "stopped evaluation would start again"
            )
        kept = None
    if kept is not None and (count := kept.count()) and echo is not None:
        echo(
            f"going on from an evaluation that was stopped: {count} batches of the model's "
            f"outputs kept in {kept.folder}"
        )
    try:
        with torch.no_grad():
            raw = compute_metrics(model_path, data_path, settings, kept, echo)
    except BaseException:
        if kept is not None:
            kept.remove_if_empty()
        raise
    nulls: NullReasons = raw.pop("null_reasons")
    metrics = sanitize(raw, nulls)
    metrics["null_reasons"] = nulls.as_dict()
    metrics["inputs"] = inputs or evaluation_inputs(model_path, data_path, settings)
    metrics["files"] = {}
    target.mkdir(parents=True, exist_ok=True)
    metrics["files"] = {
        "metrics": str(target / "metrics.json"),
        "summary": str(target / "summary.md"),
    }
    write_text_atomic(target / "summary.md", render_summary(metrics) + "\n")
    write_json_atomic(target / "metrics.json", metrics)
    if kept is not None:
        kept.remove()
    return metrics


def evaluation_inputs(
    model_dir: Path, dataset_dir: Path, settings: EvaluationSettings
) -> dict[str, Any]:
    """What an evaluation's figures follow from: the model's files, the dataset's content and the
    settings (recorded in metrics.json as `inputs`)."""
    import hashlib

    from samplegen.models.artifact import model_files
    from samplegen.platform.datasets import require_dataset_info

    digest = hashlib.sha256()
    for name, data in sorted(model_files(model_dir).items()):
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return {
        "schema": SCHEMA_VERSION,
        "model_sha256": digest.hexdigest(),
        "dataset_fingerprint": require_dataset_info(dataset_dir)["fingerprint"],
        "settings": asdict(settings),
    }


def _earlier_metrics(out: Path, inputs: dict[str, Any]) -> dict[str, Any] | None:
    """metrics.json in `out` when it was made from `inputs` (and summary.md is there too)."""
    import json

    try:
        metrics = json.loads((out / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(metrics, dict) or metrics.get("inputs") != inputs:
        return None
    return metrics if (out / "summary.md").is_file() else None
