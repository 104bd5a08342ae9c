"""Studies: build and run a Ray Tune search over one model kind, write its results, resume it.

A study lives in `<storage>/<name>/` (a local folder or an s3:// / gs:// URI): Tune's own
experiment state and trial folders, plus

- `study.json`: the StudyConfig, the search space and the dataset it ran on;
- `results.parquet`, `results.csv`: one row per trial (config, final and best validation loss,
  epochs, status, reason stopped);
- `best_config.json`: the best trial's configuration (input to `samplegen train --config`);
- `best_model/`: the best trial's best-epoch weights as a model directory (artifact.save_model);
- `epochs/<trial_id>.jsonl`: every epoch each trial reported, kept across resumes (epoch_log.py),
  which `plot_study` draws.

`run_study(config, data)` is generic in the model kind: `data` is any StudyData (the outer study
reads a prepared dataset; an inner study passes encoded latents).
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import math
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from samplegen.atomic import file_in_the_way, write_bytes_atomic
from samplegen.errors import SamplegenError
from samplegen.interrupts import keeping_terms_as_ctrl_c, terms_as_ctrl_c
from samplegen.platform.resources import check_request
from samplegen.platform.schedulers import SCHEDULERS
from samplegen.platform.searchers import FAILED_STATUSES, SEARCHERS
from samplegen.platform.stopping import StallRule
from samplegen.platform.trainable import MODE, OBJECTIVE, SEARCH_OBJECTIVE, TrialSettings
from samplegen.redact import redact_values

if TYPE_CHECKING:
    from samplegen.platform.searchers import SearchPlan
    from samplegen.platform.spaces import SearchSpace

STUDY_JSON = "study.json"
TUNER_STATE = "tuner.pkl"  # Tune's own state (Tune names it .pkl); there once a study started
RESULTS_PARQUET = "results.parquet"
RESULTS_CSV = "results.csv"
BEST_CONFIG = "best_config.json"
BEST_MODEL = "best_model"
PROGRESS_PNG = "progress.png"
INTERRUPT_MARKER = ".interrupted-once"
# Settings that may differ between a study and its --resume (they change nothing already run).
# Not W&B's: Tune restores a study with the callbacks it started with, so a changed --wandb would
# be silently ignored. (Nor does a changed `progress` take effect, but it only prints.)
RESUME_FREE = frozenset(
    {
        "address",
        "autoscaling",
        # Where the study folder is: found there by name, it is the same study (a moved run).
        "storage",
        # Where the dataset is: the data itself is checked, by fingerprint (_check_resume_data).
        "data",
        "progress",
        "export_best",
        "num_cpus",
    }
)


# What a trial's --device may say (samplegen.platform.resources.trial_device).
DEVICES = ("auto", "cpu", "cuda")


class StudyError(SamplegenError):
    """A study cannot start, resume or finish; the message says which setting or folder."""


@dataclass(frozen=True)
class StudyConfig:
    """Every setting of a study (the CLI maps its flags one to one onto these fields)."""

    name: str
    model: str
    data: str = ""  # dataset path, recorded and used by the default data loader
    search: str = "random"
    scheduler: str = "fifo"
    trials: int = 10
    epochs: int = 20
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None
    storage: str = "studies"
    space: str | None = None  # YAML file overriding the packaged space
    seed: int = 0
    max_params: int | None = 20_000_000
    train_subset: int | None = None
    stall_window: int | None = 5
    stall_min_change: float = 0.005
    overfit_limit: float | None = 1.4
    cutoff_factor: float = 3.0
    cutoff_grace: int = 20
    asha_grace: int = 1
    asha_reduction: float = 2.0
    max_failures: int = 2
    checkpoint_every: int = 1
    amp: bool = False
    device: str = "auto"
    reuse_actors: bool = True
    autoscaling: bool = False
    time_budget_s: float | None = None
    fail_at_epoch: int | None = None
    fail_probability: float = 0.0
    fail_seed: int = 0
    write_examples: bool = False
    export_best: bool = True
    progress: bool = True
    wandb: bool = False
    wandb_project: str = "samplegen"
    wandb_group: str | None = None
    address: str | None = None
    num_cpus: int | None = None

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise StudyError(f"--name: {self.name!r} must be a plain folder name")
        if self.search not in SEARCHERS:
            raise StudyError(f"--search: {self.search!r} is not one of {', '.join(SEARCHERS)}")
        if self.scheduler not in SCHEDULERS:
            raise StudyError(
                f"--scheduler: {self.scheduler!r} is not one of {', '.join(SCHEDULERS)}"
            )
        if self.trials < 1:
            raise StudyError(f"--trials: must be >= 1, got {self.trials}")
        if self.epochs < 1:
            raise StudyError(f"--epochs: must be >= 1, got {self.epochs}")
        if self.max_failures < 0:
            raise StudyError(f"--max-failures: must be >= 0, got {self.max_failures}")
        check_request(
            self.cpus_per_trial,
            self.gpus_per_trial,
            cpus_flag="--cpus-per-trial",
            gpus_flag="--gpus-per-trial",
        )
        # Each of these used to be taken, and end in a study of failed or stopped trials (or a
        # traceback from Ray Tune) whose name a corrected command could then not use again.
        at_least_one = {
            "--max-concurrent": self.max_concurrent,
            "--max-params": self.max_params,
            "--train-subset": self.train_subset,
            "--asha-grace": self.asha_grace,
            "--cutoff-grace": self.cutoff_grace,
            "--checkpoint-every": self.checkpoint_every,
        }
        for flag, value in at_least_one.items():
            if value is not None and value < 1:
                raise StudyError(f"{flag}: must be >= 1, got {value}")
        if not self.asha_reduction > 1:
            raise StudyError(f"--asha-reduction: must be above 1, got {self.asha_reduction:g}")
        if not self.cutoff_factor > 1:
            raise StudyError(f"--cutoff-factor: must be above 1, got {self.cutoff_factor:g}")
        if self.overfit_limit is not None and not self.overfit_limit >= 1:
            raise StudyError(
                f"--overfit-limit: must be >= 1 (a validation / training loss ratio) or 0 (off), "
                f"got {self.overfit_limit:g}"
            )
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise StudyError(f"--time-budget: must be above 0 seconds, got {self.time_budget_s:g}")
        if self.device not in DEVICES:
            raise StudyError(f"--device: {self.device!r} is not one of {', '.join(DEVICES)}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every setting."""
        return dataclasses.asdict(self)

    @property
    def stall_rule(self) -> StallRule:
        """The trial's own stopping rule."""
        return StallRule(self.stall_window, self.stall_min_change, self.overfit_limit)


