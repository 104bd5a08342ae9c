"""The chained study: a study of inner models over the encodings of a frozen outer auto-encoder.

1. The outer model (a model directory, or a study folder whose best model is used) encodes every
   sample of every split of its dataset once (`encoded.encode_dataset`, Ray Data).
2. An ordinary study (`study.run_study`) trains inner models (vae, bounded_ae, vq_vae) on the
   encodings only; each trial also measures the end-to-end validation loss, through the frozen
   outer decoder and in the outer representation's units, and that is the objective the searchers,
   schedulers and the selection of the best trial see.
3. The best inner model and the outer model are exported together as one combined model directory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from samplegen.errors import SamplegenError

if TYPE_CHECKING:
    import numpy as np

    from samplegen.platform.encoded import EqAugment

# Runs a piece of work, `work(echo)`, where the caller says, and returns its result.
Runner = Callable[[Callable[[Callable[[str], None]], Any]], Any]

INNER_MODELS = ("vae", "bounded_ae", "vq_vae")
BEST_COMBINED = "best_combined"
ENCODED_DIR = "encoded"


class ChainError(SamplegenError):
    """The chain cannot start: which outer model, dataset or setting, and why."""


@dataclass
class ChainResult:
    """What a chained study produced."""

    study: Any  # StudyResult
    encoded: Path
    outer_model: Path
    combined_model: str | None  # a folder, or a URI for a study on one


def resolve_outer(outer: str | os.PathLike[str]) -> tuple[str, str | None]:
    """Where the outer model directory is (a folder or a storage URI) and, when `outer` is a
    study, the dataset it ran on."""
    import pyarrow.fs as pafs

    from samplegen.platform.downloads import is_uri, join_location, location_fs

    fs, root = location_fs(outer)
    base = str(outer) if is_uri(outer) else str(Path(outer).expanduser())

    def is_file(rel: str) -> bool:
        return bool(fs.get_file_info(f"{root}/{rel}").type == pafs.FileType.File)

    if is_file("config.json"):
        return base, None
    if is_file("study.json"):
        if not is_file("best_model/config.json"):
            raise ChainError(
                f"{base}: this study has no exported best model (best_model/); "
                "did it finish? resume it first"
            )
        with fs.open_input_stream(f"{root}/study.json") as fh:
            study = json.loads(fh.read().decode())
        source = study.get("data", {}).get("source") or None
        return join_location(base, "best_model"), source
    raise ChainError(
        f"{base}: neither a model directory (config.json) nor a study folder (study.json)"
    )


def chain_study_data(
    encoded_dir: str | os.PathLike[str], dataset_dir: str | os.PathLike[str]
) -> Any:
    """StudyData over the encodings, carrying what trials need for the end-to-end loss."""
    import numpy as np

    from samplegen.models.artifact import model_files, read_meta
    from samplegen.platform.datasets import load_dataset
    from samplegen.platform.encoded import load_encoded
    from samplegen.platform.study import StudyData

    enc = load_encoded(encoded_dir, splits=("train", "validation"))
    train, val = enc.splits["train"], enc.splits["validation"]
    if len(train.z) == 0 or len(val.z) == 0:
        raise ChainError(
            f"{encoded_dir}: the encodings need train and validation samples "
            f"(have {len(train.z)} train, {len(val.z)} validation)"
        )
    target = load_dataset(dataset_dir, splits=("validation",)).splits["validation"]
    if [m["name"] for m in target.meta] != [m["name"] for m in val.meta]:
        raise ChainError(
            f"{encoded_dir}: the encodings no longer match the dataset {dataset_dir}; re-encode"
        )
    _, codec = read_meta(enc.info["outer_model"])
    # Read here, on the driver: a trial on another node may not see the folder.
    outer_files = model_files(enc.info["outer_model"])
    return StudyData(
        train=np.ascontiguousarray(train.z),
        validation=np.ascontiguousarray(val.z),
        codec=codec,
        fingerprint=enc.info["fingerprint"],
        source=str(encoded_dir),
        extra={
            "outer_model": enc.info["outer_model"],
            "outer_files": outer_files,
            "validation_target": target.x,
            "dataset": str(dataset_dir),
            "dataset_fingerprint": enc.info["dataset_fingerprint"],
            "code_frames": enc.latent_shape[-1] if len(enc.latent_shape) == 2 else None,
            # Training rows that are real notes (no mixes, no EQ copies): the codes stored for
            # random sounds come from these alone.
            "train_notes": np.array([not m.get("augmented") for m in train.meta]),
        },
    )


def check_inner_fits(
    config: Any, outer_code: tuple[int, ...], echo: Callable[[str], None] = print
) -> None:
    """Refuse an inner study (`config`, a StudyConfig) whose every model would exceed its
    `max_params` over an outer code of shape `outer_code`, before anything is encoded or trained
    (its trials would all be rejected, one by one); say so when only part of its space would.

    The space is probed at its corners (`SearchSpace.corners`), where a model's size is smallest
    and largest when it grows or shrinks with each setting.
    """
    import math

    from samplegen.models.registry import count_params
    from samplegen.platform.spaces import bind_code_frames, resolve_space
    from samplegen.platform.training import split_config

    if config.max_params is None:
        return
    frames = outer_code[-1] if len(outer_code) == 2 else None
    space = bind_code_frames(resolve_space(config.model, config.space), frames)
    width = math.prod(outer_code)
    sizes = []
    for point in space.corners(seed=config.seed):
        try:
            _, hparams = split_config(point)
            sizes.append((count_params(config.model, hparams, (width,)), point))
        except SamplegenError:  # a corner the model refuses says nothing about size
            continue
    over = sorted((s for s in sizes if s[0] > config.max_params), key=lambda s: s[0])
    if not over:
        return
    varying = {p.name for p in space.searched}
    shown = ", ".join(f"{k}={v}" for k, v in over[0][1].items() if k in varying)
    where = f"an outer code of shape {list(outer_code)} ({width} values)"
    if len(over) == len(sizes):
        raise ChainError(
            f"{config.name}: every corner of its space (the ends of each range, every choice) "
            f"exceeds max_params={config.max_params:,} "
            f"over {where}: the smallest of its corners has {over[0][0]:,} parameters "
            f"({shown or 'its only configuration'}); search smaller models with a space of your "
            "own, or raise the limit (--max-params)"
        )
    echo(
        f"[{config.name}] note: {len(over)} of the {len(sizes)} corners of its space exceed "
        f"max_params={config.max_params:,} over {where} (the smallest of them {over[0][0]:,} "
        f"parameters: {shown}); trials drawn there will be rejected"
    )


def refines(name: str) -> bool:
    """Whether inner model `name` can refine its codes (it has a `refine_steps` setting)."""
    import dataclasses

    from samplegen.models.registry import hparams_class

    return "refine_steps" in {f.name for f in dataclasses.fields(hparams_class(name))}


def with_refine_steps(
    name: str,
    hparams: dict[str, Any],
    weights: dict[str, Any],
    input_shape: tuple[int, ...],
    refine_steps: int,
) -> Any:
    """Inner model `name` with `weights`, in eval mode, its codes refined by `refine_steps` steps
    when it encodes. Only the way codes are found changes, never a weight."""
    from samplegen.models.registry import build_model

    if not refines(name):
        raise ChainError(f"--refine-steps: the inner model {name!r} does not refine its codes")
    model = build_model(name, {**hparams, "refine_steps": int(refine_steps)}, input_shape)
    model.load_state_dict(weights)
    return model.eval()


def export_combined(
    outer_dir: str | os.PathLike[str],
    inner_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    refine_steps: int | None = None,
    train_encodings: np.ndarray | None = None,
) -> Path:
    """Save the outer and inner models as one combined model directory.

    `refine_steps` (VAE inner models only) sets how many optimisation steps refine each code when
    the combined model encodes (see samplegen.models.vae); None keeps the inner model's setting.
    The study never refines, so this changes no weight, only how codes are found afterwards.
    `train_encodings`: the training notes' flat outer encodings (N, D); the Gaussian mixture of the
    inner model's codes for them is stored with the model, and random sounds are drawn from it
    (samplegen.models.code_distribution).
    """
    from samplegen.models.artifact import load_model, save_model
    from samplegen.models.base import InnerModel
    from samplegen.models.code_distribution import fitted_extra
    from samplegen.models.combined import CombinedModel
    from samplegen.models.registry import hparams_dict

    outer = load_model(outer_dir)
    inner = load_model(inner_dir)
    inner_model = inner.model
    if refine_steps is not None:
        inner_model = with_refine_steps(
            inner.meta.name,
            hparams_dict(inner_model.hparams),
            inner_model.state_dict(),
            inner_model.input_shape,
            refine_steps,
        )
    if not isinstance(inner_model, InnerModel):
        raise ChainError(f"{inner_dir}: model {inner.meta.name!r} is not an inner model")
    combined = CombinedModel.from_parts(outer.model, inner_model)
    extra = {"outer_model": str(outer_dir), "inner_model": str(inner_dir), **(extra or {})}
    if train_encodings is not None:
        source = f"encoder means of {len(train_encodings)} training notes"
        extra.update(fitted_extra(inner_model, train_encodings, source))
    return save_model(
        out,
        combined,
        codec=outer.codec,
        dataset_fingerprint=outer.meta.dataset_fingerprint,
        metrics=metrics or {},
        extra=extra,
    )


def run_chain(
    config: Any,
    outer: str | os.PathLike[str],
    *,
    data: str | None = None,
    encoded: str | None = None,
    combined_out: str | os.PathLike[str] | None = None,
    resume: bool = False,
    refine_steps: int | None = None,
    rescore: int = 1,
    eq: EqAugment | None = None,
    echo: Callable[[str], None] = print,
    score_in: Runner | None = None,
) -> ChainResult:
    """Encode once, run the inner study (`config`, a StudyConfig), export the best combined model.

    `outer`: a model directory or an outer study folder. `data`: the dataset (default: the one the
    outer study ran on). `encoded`: where the encodings go (default: next to the study).
    `combined_out`: where the best combined model goes (default: STUDY/best_combined).
    `refine_steps`: code refinement of the exported combined model (see `export_combined`).
    `rescore`: when above 1, the study's best `rescore` trials are scored again with their codes
    refined by `refine_steps` steps, as the combined model will use them, and the lowest refined
    validation loss is exported (samplegen.platform.selection); the study's best_config.json and
    best_model then name that trial. 1 keeps the study's own choice.
    `eq`: an `encoded.EqAugment`, EQ copies of the training notes added to the inner study's
    training rows (never to validation, nor to the codes stored for random sounds).
    `score_in`: runs the rescoring's work, `work(echo)`, somewhere else (the main job's stage
    tasks: on a node with a GPU) and returns its result; by default here.
    Ray must be initialised.
    """
    from samplegen.platform.downloads import local_copy
    from samplegen.platform.encoded import check_encodings_folder, encode_dataset
    from samplegen.platform.schedulers import check_asha_grace
    from samplegen.platform.spaces import resolve_space
    from samplegen.platform.study import StudyFiles, check_started, run_study

    check_inner_model(config.model, "--model: ")
    check_rescore(rescore, config.model, refine_steps)
    if not resume:
        # Before the encoding pass, which the study would otherwise refuse only afterwards.
        check_asha_grace(
            config.scheduler,
            resolve_space(config.model, config.space),
            asha_grace=config.asha_grace,
            max_epochs=config.epochs,
        )
    outer_at, study_data = resolve_outer(outer)
    dataset = data or study_data
    if not dataset:
        raise ChainError(f"{outer}: a model directory needs --data DATASET (the dataset to encode)")
    if not data:
        from samplegen.platform.datasets import read_dataset_info

        if read_dataset_info(dataset) is None:
            raise ChainError(
                f"{outer}: the dataset its study ran on, {dataset} (its study.json), is not a "
                "samplegen dataset from here; pass --data DATASET"
            )
    files = StudyFiles(config.storage, config.name)
    check_started(files, config.name, resume)
    enc_dir = encodings_dir(files, encoded)
    check_encodings_folder(enc_dir.absolute())
    # Local copies of what a study on a URI holds (the outer model, trial checkpoints).
    downloads = enc_dir.with_name(f"{enc_dir.name}-downloads")
    outer_dir = local_copy(outer_at, downloads / "outer")
    if resume:
        _check_resumable(files, outer_dir, dataset, eq)
    outer_code = tuple(json.loads((outer_dir / "config.json").read_text())["latent_shape"])
    check_inner_fits(config, outer_code, echo)
    enc_path = encode_dataset(outer_dir, dataset, enc_dir, eq=eq, echo=echo)
    study_data = chain_study_data(enc_path, dataset)
    result = run_study(config, study_data, resume=resume, echo=echo)
    combined: str | None = None
    if result.best_model and not result.interrupted:
        choice = None
        if rescore > 1:
            choice = _choose_refined(
                config,
                files,
                result,
                outer_dir,
                study_data,
                rescore,
                int(refine_steps or 0),
                echo,
                downloads / "study",
                score_in,
            )
        best = result.best or {}
        upload = combined_out is None and not files.local
        target = combined_out or (
            downloads / BEST_COMBINED if upload else Path(files.root) / BEST_COMBINED
        )
        exported = export_combined(
            outer_dir,
            local_copy(result.best_model, downloads / "best_model"),
            target,
            metrics={
                "end_to_end_val_loss": best.get("best_val_loss"),
                "best_epoch": best.get("best_epoch"),
            },
            extra={
                "study": config.name,
                "trial_id": best.get("trial_id"),
                **({"refined_choice": choice} if choice else {}),
            },
            refine_steps=refine_steps,
            train_encodings=study_data.train[study_data.extra["train_notes"]],
        )
        combined = str(exported)
        if upload:
            files.upload_dir(exported, BEST_COMBINED)
            combined = files.location(BEST_COMBINED)
        echo(f"[{config.name}] best combined model: {combined}")
    return ChainResult(result, enc_path, outer_dir, combined)


def _check_resumable(files: Any, outer_dir: Path, dataset: str, eq: EqAugment | None) -> None:
    """Before the encoding pass, which would overwrite the study's own encodings: a study to
    resume must exist, and must have run on the encodings these settings make."""
    import json

    from samplegen.platform.encoded import encodings_fingerprint
    from samplegen.platform.study import STUDY_JSON, TUNER_STATE, StudyError

    if not files.exists(TUNER_STATE):
        raise StudyError(f"{files.uri}: no study to resume there (run it without --resume first)")
    if not files.exists(STUDY_JSON):
        return
    recorded = (json.loads(files.read_bytes(STUDY_JSON)).get("data") or {}).get("fingerprint")
    now = encodings_fingerprint(outer_dir, dataset, eq)
    if recorded and recorded != now:
        raise StudyError(
            f"{files.uri}: cannot resume on other data: the study ran on the encodings of another "
            f"outer model, dataset or EQ copies (fingerprint {recorded}; these would be {now}); "
            "resume with the study's --outer, --data and --eq-* settings, or start a new --name"
        )


def encodings_dir(files: Any, encoded: str | os.PathLike[str] | None) -> Path:
    """The local folder of a chained study's encodings: `encoded`, else beside the study
    (`STORAGE/NAME-encoded`); a study on a URI must be given one (`files`: its StudyFiles)."""
    if encoded:
        return Path(encoded)
    if not files.local:
        raise ChainError(
            f"--storage {files.storage_path}: the encodings are kept in a local folder; "
            "pass --encoded DIR"
        )
    return Path(files.root).with_name(f"{Path(files.root).name}-{ENCODED_DIR}")


def check_inner_model(model: str, where: str) -> None:
    """ChainError unless `model` is one the chained study can train on outer encodings; `where`
    starts the message (the setting that named it)."""
    if model not in INNER_MODELS:
        raise ChainError(f"{where}{model!r} is not an inner model ({', '.join(INNER_MODELS)})")


def check_rescore(rescore: int, model: str, refine_steps: int | None) -> None:
    """Refuse a `rescore` below 1, or above 1 (a re-scoring of trials) that cannot refine codes."""
    if rescore < 1:
        raise ChainError(f"--rescore: must be >= 1, got {rescore}")
    if rescore == 1:
        return
    if not refines(model):
        raise ChainError(f"--rescore: the inner model {model!r} does not refine its codes")
    if not refine_steps:
        raise ChainError(
            "--rescore: scoring trials with refined codes needs --refine-steps N (N >= 1); "
            "without refinement the study's own ranking is already the final one"
        )


def _choose_refined(
    config: Any,
    files: Any,
    result: Any,
    outer_dir: Path,
    study_data: Any,
    top: int,
    refine_steps: int,
    echo: Callable[[str], None],
    mirror: Path,
    score_in: Runner | None = None,
) -> dict[str, Any]:
    """Score the study's best trials with refined codes; point the study's best model and best
    configuration, and `result.best` / `result.best_model`, at the winner. A study on a URI is
    read from copies of those trials' checkpoints under `mirror`. `score_in`: see run_chain."""
    from samplegen.models.artifact import load_model
    from samplegen.platform.downloads import copy_latest_checkpoint
    from samplegen.platform.resources import trial_device
    from samplegen.platform.selection import REFINED_CHOICE, choose_refined, latest_checkpoint
    from samplegen.platform.study import BEST_CONFIG, best_config, save_trial_model
    from samplegen.platform.training import load_best_weights

    study_dir = Path(files.root)
    if not files.local:
        from samplegen.platform.study import ranked_rows

        study_dir = mirror
        for row in ranked_rows(result.rows)[:top]:
            copy_latest_checkpoint(files.uri, str(row["trial_id"]), mirror)
    echo(
        f"[{config.name}] scoring the best {top} trials again with codes refined by "
        f"{refine_steps} steps, as the combined model encodes"
    )
    rows, model, target = result.rows, config.model, study_data.extra["validation_target"]

    def score(say: Callable[[str], None]) -> dict[str, Any]:
        return choose_refined(
            study_dir,
            rows,
            model,
            load_model(outer_dir).model,
            target,
            refine_steps=refine_steps,
            top=top,
            device=trial_device(1.0),
            echo=say,
        )

    choice = score(echo) if score_in is None else score_in(score)
    if not files.local:
        files.write_json(REFINED_CHOICE, choice)  # the record a local study keeps beside it
    row = next(r for r in result.rows if r["trial_id"] == choice["chosen"])
    if row["trial_id"] != (result.best or {}).get("trial_id"):
        weights = load_best_weights(latest_checkpoint(study_dir / f"trial_{row['trial_id']}"))
        result.best_model = save_trial_model(files, row, config, study_data, weights)
        echo(
            f"[{config.name}] refined codes choose trial {row['trial_id']} over the study's "
            f"{(result.best or {}).get('trial_id')}"
        )
    result.best = row
    files.write_json(
        BEST_CONFIG, {**best_config(config, study_data, row), "refined_choice": choice}
    )
    return choice
