"""The main job: the whole chain from samples to new sounds, resumable stage by stage.

Stages (each leaves a marker in RUN_DIR/.stages, so a restarted run continues where it stopped):
dataset -> outer_study -> outer_model (the best configuration trained longer) -> vae_study
(encode once + inner study + combined export) -> finetune (the combined model end to end, outer
frozen; kept only if validation improves) -> refit (presets with `refit` only: the selected inner
model trained again on the training and validation notes, samplegen.platform.refit) -> evaluation
-> sounds -> report.

Run folder::

    RUN_DIR/run.json                  the preset and inputs (a restart with others is refused)
    RUN_DIR/dataset/                  report.json, report.md, data/*.parquet
    RUN_DIR/outer_study/              results.csv/.parquet, best_config.json, progress.png
    RUN_DIR/vae_study/                the same for the inner study; vae_study-encoded/ beside it
    RUN_DIR/models/outer/, models/combined/   the final models
    RUN_DIR/models/selected/, models/inner-refit/, dataset-refit/, vae_study-encoded-refit/
                                      with `refit`: the model chosen on validation, and the refit
    RUN_DIR/evaluation/               metrics.json + summary.md of the combined model (test split)
    RUN_DIR/evaluation/outer/         the same for the outer model alone
    RUN_DIR/sounds/<kind>/            example sounds; RUN_DIR/index.html, the audition page
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from samplegen.atomic import write_bytes_atomic
from samplegen.platform.presets import Preset, space_path
from samplegen.platform.stage_tasks import StagePlacement
from samplegen.platform.stages import StageRunner

T = TypeVar("T")


def _study_config(
    preset: Preset,
    which: str,
    run_dir: Path,
    data: str,
    seed: int,
    address: str | None,
    autoscaling: bool = False,
    storage: str | None = None,
    wandb_project: str | None = None,
) -> Any:
    from samplegen.platform.study import StudyConfig

    tracking: dict[str, Any] = {}
    if wandb_project is not None:
        # One group per study of this run, so two runs' studies do not mix on a dashboard.
        group = f"{run_dir.name}-{which}_study"
        tracking = {"wandb": True, "wandb_project": wandb_project, "wandb_group": group}

    budget = preset.outer if which == "outer" else preset.inner
    rules: dict[str, Any] = {} if budget.stop_on_overfit else {"overfit_limit": None}
    return StudyConfig(
        name=f"{which}_study",
        model=budget.model,
        data=data,
        search=budget.search,
        scheduler=budget.scheduler,
        trials=budget.trials,
        epochs=budget.epochs,
        cpus_per_trial=preset.cpus_per_trial,
        gpus_per_trial=preset.gpus_per_trial,
        storage=storage or str(run_dir),
        space=space_path(budget.space),
        seed=seed,
        cutoff_grace=budget.cutoff_grace,
        asha_grace=budget.asha_grace,
        train_subset=budget.train_subset,
        address=address,
        autoscaling=autoscaling,
        **rules,
        **tracking,
    )


# A study's files the run folder keeps a copy of when the study lives elsewhere (--storage): the
# audition page and the outer model's stage read them from the run folder.
STUDY_SUMMARY = ("study.json", "best_config.json", "results.csv", "results.parquet", "progress.png")


def _copy_summary(config: Any, run_dir: Path) -> Path:
    """The study's summary files, copied into RUN/NAME (nothing to do when the study is there)."""
    from samplegen.platform.study import StudyFiles

    files = StudyFiles(config.storage, config.name)
    local = run_dir / config.name
    if files.local and Path(files.root) == local:
        return local
    for name in STUDY_SUMMARY:
        if files.exists(name):
            write_bytes_atomic(local / name, files.read_bytes(name))
    return local


def _started(config: Any) -> bool:
    """Whether an earlier run of this stage already started the study (so it must be resumed)."""
    from samplegen.platform.study import TUNER_STATE, StudyFiles

    return StudyFiles(config.storage, config.name).exists(TUNER_STATE)


