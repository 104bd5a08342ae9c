"""SIGTERM handled as Ctrl-C, for every command.

SIGTERM is what `ray job stop`, Kubernetes and most batch schedulers send before they kill. By
default it ends a Python process at once, and once Ray is initialised its handlers end the driver
with a stack dump, so a command stopped that way saved nothing and said nothing. Within
`terms_as_ctrl_c` the first SIGTERM is delivered as SIGINT instead: each stage then stops as it
does on Ctrl-C (a study through Tune's graceful stop, training after saving its last whole epoch)
and the command says how to continue. A second SIGTERM ends the process at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


def term_as_ctrl_c(signum: int, frame: FrameType | None) -> None:
    """A SIGTERM handler: deliver this SIGTERM as SIGINT, and let the next one end the process."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if not callable(signal.getsignal(signal.SIGINT)):
        # No Python handler for SIGINT: a command a shell started in the background ignores
        # Ctrl-C (SIG_IGN), and the signal raised would be lost; SIGTERM must still stop it.
        raise KeyboardInterrupt
    signal.raise_signal(signal.SIGINT)


@contextlib.contextmanager
def terms_as_ctrl_c() -> Iterator[None]:
    """Within the block, SIGTERM acts as Ctrl-C (`term_as_ctrl_c`); the handler before is put back.

    Signals reach only the main thread, so elsewhere this changes nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, term_as_ctrl_c)
    try:
        yield
    finally:
        # None: a handler set outside Python (Ray's), which Python cannot put back.
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


@contextlib.contextmanager
def keeping_terms_as_ctrl_c() -> Iterator[None]:
    """Around `ray.init`, which installs its own SIGTERM handlers: when `term_as_ctrl_c` was in
    place before, it is put back after, so a command stays stoppable as Ctrl-C once Ray is up.

    A program that set no such handler keeps Ray's.
    """
    main = threading.current_thread() is threading.main_thread()
    was = main and signal.getsignal(signal.SIGTERM) is term_as_ctrl_c
    try:
        yield
    finally:
        if was:
            signal.signal(signal.SIGTERM, term_as_ctrl_c)
