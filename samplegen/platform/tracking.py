"""Optional Weights & Biases logging for studies, through Ray's WandbLoggerCallback.

A study never needs W&B: a missing package, a missing key (online mode) or a failing setup turns
into one warning and the study goes on. Without WANDB_API_KEY the runs are written offline
(`wandb sync` uploads them later). The key is read only from the environment by wandb itself and
is never written into configs or results.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from samplegen.platform.trainable import EXAMPLE_PNG, EXAMPLE_WAV

# Result keys not worth a W&B chart.
EXCLUDES: tuple[str, ...] = ("status", "reason", "device", "trial_id", "hostname", "node_ip", "pid")


def wandb_mode() -> str:
    """`WANDB_MODE` if set, else online with an API key in the environment, else offline."""
    mode = os.environ.get("WANDB_MODE")
    if mode:
        return mode
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def _callback_class() -> type:
    from ray.air.integrations.wandb import WandbLoggerCallback, _get_wandb_project, _QueueItem

    class StudyWandbCallback(WandbLoggerCallback):
        """WandbLoggerCallback that works offline without a key and logs each trial's example."""

        def setup(self, *args: Any, **kwargs: Any) -> None:
            if self.kwargs.get("mode") in ("offline", "disabled"):
                # Ray insists on an API key even for offline runs, which need none.
                self.project = _get_wandb_project(self.project)
                return
            super().setup(*args, **kwargs)

        def log_trial_end(self, trial: Any, failed: bool = False) -> None:
            try:
                self._log_example(trial)
            except Exception as exc:  # an example is a nicety; never fail the study for it
                print(f"warning: W&B example for trial {trial.trial_id} not logged ({exc})")
            super().log_trial_end(trial, failed)

        def _log_example(self, trial: Any) -> None:
            import wandb

            checkpoint = getattr(trial, "checkpoint", None)
            if checkpoint is None or trial not in self._trial_queues:
                return
            folder = Path(checkpoint.path)
            if not (folder / EXAMPLE_PNG).exists():
                return  # remote storage or no example written: only local examples are logged
            item: dict[str, Any] = {"example_spectrogram": wandb.Image(str(folder / EXAMPLE_PNG))}
            if (folder / EXAMPLE_WAV).exists():
                item["example_audio"] = wandb.Audio(str(folder / EXAMPLE_WAV))
            self._trial_queues[trial].put((_QueueItem.RESULT, item))

    return StudyWandbCallback


def wandb_callback(
    project: str,
    group: str | None,
    *,
    directory: str | None = None,
    echo: Callable[[str], None] = print,
) -> Any | None:
    """The study's W&B callback, or None (with a warning) when W&B cannot be used."""
    try:
        import wandb  # noqa: F401

        cls = _callback_class()
    except ImportError as exc:
        echo(f"warning: --wandb ignored: W&B is not installed ({exc}); the study goes on")
        return None
    mode = wandb_mode()
    if mode == "online" and not os.environ.get("WANDB_API_KEY"):
        echo("warning: WANDB_MODE=online but no WANDB_API_KEY: logging offline instead")
        mode = "offline"
    elif mode == "offline" and not os.environ.get("WANDB_MODE"):
        # Chosen for the user (no key): say so, or they wait for a dashboard that never fills.
        where = f" under {directory}" if directory else ""
        echo(
            f"W&B: no WANDB_API_KEY, so runs are logged offline{where} (`wandb sync` uploads them)"
        )
    kwargs: dict[str, Any] = {"mode": mode}
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        kwargs["dir"] = directory
    try:
        return cls(
            project=project, group=group, excludes=list(EXCLUDES), log_config=False, **kwargs
        )
    except Exception as exc:
        echo(f"warning: --wandb ignored: {exc}; the study goes on")
        return None
