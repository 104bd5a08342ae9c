"""Refit: the selected inner model trained again with the validation notes among its training notes.

Why: selection needs held-out instruments, but once the inner study has chosen a configuration and
its epoch, and validation has decided whether fine-tuning helps, the validation split's instruments
are more instruments to learn from. How far the VAE reaches instruments it never trained on grows
with the number it trained on (benchmarks/RESULTS.md, "How validation grows with the training
instruments", and "A refit on the validation instruments").

Measured on the quick preset's own model, the refit gained nothing: test 1.524% -> 1.522%, and
each held-out half of validation got a little worse when the other half was trained on
(RESULTS.md, "The refit in the quick pipeline"). The presets leave it off; `samplegen run
--refit` and `samplegen refit` run it.

What a refit repeats, and on what:
1. A dataset whose train split holds the training rows and the validation rows (relabelled
   `train`; `refit_dataset`). Its validation split still holds the validation rows, only so that
   training can log a loss: it is no longer held out, and chooses nothing. It has no test split.
2. Its encodings by the same frozen outer model, with the same EQ copies (of the validation notes
   too).
3. The selected trial's configuration, its seed and learning-rate schedule, stopped at the epoch
   the study chose, keeping the last epoch.
4. The combined export (the same code refinement), and the fine-tuning when the selected model's
   own fine-tuning was kept on validation, with the same settings and no second selection.

The outer model is not refitted: the inner study chose on validation encodings of an outer model
that never saw those notes. The test split is never read. The selected model stays beside the
refit one, with its held-out validation figures.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from samplegen.atomic import new_build_folder, replace_folder
from samplegen.errors import SamplegenError

REFIT_KEY = "refit"
REFIT_DATASET = "dataset-refit"
REFIT_ENCODED = "vae_study-encoded-refit"
REFIT_INNER = "inner-refit"


class RefitError(SamplegenError):
    """A refit that cannot be built from what it was given."""


def refit_dataset(
    dataset_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    echo: Callable[[str], None] | None = print,
) -> Path:
    """Write the refit dataset of `dataset_dir` to `out` (see the module's docstring); returns it.

    Reuses `out` when it was made from a dataset of the same fingerprint. Its own fingerprint is
    derived from the source's, and `refit_of` in its dataset.json names the source.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from samplegen.platform.datasets import require_dataset_info

    say = echo or (lambda _m: None)
    src = Path(dataset_dir).expanduser().absolute()
    out_path = Path(out).expanduser().absolute()
    info = require_dataset_info(src, label=f"refit: {src}")
    missing = [s for s in ("train", "validation") if s not in info.get("files", {})]
    if missing:
        raise RefitError(f"refit: {src} has no {' or '.join(missing)} split to refit on")
    fingerprint = hashlib.sha256(f"refit:{info['fingerprint']}".encode()).hexdigest()[:32]
    existing = require_dataset_info(out_path) if (out_path / "dataset.json").is_file() else None
    if existing is not None and existing.get("fingerprint") == fingerprint:
        say(f"refit dataset at {out_path} is up to date, reusing it")
        return out_path

    train = pq.read_table(src / info["files"]["train"])
    validation = pq.read_table(src / info["files"]["validation"])
    if len(validation) == 0:
        raise RefitError(f"refit: {src} has no validation rows to add to training")
    moved = validation.set_column(
        validation.schema.get_field_index("split"),
        "split",
        pc.cast(pa.array(["train"] * len(validation)), validation.schema.field("split").type),
    )
    merged = pa.concat_tables([train, moved.cast(train.schema)])
    build = new_build_folder(out_path)
    (build / "data").mkdir(parents=True)
    try:
        pq.write_table(merged, build / "data" / "train.parquet")
        pq.write_table(validation, build / "data" / "validation.parquet")
        doc = {
            **info,
            "fingerprint": fingerprint,
            "files": {"train": "data/train.parquet", "validation": "data/validation.parquet"},
            "rows_per_split": {"train": len(merged), "validation": len(validation)},
            "refit_of": {
                "dataset": str(src),
                "fingerprint": info["fingerprint"],
                "validation_rows_in_train": len(validation),
                "note": "validation rows are training rows here too; no split is held out",
            },
        }
        (build / "dataset.json").write_text(json.dumps(doc, indent=2) + "\n")
        replace_folder(build, out_path)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    say(
        f"refit dataset: {len(train)} training and {len(validation)} validation rows "
        f"trained on together, in {out_path}"
    )
    return out_path


def _check_refit(
    study: Path,
    outer: str | os.PathLike[str],
    dataset: str | os.PathLike[str],
    out: str | os.PathLike[str],
    refine_steps: int | None,
    eq: Any,
    best: dict[str, Any],
) -> None:
    """Refuse, before any dataset is built or model trained, a refit that could not finish or
    would not be the study's: an outer study, an out path that is no model folder, refinement
    the model does not do, and an outer model, dataset or EQ copies other than the study's."""
    from samplegen.models.artifact import check_model_target
    from samplegen.platform.chain import check_inner_model, refines
    from samplegen.platform.encoded import chain_content

    check_inner_model(str(best.get("model")), f"--study {study}: its selected model: ")
    if refine_steps is not None:
        if refine_steps < 0:
            raise RefitError(f"--refine-steps: must be >= 0, got {refine_steps}")
        if refine_steps and not refines(str(best["model"])):
            raise RefitError(f"--refine-steps: the inner model {best['model']!r} does not refine")
    check_model_target(Path(out))
    recorded = study / "study.json"
    if not recorded.is_file():
        return  # a copy of the study's summary without its record: nothing to compare with
    ran_on = json.loads(recorded.read_text()).get("data") or {}
    now = chain_content(outer, dataset, eq)
    if ran_on.get("fingerprint") and ran_on["fingerprint"] != now["fingerprint"]:
        raise RefitError(
            f"--study {study}: the study ran on encodings of another outer model, dataset or EQ "
            f"copies than --outer {outer}, --data {dataset} and the EQ settings given make "
            f"(its encodings: {ran_on.get('source')}); give the study's own"
        )


def refit_chain(
    study: str | os.PathLike[str],
    outer: str | os.PathLike[str],
    dataset: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    work: str | os.PathLike[str],
    refine_steps: int | None = None,
    eq: Any = None,
    finetune: Any = None,
    echo: Callable[[str], None] = print,
) -> Path:
    """Refit the inner study `study`'s selected model over `outer` on `dataset`'s train and
    validation rows; save the combined model to `out`.

    `work`: the folder for the refit dataset, its encodings and (in models/) the refitted inner
    model, each reused or resumed by a repeated call. `refine_steps` and `eq` as the chain had them
    (`chain.run_chain`). `finetune`: a finetune.FinetuneSettings to fine-tune the refit model with
    (no selection on validation: it is trained on), or None for no fine-tuning.
    Needs a running Ray (the encodings are a Ray Data job).
    """
    from samplegen.platform.chain import chain_study_data, export_combined
    from samplegen.platform.encoded import encode_dataset
    from samplegen.platform.finetune import finetune_combined
    from samplegen.platform.longrun import read_best_config, train_config

    config_path = Path(study) / "best_config.json"
    best = read_best_config(config_path)
    epochs, chosen = best.get("epochs"), best.get("best_epoch")
    if not (isinstance(epochs, int) and isinstance(chosen, int) and 1 <= chosen <= epochs):
        raise RefitError(
            f"{config_path}: needs the study's `epochs` and the chosen `best_epoch` "
            f"(1 <= best_epoch <= epochs), got {epochs!r} and {chosen!r}"
        )
    _check_refit(Path(study), outer, dataset, out, refine_steps, eq, best)
    work_dir = Path(work)
    data = refit_dataset(dataset, work_dir / REFIT_DATASET, echo=echo)
    encoded = encode_dataset(outer, data, work_dir / REFIT_ENCODED, eq=eq, echo=echo)
    study_data = chain_study_data(encoded, data)
    echo(
        f"[refit] training {best['model']} (trial {best.get('trial_id')}) on "
        f"{len(study_data.train)} rows for epochs 1-{chosen} of its {epochs}-epoch schedule"
    )
    inner = train_config(
        config_path,
        encoded,
        work_dir / "models" / REFIT_INNER,
        epochs=epochs,
        stop_at=chosen,
        keep="last",
        stall_window=0,
        overfit_limit=0,
        study_data=study_data,
        resume=True,
        # A checkpoint left by a refit of other data (the source dataset rebuilt, another outer
        # model) is no part of this one.
        restart_other=True,
        echo=echo,
    )
    source_info = json.loads((Path(data) / "dataset.json").read_text())["refit_of"]
    record = {
        "selected": {"study": str(study), "trial_id": best.get("trial_id")},
        "epochs": chosen,
        "schedule_epochs": epochs,
        "dataset": str(data),
        "train_rows": int(len(study_data.train)),
        "validation_rows_trained_on": source_info["validation_rows_in_train"],
        "finetuned": finetune is not None,
    }
    combined = export_combined(
        outer,
        inner,
        out,
        metrics={"refit_epochs": chosen},
        extra={REFIT_KEY: record},
        refine_steps=refine_steps,
        train_encodings=study_data.train[study_data.extra["train_notes"]],
    )
    if finetune is not None:
        finetune_combined(
            combined,
            data,
            combined,
            settings=finetune,
            select=False,
            dataset_fingerprint=source_info["fingerprint"],
            echo=echo,
        )
    return Path(combined)