@dataclass(frozen=True)
class StudyData:
    """The arrays a study trains on, and where they came from."""

    train: np.ndarray
    validation: np.ndarray
    codec: Any = None  # CodecConfig of the samples, when they are codec samples
    fingerprint: str | None = None
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample."""
        return tuple(int(d) for d in self.train.shape[1:])


def load_study_data(path: str | os.PathLike[str], train_subset: int | None = None) -> StudyData:
    """The train and validation splits of a prepared dataset folder."""
    from samplegen.platform.datasets import load_dataset

    ds = load_dataset(path, splits=("train", "validation"), train_subset=train_subset)
    train, val = ds.splits["train"].x, ds.splits["validation"].x
    if len(train) == 0 or len(val) == 0:
        raise StudyError(
            f"{path}: the dataset needs samples in both train and validation splits "
            f"(has {len(train)} train, {len(val)} validation)"
        )
    # Absolute: a chained study reads it from study.json, maybe from another working folder.
    # train_notes marks the real notes among the training rows (not mixes or variation presets).
    notes = np.array([not m.get("augmented") for m in ds.splits["train"].meta], dtype=bool)
    extra = {"train_notes": notes}
    return StudyData(train, val, ds.codec, ds.fingerprint, os.path.abspath(path), extra)


@dataclass
class StudyResult:
    """What run_study produced."""

    path: str
    rows: list[dict[str, Any]]
    best: dict[str, Any] | None
    best_model: str | None
    interrupted: bool
    note: str = ""


# ---------------------------------------------------------------- storage


class StudyFiles:
    """Reads and writes the study's own files under a local folder or a pyarrow-filesystem URI."""

    def __init__(self, storage: str, name: str) -> None:
        from samplegen.platform.downloads import is_uri, join_location, location_fs

        self.fs, root = location_fs(storage)
        self.local = not is_uri(storage)
        blocked = file_in_the_way(Path(root)) if self.local else None
        if blocked is not None:
            raise StudyError(f"--storage {storage}: {blocked} is a file, not a folder")
        self.storage_path = root if self.local else storage
        self.root = f"{root.rstrip('/')}/{name}"
        self.uri = join_location(storage, name) if not self.local else self.root

    def exists(self, rel: str = "") -> bool:
        """Whether a file or folder exists under the study."""
        import pyarrow.fs as pafs

        path = f"{self.root}/{rel}" if rel else self.root
        return self.fs.get_file_info(path).type != pafs.FileType.NotFound

    def read_bytes(self, rel: str) -> bytes:
        """A file of the study."""
        with self.fs.open_input_stream(f"{self.root}/{rel}") as fh:
            return bytes(fh.read())

    def read_text(self, rel: str) -> str:
        """A text file of the study."""
        return self.read_bytes(rel).decode()

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write a file (atomically on a local folder; object stores replace whole objects)."""
        from samplegen.platform.downloads import write_file

        write_file(self.fs, f"{self.root}/{rel}", data)

    def write_json(self, rel: str, data: Any) -> None:
        """Write JSON (plain values only), with any credentials in a URI hidden."""
        text = json.dumps(redact_values(data), indent=2, sort_keys=True)
        self.write_bytes(rel, (text + "\n").encode())

    def location(self, rel: str) -> str:
        """Where a file or folder of the study is, as the user named the study's storage (a
        folder, or a URI with its options kept)."""
        from samplegen.platform.downloads import join_location

        return join_location(self.uri, rel)

    def upload_dir(self, local: Path, rel: str) -> None:
        """Copy a local model folder into the study (the best model on remote storage), replacing
        the one there. An object store cannot swap a folder in one step, so its config.json goes
        first and comes back last: a copy cut short leaves a folder that reads as no model, never
        one model's configuration over another's weights."""
        import pyarrow.fs as pafs

        from samplegen.models.artifact import CONFIG_NAME

        target = f"{self.root}/{rel}"
        # A file system with real folders (a local or mounted one) needs the target made first.
        self.fs.create_dir(target, recursive=True)
        if self.exists(f"{rel}/{CONFIG_NAME}"):
            self.fs.delete_file(f"{target}/{CONFIG_NAME}")
        files = sorted(p for p in Path(local).iterdir() if p.is_file())
        for path in [*(p for p in files if p.name != CONFIG_NAME), local / CONFIG_NAME]:
            if path.is_file():
                pafs.copy_files(str(path), f"{target}/{path.name}", destination_filesystem=self.fs)


# ---------------------------------------------------------------- callbacks


def _progress_callback_class() -> type:
    from ray.tune import Callback

    class ProgressPrinter(Callback):
        """One terminal line whenever a trial starts or ends, or the best loss improves."""

        def __init__(self, name: str, echo: Callable[[str], None] = print) -> None:
            self.name = name
            self.echo = echo
            self.running: set[str] = set()
            self.finished: set[str] = set()
            self.best = math.inf
            self.best_trial = ""

        def _line(self, text: str) -> None:
            best = f"{self.best:.4g} ({self.best_trial})" if self.best_trial else "-"
            self.echo(
                f"[{self.name}] {text} | running {len(self.running)}, "
                f"finished {len(self.finished)}, best {OBJECTIVE} {best}"
            )

        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.running.add(trial.trial_id)
            self._line(f"trial {trial.trial_id} started {_short_config(trial.config)}")

        def on_trial_result(
            self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
        ) -> None:
            value = result.get(OBJECTIVE)
            if value is not None and math.isfinite(value) and value < self.best:
                self.best, self.best_trial = float(value), trial.trial_id
                self._line(f"new best: trial {trial.trial_id} epoch {result.get('epoch')}")

        def _end(self, trial: Any, what: str) -> None:
            self.running.discard(trial.trial_id)
            self.finished.add(trial.trial_id)
            last = trial.last_result or {}
            status = last.get("status", "?")
            if status == "running":
                status = "stopped by scheduler"
            self._line(f"trial {trial.trial_id} {what}: {status}, epoch {last.get('epoch', 0)}")

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._end(trial, "finished")

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._end(trial, "errored")

        def __getstate__(self) -> dict[str, Any]:
            state = dict(self.__dict__)
            state["echo"] = print  # the driver's echo may not pickle; resumed studies print
            return state

    return ProgressPrinter


def _interrupt_callback_class() -> type:
    from ray.tune import Callback

    class InterruptAfter(Callback):
        """Sends this driver SIGINT (what Ctrl-C does) after `count` trials end, once per study.

        For reliability tests of --resume; the marker file keeps a resumed study from stopping
        again.
        """

        def __init__(self, count: int, marker: str) -> None:
            self.count = count
            self.marker = marker
            self.done = 0

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.done += 1
            if self.done >= self.count and not os.path.exists(self.marker):
                Path(self.marker).parent.mkdir(parents=True, exist_ok=True)
                Path(self.marker).write_text("interrupted\n")
                os.kill(os.getpid(), signal.SIGINT)

    return InterruptAfter


def _short_config(config: dict[str, Any]) -> str:
    parts = []
    for k, v in config.items():
        parts.append(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}")
    return " ".join(parts)


def _trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


# ---------------------------------------------------------------- Ray


def check_started(files: StudyFiles, name: str, resume: bool) -> None:
    """Refuse a resume of a study that never started, and a new study where one has (the chain
    checks this before it encodes, so a refused study costs no encoding and replaces none)."""
    # A study has started once Tune wrote its state; study.json comes first, so a study stopped
    # between the two has run nothing and is started afresh.
    has_state = files.exists(TUNER_STATE)
    if resume and not has_state:
        raise StudyError(f"{files.uri}: no study to resume there (run it without --resume first)")
    if not resume and has_state:
        raise StudyError(
            f"{files.uri}: a study named {name!r} already exists; "
            "pass --resume to continue it, or choose another --name"
        )


def ensure_ray(
    address: str | None = None,
    num_cpus: int | None = None,
    *,
    temp_dir: str | None = None,
    object_store_memory: int | None = None,
) -> bool:
    """Connect to `address`, or start a single-node Ray here; returns True if this call started it.

    Already-initialised Ray (e.g. a test session's) is reused as is. Without `address`, a
    RAY_ADDRESS in the environment (set inside Ray Jobs) is used; otherwise Ray starts locally.
    """
    import ray

    from samplegen.platform.ray_address import AddressError, check_reachable

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    kwargs: dict[str, Any] = {"logging_level": "ERROR", "log_to_driver": False}
    with keeping_terms_as_ctrl_c():
        if address:
            given = "RAY_ADDRESS" if address == os.environ.get("RAY_ADDRESS") else "--address"
            check_reachable(address, given)
            try:
                ray.init(address=address, **kwargs)
            except ConnectionError as exc:  # something listens there, but not a Ray cluster
                raise AddressError(
                    f"{given} {address}: cannot connect to Ray there ({exc})"
                ) from exc
        else:
            ray.init(
                address="local",
                num_cpus=num_cpus,
                include_dashboard=False,
                _temp_dir=temp_dir,
                object_store_memory=object_store_memory,
                **kwargs,
            )
    return True


def check_space_names(model: str, names: list[str], where: str) -> None:
    """Fail before any trial runs if the space names hyper-parameters the model does not have."""
    from samplegen.models.registry import hparams_class
    from samplegen.platform.training import TRAINING_KEYS

    known = {f.name for f in dataclasses.fields(hparams_class(model))} | TRAINING_KEYS
    unknown = [n for n in names if n not in known]
    if unknown:
        raise StudyError(
            f"{where}: parameter(s) {', '.join(unknown)} are not hyper-parameters of model "
            f"{model} (known: {', '.join(sorted(known))})"
        )


def check_model_data(model: str, data: StudyData) -> None:
    """Fail before any trial runs when an outer model cannot take the dataset's representation
    (otherwise every trial would only be rejected, one by one)."""
    from samplegen.models.registry import takes_representation

    wants = takes_representation(model)
    if wants is None or data.codec is None or "outer_model" in data.extra:
        return
    have = data.codec.representation
    if have != wants:
        raise StudyError(
            f"--model {model}: takes {wants} samples, but the dataset {data.source or '(given)'} "
            f"holds {have} samples of shape {data.input_shape}; prepare the data with "
            f"--repr {wants}, or choose a model for {have} samples"
        )


def _settings(config: StudyConfig, data: StudyData) -> TrialSettings:
    return TrialSettings(
        model=config.model,
        input_shape=data.input_shape,
        epochs=config.epochs,
        max_params=config.max_params,
        stall=config.stall_rule,
        seed=config.seed,
        device=config.device,
        cpus=config.cpus_per_trial,
        gpus=config.gpus_per_trial,
        amp=config.amp,
        checkpoint_every=config.checkpoint_every,
        fail_at_epoch=config.fail_at_epoch,
        fail_probability=config.fail_probability,
        fail_seed=config.fail_seed,
        codec=data.codec.to_dict() if data.codec is not None else None,
        write_example=config.write_examples or config.wandb,
        end_to_end=data.extra.get("outer_model"),
    )


def build_trainable(config: StudyConfig, data: StudyData) -> Any:
    """The trial function with its data refs, settings and resources bound."""
    import ray
    from ray import tune

    from samplegen.platform.resources import TrialResources
    from samplegen.platform.trainable import train_trial

    refs = {"train": ray.put(data.train), "validation": ray.put(data.validation)}
    if "validation_target" in data.extra:  # chained studies: the outer-domain validation split
        refs["validation_target"] = ray.put(data.extra["validation_target"])
    if "outer_files" in data.extra:  # chained studies: the outer model itself, for every node
        refs["outer_model"] = ray.put(data.extra["outer_files"])
    fn = tune.with_parameters(train_trial, data=refs, settings=_settings(config, data))
    resources = TrialResources(config.cpus_per_trial, config.gpus_per_trial)
    return tune.with_resources(fn, resources.as_dict())


def run_study(
    config: StudyConfig,
    data: StudyData | Callable[[], StudyData] | None = None,
    *,
    resume: bool = False,
    interrupt_after: int | None = None,
    echo: Callable[[str], None] = print,
) -> StudyResult:
    """Run (or with `resume`, continue) the study; Ray must be initialised (see `ensure_ray`).

    `data` defaults to `load_study_data(config.data)`. `interrupt_after=N` interrupts the driver
    like Ctrl-C once N trials have ended (reliability tests); the study can then be resumed.
    Returns the results table rows, the best row and where the best model went.
    """
    import pyarrow.fs as pafs
    import ray
    from ray import tune

    from samplegen.platform.resources import (
        BOOTSTRAP_CONFIG,
        TrialResources,
        check_cluster,
        largest_cluster,
        trials_at_once,
    )
    from samplegen.platform.schedulers import build_scheduler, check_asha_grace
    from samplegen.platform.snapshot_backup import snapshot_backup_callback_class
    from samplegen.platform.snapshot_repair import repair_pruned_checkpoints, restore_cut_snapshots
    from samplegen.platform.spaces import bind_code_frames, resolve_space

    if not ray.is_initialized():
        raise StudyError("run_study: Ray is not initialised (call ensure_ray first)")
    # Tune snapshots the study (trial statuses, searcher) every >= 10 s by default; a driver
    # killed in between forgets every trial started since. Snapshot every second instead.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    space = resolve_space(config.model, config.space)
    check_space_names(config.model, space.names, space.source)
    resources = TrialResources(config.cpus_per_trial, config.gpus_per_trial)
    cluster = check_cluster(resources, autoscaling=config.autoscaling)

    files = StudyFiles(config.storage, config.name)
    check_started(files, config.name, resume)
    recorded = (
        json.loads(files.read_text(STUDY_JSON)) if resume and files.exists(STUDY_JSON) else None
    )
    if recorded is not None:
        _check_resume(recorded["config"], config, files.uri)
    if not resume:
        # A study already under way keeps the rungs it started with.
        check_asha_grace(
            config.scheduler, space, asha_grace=config.asha_grace, max_epochs=config.epochs
        )

    if data is None:
        if not config.data:
            raise StudyError("run_study: no data given and no dataset path in the config")
        data = load_study_data(config.data, config.train_subset)
    elif callable(data):
        data = data()
    if recorded is not None:
        _check_resume_data(recorded.get("data") or {}, data, files.uri)
    check_model_data(config.model, data)
    space = bind_code_frames(space, data.extra.get("code_frames"))
    trainable = build_trainable(config, data)

    largest = largest_cluster() if config.autoscaling else None
    slots = trials_at_once(resources, cluster, largest)
    if (
        config.autoscaling
        and not config.max_concurrent
        and (largest is None or resources.per_node_limit(largest) < 1)
    ):
        echo(
            f"[{config.name}] note: --autoscaling, but {BOOTSTRAP_CONFIG} does not tell how far "
            f"the cluster may grow for these trials: {slots} at a time, as it is now; "
            "pass --max-concurrent to run more"
        )
    max_concurrent = config.max_concurrent or slots
    plan = search_plan(config, space, max_concurrent)
    if config.progress:
        echo(f"[{config.name}] {plan.note}; {max_concurrent} at a time; study at {files.uri}")

    from samplegen.platform.epoch_log import epoch_log_callback_class
    from samplegen.platform.trial_logs import trial_log_keeper_class

    callbacks: list[Any] = [epoch_log_callback_class()(), trial_log_keeper_class()()]
    # A rejected or diverged trial reports an infinite loss on purpose, and the study's log and
    # results say which and why; Tune's TensorBoard logger would add an unexplained "NaN or Inf
    # found in input tensor." for each such trial.
    logging.getLogger("tensorboardX.x2num").setLevel(logging.ERROR)
    # Object stores replace whole objects; only a folder can hold a state file cut short.
    snapshot_local = isinstance(files.fs, pafs.LocalFileSystem)
    if snapshot_local:
        callbacks.append(snapshot_backup_callback_class()(files.root))
    if config.progress:
        callbacks.append(_progress_callback_class()(config.name, echo))
    if interrupt_after:
        marker = str(Path(tempfile.gettempdir()) / f"sg-{abs(hash(files.root))}{INTERRUPT_MARKER}")
        if files.local:
            marker = f"{files.root}/{INTERRUPT_MARKER}"
        callbacks.append(_interrupt_callback_class()(interrupt_after, marker))
    if config.wandb:
        from samplegen.platform.tracking import wandb_callback

        wandb_dir = f"{files.root}/wandb" if files.local else None
        cb = wandb_callback(
            config.wandb_project, config.wandb_group or config.name, directory=wandb_dir, echo=echo
        )
        if cb is not None:
            callbacks.append(cb)

    if resume:
        if config.progress:
            echo(f"[{config.name}] resuming from {files.uri}")
        if snapshot_local:
            for line in restore_cut_snapshots(files.root):
                echo(f"[{config.name}] {line}")
        for repaired in repair_pruned_checkpoints(files.fs, files.root):
            echo(f"[{config.name}] {repaired.describe()}")
        tuner = tune.Tuner.restore(
            files.uri,
            trainable=trainable,
            resume_unfinished=True,
            resume_errored=True,
            param_space=plan.param_space or None,
        )
    else:
        files.write_json(
            STUDY_JSON,
            {
                "config": config.to_dict(),
                "space": space.to_dict(),
                "data": {
                    "source": data.source,
                    "fingerprint": data.fingerprint,
                    "input_shape": list(data.input_shape),
                    "train": len(data.train),
                    "validation": len(data.validation),
                    "codec": data.codec.to_dict() if data.codec is not None else None,
                },
            },
        )
        scheduler = build_scheduler(
            config.scheduler,
            max_epochs=config.epochs,
            cutoff_factor=config.cutoff_factor,
            cutoff_grace=config.cutoff_grace,
            asha_grace=config.asha_grace,
            asha_reduction=config.asha_reduction,
        )
        tuner = tune.Tuner(
            trainable,
            param_space=plan.param_space,
            tune_config=tune.TuneConfig(
                metric=OBJECTIVE,
                mode=MODE,
                search_alg=plan.search_alg,
                scheduler=scheduler,
                num_samples=plan.num_samples,
                max_concurrent_trials=max_concurrent if config.search == "grid" else None,
                reuse_actors=config.reuse_actors,
                time_budget_s=config.time_budget_s,
                trial_dirname_creator=_trial_dirname,
            ),
            run_config=tune.RunConfig(
                name=config.name,
                storage_path=files.storage_path,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                failure_config=tune.FailureConfig(max_failures=config.max_failures),
                callbacks=callbacks,
                verbose=0,
            ),
        )
    grid, signalled = _fit_noting_ctrl_c(tuner)
    trials = _trials_of(grid)
    # Tune ends a Ctrl-C'd study with its running trials TERMINATED, as if done: the statuses
    # alone called such a study finished (and exported its best model).
    interrupted = signalled or any(t.status not in ("TERMINATED", "ERROR") for t in trials)
    if plan.num_samples > 1 and len(trials) < plan.num_samples and config.time_budget_s is None:
        interrupted = True
    rows = results_rows(grid, space.names)
    _write_table(files, rows)
    best = best_row(rows)
    result = StudyResult(files.uri, rows, best, None, interrupted)
    if best is not None:
        files.write_json(BEST_CONFIG, best_config(config, data, best))
        if config.export_best and not interrupted:
            result.best_model = export_best(files, grid, best, config, data, echo)
    if interrupted:
        result.note = f"study interrupted; continue it with --resume (same --name {config.name})"
    if config.progress:
        echo(summary_line(config.name, rows, best, interrupted))
    return result


def search_plan(config: StudyConfig, space: SearchSpace, max_concurrent: int) -> SearchPlan:
    """The study's searcher, learning from each trial's best validation loss, with at most
    `max_concurrent` trials at once (grid takes its cap from the Tuner instead)."""
    from samplegen.platform.searchers import build_search

    return build_search(
        config.search,
        space,
        trials=config.trials,
        metric=SEARCH_OBJECTIVE,
        mode=MODE,
        seed=config.seed,
        max_concurrent=max_concurrent if config.search != "grid" else None,
    )


def _fit_noting_ctrl_c(tuner: Any) -> tuple[Any, bool]:
    """`tuner.fit()`, and whether Ctrl-C (SIGINT) or SIGTERM stopped it.

    Tune's own SIGINT handler ends the study and puts back the handler that was there before it;
    a sentinel handler installed first is therefore the one in place afterwards exactly when a
    SIGINT arrived. (A second Ctrl-C reaches the sentinel, which interrupts as Python would.)
    SIGTERM, what `ray job stop`, Kubernetes and most batch schedulers send, is turned into that
    same Ctrl-C: Ray's own handler would end the driver at once with a stack dump, before Tune
    saved the study's state. A second SIGTERM ends the process at once.
    """
    if threading.current_thread() is not threading.main_thread():
        return tuner.fit(), False  # signals reach only the main thread; Tune installs none

    def sentinel(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, sentinel)
    try:
        with terms_as_ctrl_c():
            grid = tuner.fit()
        return grid, signal.getsignal(signal.SIGINT) is sentinel
    finally:
        signal.signal(signal.SIGINT, previous)


def _check_resume(previous: dict[str, Any], config: StudyConfig, where: str) -> None:
    now = redact_values(config.to_dict())  # as study.json keeps it
    changed = sorted(k for k in now if k not in RESUME_FREE and previous.get(k) != now[k])
    if changed:
        raise StudyError(
            f"{where}: cannot resume with different settings ({', '.join(changed)} differ from "
            "the study's); resume with the original settings or start a new --name"
        )


def _check_resume_data(previous: dict[str, Any], data: StudyData, where: str) -> None:
    """Refuse to resume a study on other data than it ran on: its finished trials would be
    ranked beside trials of another dataset (or, in a chain, of another outer model)."""
    before, now = previous.get("fingerprint"), data.fingerprint
    if before and now and before != now:
        raise StudyError(
            f"{where}: cannot resume on other data: the study ran on {previous.get('source')} "
            f"(fingerprint {before}), this is {data.source or '(given)'} (fingerprint {now}); "
            "resume with the study's data, or start a new --name"
        )


def _trials_of(grid: Any) -> list[Any]:
    analysis = getattr(grid, "_experiment_analysis", None)
    return list(getattr(analysis, "trials", None) or [])


# ---------------------------------------------------------------- results


def results_rows(grid: Any, param_names: list[str]) -> list[dict[str, Any]]:
    """One row per trial: id, status, reason, epochs, losses, size, config columns."""
    statuses = {t.trial_id: t.status for t in _trials_of(grid)}
    rows = []
    for r in grid:
        m = dict(r.metrics or {})
        trial_id = m.get("trial_id") or Path(r.path).name.removeprefix("trial_")
        status = str(m.get("status", "not_started"))
        reason = str(m.get("reason", ""))
        if r.error is not None:
            status = "error"
            reason = (
                str(r.error).strip().splitlines()[-1][:500] if str(r.error).strip() else "error"
            )
        elif status == "running":
            if statuses.get(trial_id) == "TERMINATED":
                status, reason = "stopped", f"stopped by the scheduler at epoch {m.get('epoch')}"
            else:
                status, reason = "unfinished", "the study was interrupted"
        row: dict[str, Any] = {
            "trial_id": trial_id,
            "status": status,
            "reason": reason,
            "epochs": int(m.get("epoch", 0) or 0),
            "final_val_loss": _num(m.get(OBJECTIVE)),
            "best_val_loss": _num(m.get("best_val_loss", m.get(OBJECTIVE))),
            "best_epoch": int(m.get("best_epoch", 0) or 0),
            "final_train_loss": _num(m.get("train_loss")),
            "overfit": _num(m.get("overfit")),
            "params": int(m.get("params", 0) or 0),
            "compression": _num(m.get("compression")),
            "epoch_seconds": _num(m.get("epoch_seconds")),
            "time_total_s": _num(m.get("time_total_s")),
            "restored_from": int(m.get("restored_from", 0) or 0),
            "path": str(r.path),
        }
        config = r.config or {}
        for name in param_names:
            value = config.get(name)
            row[f"config.{name}"] = value if not isinstance(value, np.generic) else value.item()
        rows.append(row)
    rows.sort(key=lambda row: (math.isnan(row["best_val_loss"]), row["best_val_loss"]))
    return rows


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def ranked_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trials that produced a best validation loss, lowest first (ties keep table order)."""
    ok = [
        r for r in rows if r["status"] not in FAILED_STATUSES and math.isfinite(r["best_val_loss"])
    ]
    return sorted(ok, key=lambda r: r["best_val_loss"])


def best_row(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The row with the lowest best validation loss among trials that produced one."""
    ranked = ranked_rows(rows)
    return ranked[0] if ranked else None


def _write_table(files: StudyFiles, rows: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if not rows:
        return
    columns: dict[str, list[Any]] = {k: [] for k in rows[0]}
    for row in rows:
        for k in columns:
            columns[k].append(row.get(k))
    # Config columns may mix ints and floats across trials (grid values): store them as text-free
    # numbers where possible.
    table = pa.table({k: _column(v) for k, v in columns.items()})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    files.write_bytes(RESULTS_PARQUET, buf.getvalue())
    buf = io.BytesIO()
    pacsv.write_csv(table, buf)
    files.write_bytes(RESULTS_CSV, buf.getvalue())


def _column(values: list[Any]) -> Any:
    import pyarrow as pa

    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        if all(isinstance(v, (int, float)) or v is None for v in values):
            return pa.array([None if v is None else float(v) for v in values], pa.float64())
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def read_results(study_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The results table of a finished study, as rows."""
    import pyarrow.parquet as pq

    path = Path(study_dir) / RESULTS_PARQUET
    if not path.exists():
        raise StudyError(f"{study_dir}: no {RESULTS_PARQUET} (has the study run?)")
    return pq.read_table(path).to_pylist()


def trial_params(row: dict[str, Any]) -> dict[str, Any]:
    """A results row's trial configuration: its `config.NAME` columns, named NAME."""
    return {k.removeprefix("config."): v for k, v in row.items() if k.startswith("config.")}


def best_config(config: StudyConfig, data: StudyData, best: dict[str, Any]) -> dict[str, Any]:
    """The JSON `samplegen train --config` reads: model, flat config, and how it was found."""
    params = trial_params(best)
    return {
        "model": config.model,
        "config": params,
        "trial_id": best["trial_id"],
        "best_val_loss": best["best_val_loss"],
        "best_epoch": best["best_epoch"],
        "epochs": best["epochs"],
        "study": config.name,
        "max_params": config.max_params,
        "seed": config.seed,
        "stall": {
            "window": config.stall_window,
            "min_change": config.stall_min_change,
            "overfit_limit": config.overfit_limit,
        },
        "input_shape": list(data.input_shape),
        "dataset": {"source": data.source, "fingerprint": data.fingerprint},
    }


def export_best(
    files: StudyFiles,
    grid: Any,
    best: dict[str, Any],
    config: StudyConfig,
    data: StudyData,
    echo: Callable[[str], None] = print,
) -> str | None:
    """Save the best trial's best-epoch weights as a model directory under the study."""
    from samplegen.platform.training import load_best_weights

    if data.codec is None:
        echo(f"[{config.name}] best model not exported: the data has no codec")
        return None
    result = next((r for r in grid if Path(r.path).name == f"trial_{best['trial_id']}"), None)
    if result is None or result.checkpoint is None:
        echo(f"[{config.name}] best model not exported: trial {best['trial_id']} has no checkpoint")
        return None
    with result.checkpoint.as_directory() as ckdir:
        return save_trial_model(files, best, config, data, load_best_weights(ckdir))


def save_trial_model(
    files: StudyFiles,
    best: dict[str, Any],
    config: StudyConfig,
    data: StudyData,
    weights: dict[str, Any],
) -> str:
    """Save one trial (its results row `best` and best-epoch `weights`) as the study's best
    model, STUDY/best_model; returns where it went."""
    from samplegen.models.artifact import save_model
    from samplegen.models.registry import build_model
    from samplegen.platform.training import split_config

    params = trial_params(best)
    _, model_hp = split_config(params)
    model = build_model(config.model, model_hp, data.input_shape)
    model.load_state_dict(weights)
    metrics = {
        k: best[k] for k in ("best_val_loss", "best_epoch", "epochs", "final_train_loss", "overfit")
    }
    extra = {"study": config.name, "trial_id": best["trial_id"], "config": params}
    if files.local:
        target = Path(files.root) / BEST_MODEL
        save_model(
            target,
            model,
            codec=data.codec,
            dataset_fingerprint=data.fingerprint,
            metrics=metrics,
            extra=extra,
        )
        return str(target)
    with tempfile.TemporaryDirectory() as tmp:
        save_model(
            Path(tmp) / BEST_MODEL,
            model,
            codec=data.codec,
            dataset_fingerprint=data.fingerprint,
            metrics=metrics,
            extra=extra,
        )
        files.upload_dir(Path(tmp) / BEST_MODEL, BEST_MODEL)
    return files.location(BEST_MODEL)


def summary_line(
    name: str, rows: list[dict[str, Any]], best: dict[str, Any] | None, interrupted: bool
) -> str:
    """One line: trials by status and the best result."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    head = "interrupted" if interrupted else "done"
    if best is None:
        return f"[{name}] {head}: {len(rows)} trials ({parts}); no trial produced a loss"
    return (
        f"[{name}] {head}: {len(rows)} trials ({parts}); best {OBJECTIVE} "
        f"{best['best_val_loss']:.4g} (trial {best['trial_id']}, epoch {best['best_epoch']})"
    )


# ---------------------------------------------------------------- plot


def trial_histories(study: str | os.PathLike[str]) -> dict[str, list[dict[str, Any]]]:
    """Each trial's results in a study (a folder or a URI): the study's own epoch log, or for a
    trial without one (a study from before the log) Tune's result.json."""
    import pyarrow.fs as pafs

    from samplegen.platform.downloads import location_fs
    from samplegen.platform.epoch_log import parse_log, read_epoch_logs

    fs, root = location_fs(study)
    histories = read_epoch_logs(fs, root)
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        return histories
    for info in fs.get_file_info(pafs.FileSelector(root)):
        trial_id = info.base_name.removeprefix("trial_")
        if info.type != pafs.FileType.Directory or trial_id == info.base_name:
            continue
        result_file = f"{info.path}/result.json"
        if trial_id in histories or fs.get_file_info(result_file).type != pafs.FileType.File:
            continue
        with fs.open_input_stream(result_file) as fh:
            # A line cut short by a crash is skipped.
            rows = parse_log(fh.read().decode())
        if rows:
            histories[trial_id] = rows
    return dict(sorted(histories.items()))


def plot_study(study: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> str:
    """Draw the search progress: validation loss per trial over wall time, and best so far.

    `study`: a folder or a URI; `out` defaults to the study's progress.png. Returns where the
    PNG went."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from samplegen.platform.downloads import join_location, location_fs, location_name

    fs, root = location_fs(study)
    histories = trial_histories(study)
    if not histories:
        raise StudyError(f"{study}: no trial results found (is this a study folder?)")
    name = location_name(study)
    start = min(
        r.get("timestamp", 0) - r.get("time_total_s", 0) for h in histories.values() for r in h[:1]
    )
    points: list[tuple[float, float]] = []
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for trial_id, rows in histories.items():
        ts, vs = [], []
        for r in rows:
            v = r.get(OBJECTIVE)
            if v is None or not math.isfinite(float(v)):
                continue
            t = float(r.get("timestamp", 0)) - start
            ts.append(t)
            vs.append(float(v))
            points.append((t, float(v)))
        if ts:
            ax1.plot(ts, vs, linewidth=0.8, marker=".", markersize=3, label=trial_id)
    ax1.set_yscale("log")
    ax1.set_xlabel("wall time since study start (s)")
    ax1.set_ylabel(OBJECTIVE)
    ax1.set_title(f"{name}: {OBJECTIVE} per trial")
    if len(histories) <= 12:
        ax1.legend(fontsize=6)
    points.sort()
    best, bt, bv = math.inf, [], []
    for t, v in points:
        best = min(best, v)
        bt.append(t)
        bv.append(best)
    if bt:
        ax2.step(bt, bv, where="post")
        ax2.set_yscale("log")
    ax2.set_xlabel("wall time since study start (s)")
    ax2.set_ylabel(f"best {OBJECTIVE} so far")
    ax2.set_title("best so far")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    if out is not None:
        write_bytes_atomic(out, png.getvalue())
        return str(out)
    from samplegen.platform.downloads import write_file

    write_file(fs, f"{root}/{PROGRESS_PNG}", png.getvalue())
    return join_location(study, PROGRESS_PNG)
