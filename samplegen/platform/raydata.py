"""Ray Data settings samplegen uses for every pipeline."""

from __future__ import annotations

import logging


def quiet_ray_data() -> None:
    """Keep Ray Data's per-execution INFO lines (plans, progress) out of the terminal.

    Warnings and errors still show; the full logs stay in Ray's session folder.
    """
    import ray.data

    ray.data.DataContext.get_current().print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
