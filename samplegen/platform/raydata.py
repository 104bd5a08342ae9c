"""Ray Data settings samplegen uses for every pipeline."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator


def quiet_ray_data() -> None:
    """Keep Ray Data's per-execution INFO lines (plans, progress) out of the terminal.

    Warnings and errors still show; the full logs stay in Ray's session folder.
    """
    import ray.data

    ray.data.DataContext.get_current().print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


@contextlib.contextmanager
def blocks_of_at_most(nbytes: int) -> Iterator[None]:
    """Within it, Ray Data cuts the data it reads and makes into blocks of at most `nbytes`.

    A map stage hands its results back a block at a time, so smaller blocks come back sooner
    (Ray's default, 128 MiB, is about 370 STFT notes).
    """
    import ray.data

    context = ray.data.DataContext.get_current()
    before = context.target_max_block_size
    context.target_max_block_size = nbytes
    try:
        yield
    finally:
        context.target_max_block_size = before
