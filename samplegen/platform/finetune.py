"""End-to-end fine-tuning of a chained model: the inner model learns through the frozen outer model.

Why: the chained study trains the inner model on the outer encodings, where a squared error weighs
every encoded value alike. What counts is the error after the outer decoder, in the input domain.
A few epochs of the combined model's own loss (SSE in the outer model's input domain plus the inner
model's regulariser), with every outer weight frozen, fit the training notes markedly better
(benchmarks/RESULTS.md, "End-to-end fine-tuning and refinement": train 1.55 -> 1.34% RMS). The
outer model stays exactly the one the chain was built on, so its encodings and every other chain
over it stay valid.

Selection uses validation only: the fine-tuned model is kept when its validation reconstruction
loss, measured as the model encodes (code refinement included), is below the chained model's;
otherwise the chained model is written unchanged, and the record says why.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from samplegen.errors import SamplegenError
from samplegen.platform.encoded import EqAugment

# Marks a model folder written by `finetune_combined`, so a repeated call finds the work done.
FINETUNE_KEY = "finetune"


@dataclass(frozen=True)
class FinetuneSettings:
    """epochs: passes over the training split (cosine learning rate from `lr` to 0); batch_size;
    lr: Adam's rate (small: the chained weights are already a good start); seed; eq: EQ copies of
    each training note trained on beside it, the same copies the inner study was trained on (a
    fine-tuning without them fits the notes alone again and undoes what the copies taught)."""

    epochs: int = 20
    lr: float = 1e-4
    batch_size: int = 32
    seed: int = 0
    eq: EqAugment = field(default_factory=EqAugment)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise SamplegenError(f"--epochs: must be >= 1, got {self.epochs}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise SamplegenError(f"--lr: must be positive and finite, got {self.lr}")
        if self.batch_size < 1:
            raise SamplegenError(f"--batch-size: must be >= 1, got {self.batch_size}")


def finetune_combined(
    combined: str | os.PathLike[str],
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    settings: FinetuneSettings | None = None,
    device: str = "auto",
    checkpoint_every: int = 1,
    select: bool = True,
    dataset_fingerprint: str | None = None,
    echo: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Fine-tune the combined model in `combined` end to end on dataset `data`; save it to `out`.

    `select=False` keeps the fine-tuned weights without measuring validation (for a refit, whose
    validation rows are training rows: samplegen.platform.refit). `dataset_fingerprint`: recorded
    on the fine-tuned model instead of `data`'s (a refit dataset names the dataset it came from).

    `out` may be `combined` itself: it is replaced atomically at the end. A checkpoint beside `out`
    (`OUT.finetune-checkpoint/`) lets an interrupted call continue. A model whose fine-tuning
    record holds the same settings and dataset is not tuned again (the record comes back with
    `skipped: True`, and the model is copied to `out`); one fine-tuned otherwise is tuned again
    from its weights. Returns the record saved under the model's `extra.finetune`: the settings,
    the dataset, the validation losses before and after, and which was kept.
    """
    import shutil

    from samplegen.dsp.config import CodecConfig
    from samplegen.models.artifact import check_dataset, load_model, save_model
    from samplegen.models.code_distribution import fitted_extra
    from samplegen.models.combined import CombinedModel, TrainsOnEncodings
    from samplegen.platform.datasets import require_dataset_info
    from samplegen.platform.resources import trial_device
    from samplegen.platform.study import load_study_data
    from samplegen.platform.training import (
        NonFiniteLoss,
        OptimHparams,
        Trainer,
        load_checkpoint,
        save_checkpoint,
    )

    say = echo or (lambda _m: None)
    settings = settings or FinetuneSettings()
    loaded = load_model(combined)
    if not isinstance(loaded.model, CombinedModel):
        raise SamplegenError(
            f"{combined}: fine-tuning needs a combined model (outer + inner), "
            f"not {loaded.meta.name!r}"
        )
    settings.eq.check_model(combined, loaded.codec)
    from samplegen.models.artifact import check_model_target

    check_model_target(Path(out))
    # Checked even when there is nothing to do: a wrong --data is a mistake worth hearing about.
    info = require_dataset_info(data, label=f"--data {data}")
    check_dataset(loaded, _Codec(CodecConfig.from_dict(info["codec"])))
    data_fingerprint = str(info["fingerprint"])
    done = loaded.meta.extra.get(FINETUNE_KEY)
    if done and _same_request(done, settings, select, data_fingerprint):
        say(
            f"{combined}: already fine-tuned with these settings on this dataset "
            f"({done.get('kept')} weights kept); nothing to do"
        )
        if Path(out).absolute() != loaded.meta.directory.absolute():
            save_model(
                out,
                loaded.model,
                codec=loaded.codec,
                dataset_fingerprint=loaded.meta.dataset_fingerprint,
                metrics=loaded.meta.metrics,
                extra=loaded.meta.extra,
            )
        return {**done, "skipped": True}
    if done:
        say(f"{combined} was fine-tuned before ({done.get('kept')} weights kept); tuning it again")
    study_data = load_study_data(data)
    check_dataset(loaded, study_data)
    device = trial_device(1.0 if device != "cpu" else 0.0, device)
    model = _warmed_up(loaded.model).to(device)
    for p in model.outer.parameters():
        p.requires_grad_(False)
    optim = OptimHparams(batch_size=settings.batch_size, lr=settings.lr, lr_schedule="cosine")
    train_parts = _with_eq_copies(data, study_data.train, settings.eq, loaded.codec, say)
    on_encodings = TrainsOnEncodings(model)
    trainer = Trainer(
        on_encodings,
        optim,
        on_encodings.rows(train_parts, device),
        on_encodings.rows([study_data.validation], device),
        device=device,
        seed=settings.seed,
        total_epochs=settings.epochs,
    )
    del train_parts  # the rows hold them now
    # Validation as the model will be used: in eval mode, so codes are refined when the inner
    # model refines them. That costs more than an epoch, so it runs only before and after.
    out_path = Path(out)
    ckdir = out_path.parent / f"{out_path.name}.finetune-checkpoint"
    meta_want = {
        "settings": asdict(settings),
        "source": str(loaded.meta.directory),
        "selected_on_validation": select,
        "data_fingerprint": data_fingerprint,
    }
    start, history = 1, []
    if ckdir.exists():
        tensors, meta = load_checkpoint(ckdir)
        if meta.get("run") != meta_want:
            raise SamplegenError(
                f"{ckdir}: checkpoint of another fine-tuning run (remove it to start over)"
            )
        val_before = None if meta["val_before"] is None else float(meta["val_before"])
        trainer.load_state_tensors(tensors, meta["optimizer"])
        history, start = list(meta["history"]), int(meta["epoch"]) + 1
        say(f"resuming fine-tuning at epoch {start}")
    elif select:
        val_before = trainer.evaluate(trainer.val_x)[1]
        say(f"fine-tuning {combined}: validation loss before {val_before:.4g}")
    else:
        val_before = None
        say(f"fine-tuning {combined} (no selection: its validation rows are trained on)")

    def checkpoint(epoch: int) -> None:
        meta = {"run": meta_want, "epoch": epoch, "history": history, "val_before": val_before}
        save_checkpoint(ckdir, trainer, meta)

    failure = None
    try:
        for epoch in range(start, settings.epochs + 1):
            loss, _metrics = trainer.train_epoch(epoch)
            history.append(loss)
            say(f"fine-tune epoch {epoch}: train loss {loss:.4g}")
            if epoch % checkpoint_every == 0 and epoch < settings.epochs:
                checkpoint(epoch)
    except NonFiniteLoss as exc:
        failure = str(exc)
        say(f"fine-tuning stopped: {failure}")
    if val_before is None:
        val_after = None
        kept = "chained" if failure else "fine-tuned"
        say(f"keeping the {kept} weights")
    else:
        val_after = math.inf if failure else trainer.evaluate(trainer.val_x)[1]
        if not math.isfinite(val_after):
            val_after = math.inf
        kept = "fine-tuned" if val_after < val_before else "chained"
        say(f"validation loss {val_before:.4g} -> {val_after:.4g}: keeping the {kept} weights")
    if kept == "fine-tuned":  # `model` is a copy: loaded.model still holds the chained weights
        loaded.model.load_state_dict(model.cpu().state_dict())
    record = {
        **meta_want,
        "val_recon_before": val_before,
        "val_recon_after": val_after,
        "train_loss": history,
        "kept": kept,
        "failure": failure,
    }
    # Fine-tuning moves the codes, so random sounds get a distribution fitted to the kept weights.
    # The same notes as the chained study's export fits on: the real ones, not the variation
    # presets' or the mixes.
    notes = study_data.train[study_data.extra["train_notes"]]
    source = f"encoder means of {len(notes)} training notes"
    extra = {
        **loaded.meta.extra,
        FINETUNE_KEY: record,
        **fitted_extra(loaded.model, notes, source),
    }
    save_model(
        out_path,
        loaded.model,
        codec=loaded.codec,
        dataset_fingerprint=(dataset_fingerprint or study_data.fingerprint)
        if kept == "fine-tuned"
        else loaded.meta.dataset_fingerprint,
        metrics=loaded.meta.metrics,
        extra=extra,
    )
    shutil.rmtree(ckdir, ignore_errors=True)
    say(f"saved {out_path}")
    return record