def _outer_code(best_config: str, dataset: Path) -> tuple[int, ...]:
    """The code shape of the outer model `best_config` (a best_config.json) makes for `dataset`."""
    from samplegen.models.registry import latent_shape_of
    from samplegen.platform.datasets import require_dataset_info
    from samplegen.platform.longrun import read_best_config
    from samplegen.platform.training import split_config

    best = read_best_config(best_config)
    _, hparams = split_config(best["config"])
    return latent_shape_of(best["model"], hparams, require_dataset_info(dataset)["shape"])


def _example_inputs(dataset: Path, count: int) -> list[Any]:
    """Up to `count` test-split notes of different categories (instruments never trained on)."""
    from samplegen.generate.sounds import SoundInput
    from samplegen.platform.datasets import load_dataset

    test = load_dataset(dataset, splits=("test",)).splits["test"]
    chosen: list[int] = []
    seen: set[str | None] = set()
    for i, row in enumerate(test.meta):
        if row.get("category") not in seen and not row.get("augmented"):
            chosen.append(i)
            seen.add(row.get("category"))
    for i in range(len(test.meta)):
        if len(chosen) >= count:
            break
        if i not in chosen:
            chosen.append(i)
    return [
        SoundInput(
            name=str(test.meta[i]["name"]),
            encoded=test.x[i],
            peak=float(test.meta[i].get("peak") or 0) or None,
            source=str(test.meta[i].get("path") or ""),
            category=test.meta[i].get("category"),
        )
        for i in chosen[:count]
    ]


def _make_folder(folder: Path, option: str) -> None:
    from samplegen.errors import SamplegenError

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SamplegenError(
            f"{option} {folder}: cannot make this folder ({exc.strerror or exc})"
        ) from exc


