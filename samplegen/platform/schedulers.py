"""Trial schedulers: FIFO, ASHA, the early cut-off rule, and ASHA combined with the cut-off.

The cut-off rule (from the original project, made asynchronous): a trial whose metric at epoch e is
more than `factor` times the best value any trial has reported at epoch e is stopped, from epoch
`grace` on. The best-at-epoch table grows as results arrive, so trials running in parallel at
different speeds are compared epoch by epoch, not by arrival order.

Tune does not save a scheduler with the study: a resumed driver gets the one pickled when the
study began, empty. So the cut-off and ASHA here read, on their first event, the epochs earlier
drivers received (the study's epoch log) and take them in as if they had seen them; without
that, a resumed study compared trials only with results that arrived after the resume.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, cast

from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from samplegen.errors import SamplegenError

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController

    from samplegen.platform.spaces import SearchSpace

SCHEDULERS: tuple[str, ...] = ("fifo", "asha", "cutoff", "asha+cutoff")
TIME_ATTR = "epoch"


class _RecallsEpochLogs:
    """Takes in the study's epoch log on a driver's first trial event (see the module's text)."""

    _recalled = False
    _metric: str | None  # the scheduler's own (ASHA's and the cut-off's attribute)

    def _recall(self, trial: Trial) -> None:
        if self._recalled:
            return
        self._recalled = True
        storage = getattr(trial, "storage", None)
        if storage is None:  # a trial built outside a Tune run
            return
        from samplegen.platform.epoch_log import read_epoch_logs

        metric = self._metric
        if metric is None:
            return
        logs = read_epoch_logs(storage.storage_filesystem, storage.experiment_fs_path)
        for trial_id, rows in sorted(logs.items()):
            for row in rows:
                epoch, value = row.get(TIME_ATTR), row.get(metric)
                if isinstance(epoch, int) and isinstance(value, int | float):
                    self._take_in(trial_id, epoch, float(value))

    def _take_in(self, trial_id: str, epoch: int, value: float) -> None:
        raise NotImplementedError


class RecallingASHA(_RecallsEpochLogs, ASHAScheduler):
    """Ray's ASHA, which after a resume still knows the rung values reported before it."""

    def _take_in(self, trial_id: str, epoch: int, value: float) -> None:
        if len(self._brackets) != 1 or not math.isfinite(value) or self._metric_op is None:
            return  # with several brackets, which one a trial was in is not recorded
        # A trial's value at a rung is its first result at or past the rung's epoch; the
        # bracket reads only the id of the trial.
        trial = cast(Trial, _TrialId(trial_id))
        self._brackets[0].on_result(trial, epoch, self._metric_op * value)

    def on_trial_add(self, tune_controller: TuneController, trial: Trial) -> None:
        """Recall the study's epochs first, then add as ASHA does."""
        self._recall(trial)
        super().on_trial_add(tune_controller, trial)

    def on_trial_result(
        self, tune_controller: TuneController, trial: Trial, result: dict[str, Any]
    ) -> str:
        """Recall the study's epochs first, then decide as ASHA does."""
        self._recall(trial)
        return super().on_trial_result(tune_controller, trial, result)


@dataclasses.dataclass(frozen=True)
class _TrialId:
    trial_id: str


class CutoffScheduler(_RecallsEpochLogs, FIFOScheduler):
    """Stops a trial whose metric at an epoch is more than `factor` x the best at that epoch.

    `mode="min"` compares value > factor * best; `mode="max"` compares value < best / factor
    (both assume a positive metric). Non-finite values are ignored here: the trainable ends such
    trials itself with a recorded reason.
    """

    def __init__(
        self,
        factor: float = 3.0,
        grace: int = 20,
        metric: str | None = None,
        mode: str | None = None,
        time_attr: str = TIME_ATTR,
    ) -> None:
        super().__init__()
        if factor <= 1:
            raise SamplegenError(f"cutoff factor: must be > 1, got {factor}")
        if grace < 1:
            raise SamplegenError(f"cutoff grace: must be >= 1 epoch, got {grace}")
        self.factor = float(factor)
        self.grace = int(grace)
        self._metric = metric
        self._mode = mode
        self.time_attr = time_attr
        self.best_at: dict[int, float] = {}
        self.stopped: dict[str, str] = {}

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """Take the study's metric and mode unless given at construction."""
        if metric and not self._metric:
            self._metric = metric
        if mode and not self._mode:
            self._mode = mode
        return True

    def _better(self, a: float, b: float) -> bool:
        return a > b if self._mode == "max" else a < b

    def _take_in(self, trial_id: str, epoch: int, value: float) -> None:
        self.record(epoch, value)

    def record(self, epoch: int, value: float) -> float:
        """Take `value` at `epoch` into the best-at-epoch table; the best there now."""
        best = self.best_at.get(epoch)
        if math.isfinite(value) and (best is None or self._better(value, best)):
            self.best_at[epoch] = best = value
        return value if best is None else best

    def decide(self, trial_id: str, epoch: int, value: float) -> str:
        """Record `value` at `epoch` and return CONTINUE or STOP (usable without Ray objects)."""
        if not math.isfinite(value):
            return TrialScheduler.CONTINUE
        best = self.record(epoch, value)
        if epoch < self.grace:
            return TrialScheduler.CONTINUE
        cut = value * self.factor < best if self._mode == "max" else value > self.factor * best
        if cut:
            self.stopped[trial_id] = (
                f"cut off at epoch {epoch}: {self._metric} {value:.4g} is more than "
                f"{self.factor:g}x the best at that epoch ({best:.4g})"
            )
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def on_trial_result(
        self, tune_controller: TuneController, trial: Trial, result: dict[str, Any]
    ) -> str:
        """Stop the trial if it is more than `factor` x worse than the best at this epoch."""
        if self._metric is None:
            raise SamplegenError("cutoff scheduler: no metric set (pass metric= or a TuneConfig)")
        self._recall(trial)
        if self.time_attr not in result or self._metric not in result:
            return TrialScheduler.CONTINUE
        return self.decide(trial.trial_id, int(result[self.time_attr]), float(result[self._metric]))

    def on_trial_add(self, tune_controller: TuneController, trial: Trial) -> None:
        """Recall the study's epochs on a driver's first trial."""
        self._recall(trial)
        super().on_trial_add(tune_controller, trial)

    def debug_string(self) -> str:
        """One line for Tune's status output."""
        return (
            f"Using early cut-off ({self.factor:g}x best at epoch, grace {self.grace}): "
            f"{len(self.stopped)} stopped"
        )


class CombinedScheduler(TrialScheduler):
    """Runs several schedulers side by side: a trial stops when any of them says stop.

    The first scheduler chooses which trial runs next (ASHA and the cut-off both run FIFO order).
    """

    def __init__(self, *schedulers: TrialScheduler) -> None:
        super().__init__()
        if not schedulers:
            raise SamplegenError("combined scheduler: needs at least one scheduler")
        self.schedulers = schedulers

    @property
    def metric(self) -> str | None:
        """The first scheduler's metric."""
        return self.schedulers[0].metric

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """Pass metric and mode to every scheduler."""
        ok = [s.set_search_properties(metric, mode, **spec) for s in self.schedulers]
        return all(ok)

    def on_trial_add(self, tune_controller: TuneController, trial: Trial) -> None:
        """Register the trial with every scheduler."""
        for s in self.schedulers:
            s.on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller: TuneController, trial: Trial) -> None:
        """Tell every scheduler."""
        for s in self.schedulers:
            s.on_trial_error(tune_controller, trial)

    def on_trial_result(
        self, tune_controller: TuneController, trial: Trial, result: dict[str, Any]
    ) -> str:
        """STOP if any scheduler says STOP, else PAUSE if any pauses, else CONTINUE."""
        actions = [s.on_trial_result(tune_controller, trial, result) for s in self.schedulers]
        for action in (TrialScheduler.STOP, TrialScheduler.PAUSE, TrialScheduler.NOOP):
            if action in actions:
                return action
        return TrialScheduler.CONTINUE

    def on_trial_complete(
        self, tune_controller: TuneController, trial: Trial, result: dict[str, Any]
    ) -> None:
        """Tell every scheduler."""
        for s in self.schedulers:
            s.on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: TuneController, trial: Trial) -> None:
        """Tell every scheduler."""
        for s in self.schedulers:
            s.on_trial_remove(tune_controller, trial)

    def choose_trial_to_run(self, tune_controller: TuneController) -> Trial | None:
        """The first scheduler's choice."""
        return self.schedulers[0].choose_trial_to_run(tune_controller)

    def debug_string(self) -> str:
        """Every scheduler's line."""
        return "\n".join(s.debug_string() for s in self.schedulers)