@dataclass(frozen=True)
class _Codec:
    """What `check_dataset` reads of a dataset, from its dataset.json alone."""

    codec: Any


def _same_request(
    done: dict[str, Any], settings: FinetuneSettings, select: bool, data_fingerprint: str
) -> bool:
    """Whether a model's fine-tuning record is of this very fine-tuning (a repeated call, such as
    a pipeline resumed after the stage saved its model). Records from before the dataset was
    recorded match any dataset."""
    return (
        done.get("settings") == json.loads(json.dumps(asdict(settings)))
        and done.get("selected_on_validation", True) == select
        and done.get("data_fingerprint", data_fingerprint) == data_fingerprint
    )


def _with_eq_copies(
    data: str | os.PathLike[str],
    train_x: Any,
    eq: EqAugment,
    codec: Any,
    say: Callable[[str], None],
) -> list[Any]:
    """The training notes `train_x` of dataset `data` and, after them, their EQ copies (the notes
    alone when `eq` makes none)."""
    if not eq.variants:
        return [train_x]
    from samplegen.platform.datasets import load_dataset

    # The copies are drawn from each row's name, which the study data does not carry.
    split = load_dataset(data, splits=("train",)).splits["train"]
    _rows, copies = eq.copies(split.x, split.meta, codec)
    say(f"fine-tuning on {len(split.x)} notes and {len(copies)} EQ copies ({eq.db:g} dB)")
    return [train_x, copies]


def _warmed_up(model: Any) -> Any:
    """A copy of a combined model whose inner KL weight is already at its full value.

    The trainer counts epochs from 1, and a VAE's KL warm-up would start again from 0: the first
    fine-tuning epochs would then weigh the KL term almost not at all, and let the codes drift off
    the prior that sampling and interpolation rely on. The saved model keeps its own
    hyper-parameters.
    """
    from dataclasses import replace

    from samplegen.models.combined import CombinedModel

    inner_hp = dict(model.hparams.inner_hparams)
    if "warmup" in inner_hp:
        inner_hp["warmup"] = "none"
    copy = CombinedModel(replace(model.hparams, inner_hparams=inner_hp), model.input_shape)
    copy.load_state_dict(model.state_dict())
    return copy