def run_pipeline(
    preset: Preset,
    out: str | os.PathLike[str],
    *,
    source: str = "builtin",
    representation: str = "stft",
    seed: int = 0,
    address: str | None = None,
    num_cpus: int | None = None,
    autoscaling: bool = False,
    storage: str | None = None,
    wandb_project: str | None = None,
    stage_tasks: bool | None = None,
    stage_gpus: float | None = None,
    stage_cpus: float | None = None,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or continue) the whole chain into `out`; returns the paths of what it made.

    `autoscaling`: the studies may ask for GPUs that the cluster's autoscaler has yet to launch.
    `storage`: where the two studies live (a folder or a storage URI; default `out`): on a
    cluster of several nodes, one that every node reaches. The run folder keeps a copy of each
    study's summary (configuration, results, progress plot), which the outer model's stage, the
    refit and the audition page read. `wandb_project`: log both studies' trials to W&B there.
    `stage_tasks`, `stage_gpus`, `stage_cpus`: where the single-model stages run
    (`StagePlacement.for_trials`: by default as Ray tasks holding one GPU each when the studies'
    trials use GPUs, else in this process). Where they run is no setting of the run: a run may
    continue with another placement.
    """
    from samplegen.dsp.config import REPRESENTATIONS
    from samplegen.errors import SamplegenError
    from samplegen.models.registry import takes_representation

    # Before anything runs: the outer study would find out only after the dataset stage.
    if representation not in REPRESENTATIONS:
        raise SamplegenError(
            f"--repr: {representation!r} is not one of {', '.join(REPRESENTATIONS)}"
        )
    wants = takes_representation(preset.outer.model)
    if wants is not None and wants != representation:
        raise SamplegenError(
            f"--repr {representation}: the outer model {preset.outer.model} (preset "
            f"{preset.name!r}) takes {wants} samples; run with --repr {wants}, or search a "
            f"{representation} model with --outer-space"
        )
    run_dir = Path(out).expanduser().absolute()
    if storage is not None:
        from samplegen.platform.downloads import is_uri, location_fs

        location_fs(storage)  # a URI pyarrow cannot open fails before anything runs
        if not is_uri(storage):
            storage = str(Path(storage).expanduser().absolute())
            # Made now, or refused: the outer study would find out only after the dataset stage.
            _make_folder(Path(storage), "--storage")
    if address:
        from samplegen.platform.ray_address import check_reachable

        check_reachable(address, "--address")  # before anything is made, not at the first stage
    new_run = not (run_dir / "run.json").exists()
    if new_run:
        from samplegen.platform.sources import check_source

        # A new run records its source as a setting: one mistyped would hold the folder to it.
        check_source(source)
    settings = {
        "preset": preset.to_dict(),
        "source": source,
        "representation": representation,
        "seed": seed,
        **({"storage": storage} if storage else {}),
    }
    placement = StagePlacement.for_trials(
        preset.cpus_per_trial,
        preset.gpus_per_trial,
        tasks=stage_tasks,
        gpus=stage_gpus,
        cpus=stage_cpus,
    )
    run = _Stages(
        preset,
        run_dir,
        source,
        representation,
        seed,
        address,
        autoscaling,
        storage,
        wandb_project,
        echo,
        RaySession(address, num_cpus, echo=echo),
        placement,
    )
    if new_run:
        # Before run.json records the settings: a refused run must leave nothing that holds a
        # corrected command to them. (A resumed run checks in its dataset stage, if that is left.)
        run.check_cluster()
    _make_folder(run_dir, "--out")
    stages = StageRunner(run_dir, settings, log=echo)
    if placement.tasks:
        echo(f"the single-model stages run {placement.describe()}")
    dataset = Path(stages.run("dataset", run.dataset)["dataset"])
    outer_study = stages.run("outer_study", lambda: run.outer_study(dataset))
    best_outer = outer_study["best_config"]
    outer_model = stages.run(
        "outer_model", run.single("outer_model", lambda s: s.outer_model(best_outer, dataset))
    )["model"]
    vae_study = stages.run("vae_study", lambda: run.vae_study(outer_model, dataset))
    combined = selected = vae_study["combined"]
    finetuned = stages.run(
        "finetune", run.single("finetune", lambda s: s.finetune(combined, dataset))
    )
    if preset.refit:
        refit = stages.run(
            "refit",
            run.single("refit", lambda s: s.refit(outer_model, dataset, finetuned, selected)),
        )
        combined = refit["combined"]
    evaluation = stages.run(
        "evaluation",
        run.single("evaluation", lambda s: s.evaluation(outer_model, combined, dataset)),
    )
    stages.run("sounds", run.single("sounds", lambda s: s.sounds(combined, dataset)))
    page = stages.run("report", run.report)["page"]
    from samplegen.platform.evaluation.summary import interval_text

    loss = evaluation.get("loss") or {}
    interval = interval_text(loss.get("rms_percent_interval"))
    echo(
        f"done: {run_dir}\n"
        f"  dataset        {dataset}\n"
        f"  outer study    {outer_study['study']}\n"
        f"  outer model    {outer_model}\n"
        f"  combined model {combined}\n"
        + (f"  selected model {selected} (before the refit)\n" if preset.refit else "")
        + f"  test metrics   {evaluation['metrics']} (RMS {loss.get('rms_percent', float('nan')):.3f}%"
        f"{', interval ' + interval if interval else ''})\n"
        f"  sounds         {run_dir / 'sounds'}\n"
        f"  audition page  {page}"
    )
    return {
        "run_dir": str(run_dir),
        "dataset": str(dataset),
        "outer_model": outer_model,
        "combined_model": combined,
        "selected_model": selected,
        "metrics": evaluation["metrics"],
        "page": page,
    }


@dataclasses.dataclass(frozen=True)
class _Stages:
    """The main job's stages, each returning the outputs its marker keeps (see run_pipeline)."""

    preset: Preset
    run_dir: Path
    source: str
    representation: str
    seed: int
    address: str | None
    autoscaling: bool
    storage: str | None
    wandb_project: str | None
    echo: Callable[[str], None]
    ray: RaySession
    placement: StagePlacement = StagePlacement()
    # The device evaluation runs on: a stage task holding a GPU uses it (trial_device).
    device: str = "cpu"

    def single(
        self, name: str, call: Callable[[_Stages], dict[str, Any]]
    ) -> Callable[[], dict[str, Any]]:
        """Stage `name` as `call(stages)`: in this process, or in a Ray task (`placement`), whose
        outputs then record where it ran (`ran_on`)."""
        if not self.placement.tasks:
            return lambda: call(self)
        # What the task gets: no driver's echo or Ray session; it runs the stage in itself. (Not
        # `print` either: a driver whose Ray forwards workers' output has replaced it, and the
        # builtin it was no longer pickles.)
        shipped = dataclasses.replace(
            self, echo=_unsaid, ray=RaySession(None, None, echo=_unsaid), placement=StagePlacement()
        )
        gpus = self.placement.gpus

        def work(say: Callable[[str], None]) -> dict[str, Any]:
            from samplegen.platform.resources import trial_device

            here = dataclasses.replace(
                shipped, echo=say, ray=RaySession(None, None, echo=say), device=trial_device(gpus)
            )
            return call(here)

        def stage() -> dict[str, Any]:
            outputs, where = self.in_task(name, work)
            return {**outputs, "ran_on": where}

        return stage

    def in_task(
        self, name: str, work: Callable[[Callable[[str], None]], T]
    ) -> tuple[T, dict[str, Any]]:
        """`work(echo)` run as a Ray task of this run's placement, named `name`; returns the
        work's result and where it ran, and says where the task started."""
        from samplegen.platform.stage_tasks import check_placement, run_in_task

        self.ray.up()
        check_placement(self.placement, autoscaling=self.autoscaling)
        run_dir, threads = self.run_dir, max(1, math.floor(self.placement.cpus))

        def body(say: Callable[[str], None]) -> T:
            import ray
            import torch

            from samplegen.errors import SamplegenError

            if not run_dir.is_dir():
                raise SamplegenError(
                    f"{run_dir}: the run folder is not on node "
                    f"{ray.util.get_node_ip_address()}, where the {name} stage runs as a Ray "
                    "task; put --out on a folder every node mounts (cluster.yaml: "
                    "/mnt/shared), or run the stages in this process with --no-stage-tasks"
                )
            # As many threads as the CPUs the task holds. Ray's OMP_NUM_THREADS reaches only a
            # worker's first import of torch, and workers are reused across tasks.
            torch.set_num_threads(threads)
            return work(say)

        def started(where: dict[str, Any]) -> None:
            gpu = ",".join(where["gpu_ids"]) or "none"
            self.echo(
                f"[{name}] in a Ray task on node {where['ip']} (pid {where['pid']}, GPU {gpu})"
            )

        return run_in_task(body, self.placement, echo=self.echo, name=name, on_start=started)

    def _study(self, which: str, data: str) -> Any:
        return _study_config(
            self.preset,
            which,
            self.run_dir,
            data,
            self.seed,
            self.address,
            self.autoscaling,
            self.storage,
            self.wandb_project,
        )

    def check_cluster(self) -> None:
        """Start Ray, and refuse a cluster on which no trial or stage task of the run could run."""
        from samplegen.platform.resources import TrialResources, check_cluster
        from samplegen.platform.stage_tasks import check_placement

        self.ray.up()
        check_cluster(
            TrialResources(self.preset.cpus_per_trial, self.preset.gpus_per_trial),
            autoscaling=self.autoscaling,
        )
        check_placement(self.placement, autoscaling=self.autoscaling)

    def dataset(self) -> dict[str, Any]:
        """The dataset of the run's source (Ray Data)."""
        from samplegen.dsp.config import CodecConfig
        from samplegen.platform.datasets import VARIATION_SOURCES, prepare_dataset

        preset = self.preset
        variations = preset.variations and self.source in VARIATION_SOURCES
        if preset.variations and not variations:
            self.echo(
                f"[dataset] no variation presets: source {self.source} is not the FluidR3 library"
            )
        # A cluster where no trial or stage task could ever run (the full preset's GPUs on a CPU
        # machine) is refused before the dataset is rendered and mixed, not after.
        self.check_cluster()
        path = prepare_dataset(
            self.source,
            self.run_dir / "dataset",
            CodecConfig(representation=self.representation),
            notes=preset.notes,
            augment_mixes=preset.augment_mixes,
            seed=self.seed,
            echo=self.echo,
            variations=variations,
        )
        return {"dataset": str(path)}

    def outer_study(self, dataset: Path) -> dict[str, Any]:
        """The outer auto-encoder's study; its summary copied into the run folder."""
        from samplegen.platform.study import plot_study, run_study

        self.ray.up()
        config = self._study("outer", str(dataset))
        result = run_study(config, resume=_started(config), echo=self.echo)
        _finished(result, "outer study")
        plot_study(result.path)
        summary = _copy_summary(config, self.run_dir)
        return {"study": result.path, "best_config": str(summary / "best_config.json")}

    def outer_model(self, best_config: str, dataset: Path) -> dict[str, Any]:
        """The study's best configuration trained longer."""
        from samplegen.platform.chain import check_inner_fits
        from samplegen.platform.longrun import train_config

        # Before the outer model's long training: a VAE space that cannot fit this outer code
        # would otherwise be found out only when every VAE trial is rejected.
        vae_config = _study_config(self.preset, "vae", self.run_dir, "", self.seed, self.address)
        check_inner_fits(vae_config, _outer_code(best_config, dataset), self.echo)
        path = train_config(
            best_config,
            dataset,
            self.run_dir / "models" / "outer",
            epochs=self.preset.outer_final_epochs,
            resume=True,
            echo=self.echo,
        )
        return {"model": str(path)}

    def vae_study(self, outer_model: str, dataset: Path) -> dict[str, Any]:
        """The chained VAE study over the outer model's encodings, and its combined model."""
        from samplegen.errors import SamplegenError
        from samplegen.platform.chain import run_chain
        from samplegen.platform.study import plot_study

        self.ray.up()
        preset = self.preset
        config = self._study("vae", "")
        result = run_chain(
            config,
            outer_model,
            data=str(dataset),
            encoded=str(self.run_dir / f"{config.name}-encoded"),
            combined_out=self.run_dir / "models" / ("selected" if preset.refit else "combined"),
            resume=_started(config),
            refine_steps=preset.refine_steps,
            rescore=preset.rescore_trials,
            eq=dataclasses.replace(preset.inner_eq, seed=self.seed),
            echo=self.echo,
            score_in=(
                (lambda work: self.in_task("vae_study rescoring", work)[0])
                if self.placement.tasks
                else None
            ),
        )
        _finished(result.study, "VAE study")
        if result.combined_model is None:
            # Recorded as done, the stage would hand every later stage the path "None".
            raise SamplegenError(
                f"VAE study: its best trial kept no checkpoint, so no combined model was "
                f"exported (see {result.study.path}/results.csv)"
            )
        plot_study(result.study.path)
        _copy_summary(config, self.run_dir)
        return {"study": result.study.path, "combined": str(result.combined_model)}

    def finetune(self, combined: str, dataset: Path) -> dict[str, Any]:
        """The combined model fine-tuned end to end, kept only if validation improves."""
        from samplegen.platform.finetune import FinetuneSettings, finetune_combined

        # No stage from here on uses Ray in this process but the refit, which starts it again; a
        # run resumed past this stage never started it. (In a stage task, this session is the
        # task's own, which started nothing: the driver's Ray stays up for the tasks after.)
        self.ray.down()
        if not self.preset.finetune_epochs:
            return {"kept": "chained", "skipped": True}
        record = finetune_combined(
            combined,
            dataset,
            combined,
            settings=FinetuneSettings(
                epochs=self.preset.finetune_epochs,
                seed=self.seed,
                eq=dataclasses.replace(self.preset.inner_eq, seed=self.seed),
            ),
            echo=self.echo,
        )
        return {"kept": record["kept"]}

    def refit(
        self, outer_model: str, dataset: Path, finetuned: dict[str, Any], selected: str
    ) -> dict[str, Any]:
        """The selected VAE trained again on the training and validation notes."""
        from samplegen.platform.finetune import FinetuneSettings
        from samplegen.platform.refit import refit_chain

        self.ray.up()  # the refit's encodings are a Ray Data job
        eq = dataclasses.replace(self.preset.inner_eq, seed=self.seed)
        tune = (
            FinetuneSettings(epochs=self.preset.finetune_epochs, seed=self.seed, eq=eq)
            if finetuned.get("kept") == "fine-tuned"
            else None
        )
        path = refit_chain(
            # The study's summary in the run folder: the refit reads its best_config.json.
            self.run_dir / "vae_study",
            outer_model,
            dataset,
            self.run_dir / "models" / "combined",
            work=self.run_dir,
            refine_steps=self.preset.refine_steps,
            eq=eq,
            finetune=tune,
            echo=self.echo,
        )
        self.ray.down()
        return {"combined": str(path), "selected": selected}

    def evaluation(self, outer_model: str, combined: str, dataset: Path) -> dict[str, Any]:
        """Both models evaluated on the test split (an evaluation already finished is kept)."""
        from samplegen.platform.evaluation import evaluate_model

        def note(message: str) -> None:
            self.echo(f"[evaluation] {message}")

        metrics: dict[str, Any] = {}
        for model, out in ((outer_model, "evaluation/outer"), (combined, "evaluation")):
            metrics = evaluate_model(
                model,
                dataset,
                out=self.run_dir / out,
                reuse=True,
                echo=note,
                split="test",
                griffin_lim_iters=self.preset.griffin_lim_iters,
                seed=self.seed,
                device=self.device,
            )
        return {
            "metrics": str(self.run_dir / "evaluation" / "metrics.json"),
            "loss": metrics["loss"],
        }

    def sounds(self, combined: str, dataset: Path) -> dict[str, Any]:
        """Example sounds of the combined model from test notes."""
        from samplegen.generate.examples import generate_examples
        from samplegen.generate.latent import load_space
        from samplegen.generate.render import RenderSettings

        written = generate_examples(
            load_space(combined),
            _example_inputs(dataset, self.preset.examples),
            self.run_dir / "sounds",
            render=RenderSettings(griffin_lim_iters=self.preset.griffin_lim_iters, seed=self.seed),
            model_path=combined,
        )
        return {kind: str(path) for kind, path in written.items()}

    def report(self) -> dict[str, Any]:
        """The audition page."""
        from samplegen.generate.page import build_page

        return {"page": str(build_page(self.run_dir))}