def build_scheduler(
    name: str,
    *,
    max_epochs: int,
    cutoff_factor: float = 3.0,
    cutoff_grace: int = 20,
    asha_grace: int = 1,
    asha_reduction: float = 2.0,
) -> TrialScheduler:
    """A scheduler by name (`fifo`, `asha`, `cutoff`, `asha+cutoff`); metric/mode come from TuneConfig."""

    def asha() -> ASHAScheduler:
        grace = max(1, min(asha_grace, max_epochs))
        return RecallingASHA(
            time_attr=TIME_ATTR,
            max_t=max_epochs,
            grace_period=grace,
            reduction_factor=asha_reduction,
        )

    if name == "fifo":
        return FIFOScheduler()
    if name == "asha":
        return asha()
    if name == "cutoff":
        return CutoffScheduler(factor=cutoff_factor, grace=cutoff_grace)
    if name in ("asha+cutoff", "cutoff+asha"):
        return CombinedScheduler(asha(), CutoffScheduler(factor=cutoff_factor, grace=cutoff_grace))
    raise SamplegenError(f"--scheduler: {name!r} is not one of {', '.join(SCHEDULERS)}")


def warmup_end(space: SearchSpace, epochs: int) -> int:
    """The epoch after which no KL warm-up `space` can draw still changes the loss, within a study
    of `epochs` epochs (0: the space draws none).

    Reads the model's `warmup` and `warmup_epochs` hyper-parameters (samplegen.models.vae), from
    the space or, where it leaves one out, the model's default. A cyclical warm-up never settles:
    its weight falls back to 0 at the start of every period, to the end.
    """
    from samplegen.models.registry import hparams_class

    defaults: dict[str, Any] = {
        f.name: f.default for f in dataclasses.fields(hparams_class(space.model)) if f.init
    }
    params = {p.name: p for p in space.params}
    kind, length = params.get("warmup"), params.get("warmup_epochs")
    kinds = set(kind.values) if kind is not None else {defaults.get("warmup", "none")}
    if kinds <= {"none"}:
        return 0
    if "cyclical" in kinds:
        return epochs
    if length is None:
        longest = int(defaults["warmup_epochs"])
    elif length.type in ("choice", "const"):
        longest = max(int(v) for v in length.values)
    else:
        longest = int(length.bounds()[1])
    return min(longest, epochs)


