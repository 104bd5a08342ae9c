"""Keeps a retried trial's Tune logs (result.json, progress.csv) whole.

Tune's JSON and CSV loggers write a trial's logs on the driver, into a staging folder that
reaches the study folder only with the next experiment snapshot (every 10 s or more). When a
trial fails and Tune retries it from a checkpoint, those loggers first copy the study folder's
older copy back over the staging one, so every result reported since the last snapshot is lost
from both: a final result reported just before a crash, or the epochs of a long trial since the
snapshot. Uploading the staging logs as soon as Tune decides to retry, before the retry starts,
leaves nothing for that copy to lose. (The study's own epoch log, `epoch_log.py`, never had the
problem; these are the files a Tune user reads.)
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from samplegen.platform.downloads import write_file

TRIAL_LOG_FILES = ("result.json", "progress.csv")


def upload_trial_logs(local_dir: str, fs: Any, remote_dir: str) -> list[str]:
    """Copy each of `TRIAL_LOG_FILES` that `local_dir` holds to `remote_dir` on the pyarrow
    filesystem `fs`, replacing what is there; returns the names copied."""
    import pyarrow.fs as pafs

    copied = []
    for name in TRIAL_LOG_FILES:
        local = os.path.join(local_dir, name)
        if not os.path.isfile(local):
            continue
        remote = f"{remote_dir}/{name}"
        if os.path.realpath(local) == os.path.realpath(remote) and isinstance(
            fs, pafs.LocalFileSystem
        ):
            continue  # the staging folder is the study folder: nothing to keep
        # Whole or not at all: Tune's retry reads this copy back at once.
        write_file(fs, remote, Path(local).read_bytes())
        copied.append(name)
    return copied


def trial_log_keeper_class() -> type:
    """The Tune callback that uploads a failed trial's logs before its retry (built on demand:
    Ray is imported only here)."""
    from ray.tune import Callback

    class TrialLogKeeper(Callback):
        """Uploads a trial's staging logs when Tune is about to retry it."""

        def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            storage = trial.storage
            try:
                upload_trial_logs(
                    trial.local_path, storage.storage_filesystem, storage.trial_fs_path
                )
            except Exception as exc:  # a log that did not upload must not stop the study
                logging.getLogger(__name__).warning(
                    "trial %s: could not upload its logs before its retry (%s); Tune may drop "
                    "the results it reported since its last snapshot",
                    trial.trial_id,
                    exc,
                )

    return TrialLogKeeper
