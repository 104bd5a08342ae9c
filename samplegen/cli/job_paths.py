"""Output paths given to a command that runs as a Ray job (`ray job submit --working-dir ...`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from samplegen.errors import SamplegenError

# Set by Ray's job supervisor in the driver's environment: the job's runtime_env, among others.
JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def job_working_dir() -> str | None:
    """The working_dir this process was submitted with as a Ray job, else None."""
    raw = os.environ.get(JOB_CONFIG_ENV)
    if not raw:
        return None
    try:
        runtime_env = json.loads(raw).get("runtime_env") or {}
    except (json.JSONDecodeError, AttributeError):
        return None
    working_dir = runtime_env.get("working_dir") if isinstance(runtime_env, dict) else None
    return str(working_dir) if working_dir else None


def refuse_relative_outputs(*options: tuple[str, str | None]) -> None:
    """Refuse relative output paths (`(option, value)` pairs) inside a job with a working_dir.

    There the current folder is Ray's unpacked copy of the upload: on one node, shared by every job
    of the same content, and deleted with the session. A study or run written there reports
    success and is lost, so each output must be absolute (or a storage URI)."""
    if job_working_dir() is None:
        return
    for option, value in options:
        if value and "://" not in value and not Path(value).expanduser().is_absolute():
            raise SamplegenError(
                f"{option} {value}: inside a Ray job a relative path lands in Ray's temporary "
                f"copy of the uploaded working directory ({Path.cwd()}), on one node and deleted "
                "with the session; give an absolute path on storage every node reaches (cluster.yaml "
                "mounts /mnt/shared), or a storage URI"
            )