def check_asha_grace(
    scheduler: str,
    space: SearchSpace,
    *,
    asha_grace: int,
    max_epochs: int,
    fixed_by: str | None = None,
) -> None:
    """SamplegenError when ASHA's first rung would fall inside a KL warm-up the space can draw.

    In its warm-up a VAE's loss is not yet the one it ends with (less KL pressure, so a better
    reconstruction), and trials that drew different warm-up lengths are at different points of
    it: a rung there judges them by their schedules, not their settings. `fixed_by`: what fixed
    `asha_grace` when it is not the `--asha-grace` flag (a preset), so only the space can change.
    """
    if "asha" not in scheduler:
        return
    end = warmup_end(space, max_epochs)
    first_rung = max(1, min(asha_grace, max_epochs))
    if first_rung < end:
        where = f" ({space.source})" if space.source else ""
        remedy = (
            f"Set --asha-grace to at least {end}, narrow warmup_epochs (a cyclical warm-up never "
            "settles), or use another scheduler"
            if fixed_by is None
            else f"Keep warmup_epochs at most {first_rung} (a cyclical warm-up never settles)"
        )
        raise SamplegenError(
            f"{fixed_by or '--asha-grace'}: ASHA's first rung is epoch {first_rung}, but the "
            f"search space{where} "
            f"draws KL warm-ups (warmup, warmup_epochs) that last until epoch {end}; ASHA would "
            f"compare trials before their losses settle. {remedy}"
        )