class RaySession:
    """Ray for the stages that use it (dataset, the two studies), connected or started on demand.

    Why: run in this process (no stage tasks), the later stages (fine-tuning, evaluation, sounds)
    are torch work here, so a run resumed after its studies does not start Ray at all, and a local
    instance this run started is shut down before them, which frees its object store and idle
    workers. (It was not shown to speed them up on the 2-core CPU: benchmarks/RESULTS.md,
    "Fine-tuning on outer encodings computed once".) A Ray that was already initialised (a test
    session's) is left as it is, and a cluster that `up` connected to keeps running:
    `ray.shutdown` only disconnects from it. With stage tasks, the driver's Ray stays up for them.
    """

    def __init__(
        self, address: str | None, num_cpus: int | None, echo: Callable[[str], None] = print
    ) -> None:
        self.address, self.num_cpus, self.echo = address, num_cpus, echo
        self.started = False

    def up(self) -> None:
        """Connect to Ray, or start it locally, unless it is already up."""
        from samplegen.platform.study import ensure_ray

        self.started = ensure_ray(address=self.address, num_cpus=self.num_cpus) or self.started

    def down(self) -> None:
        """Shut down the local Ray instance that `up` started, if any."""
        if self.started:
            import ray

            ray.shutdown()
            self.started = False
            if self.address or os.environ.get("RAY_ADDRESS"):  # how ensure_ray connected
                self.echo("disconnected from the Ray cluster: the stages left run in this process")
            else:
                self.echo("local Ray instance shut down: the stages left run in this process")


def _unsaid(line: str) -> None:
    """An echo that says nothing (what a stage task is given until its own)."""


def _finished(result: Any, what: str) -> None:
    from samplegen.errors import Interrupted, SamplegenError

    if result.interrupted:
        raise Interrupted(f"{what} was interrupted; run the same command again to continue it")
    if result.best is None:
        raise SamplegenError(
            f"{what}: no trial produced a usable model{_why_no_trial(result.rows)} "
            f"(see {result.path}/results.csv)"
        )


def _why_no_trial(rows: list[dict[str, Any]]) -> str:
    """How the trials ended and the first reason given, for the error of a study that made
    nothing (a space whose models all exceed the parameter limit, say)."""
    statuses = Counter(str(r.get("status")) for r in rows)
    reasons = [str(r["reason"]) for r in rows if r.get("reason")]
    if not statuses:
        return ""
    ended = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
    return f": {ended}" + (f"; the first says: {reasons[0]}" if reasons else "")
