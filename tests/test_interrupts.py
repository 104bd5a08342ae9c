"""SIGTERM as Ctrl-C (samplegen.interrupts). A real `ray.init` in between, and a whole command
stopped by SIGTERM: tests/reliability/test_faults.py."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType

import pytest

from samplegen.interrupts import keeping_terms_as_ctrl_c, term_as_ctrl_c, terms_as_ctrl_c


def _elsewhere(signum: int, frame: FrameType | None) -> None:
    raise AssertionError("the handler from before the block ran")


@pytest.fixture
def term_handler() -> Iterator[object]:
    """A fresh command's SIGINT handler (Python's own) for the test, whatever earlier tests in
    this process left; and both handlers put back afterwards."""
    before = signal.getsignal(signal.SIGTERM)
    before_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield before
    signal.signal(signal.SIGTERM, before)
    signal.signal(signal.SIGINT, before_int)


def _sigterm_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(2)  # the handler runs between bytecodes, well before this ends


def test_a_sigterm_in_the_block_is_a_ctrl_c_and_a_second_would_end_the_process(
    term_handler: object,
) -> None:
    signal.signal(signal.SIGTERM, _elsewhere)
    with pytest.raises(KeyboardInterrupt), terms_as_ctrl_c():
        assert signal.getsignal(signal.SIGTERM) is term_as_ctrl_c
        try:
            _sigterm_self()
        finally:
            # What a second SIGTERM would meet, had the first one's Ctrl-C been slow to end it.
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert signal.getsignal(signal.SIGTERM) is _elsewhere


def test_a_sigterm_stops_a_process_that_ignores_ctrl_c(term_handler: object) -> None:
    # What a non-interactive shell does to a command it starts in the background (`cmd &`).
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with pytest.raises(KeyboardInterrupt), terms_as_ctrl_c():
            _sigterm_self()
    finally:
        signal.signal(signal.SIGINT, before)


def test_the_handler_from_before_is_put_back_when_no_signal_came(term_handler: object) -> None:
    signal.signal(signal.SIGTERM, _elsewhere)
    with terms_as_ctrl_c():
        pass
    assert signal.getsignal(signal.SIGTERM) is _elsewhere


def test_outside_the_main_thread_nothing_changes(term_handler: object) -> None:
    signal.signal(signal.SIGTERM, _elsewhere)
    seen: list[object] = []

    def body() -> None:
        with terms_as_ctrl_c():
            seen.append(signal.getsignal(signal.SIGTERM))

    worker = threading.Thread(target=body)
    worker.start()
    worker.join()
    assert seen == [_elsewhere]
    assert signal.getsignal(signal.SIGTERM) is _elsewhere


def test_a_handler_set_inside_keeping_gives_way_to_term_as_ctrl_c(term_handler: object) -> None:
    # What `ray.init` does: it sets its own SIGTERM handler.
    with terms_as_ctrl_c():
        with keeping_terms_as_ctrl_c():
            signal.signal(signal.SIGTERM, _elsewhere)
        assert signal.getsignal(signal.SIGTERM) is term_as_ctrl_c
        with pytest.raises(KeyboardInterrupt):
            _sigterm_self()


def test_a_program_that_set_no_such_handler_keeps_the_new_one(term_handler: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with keeping_terms_as_ctrl_c():
        signal.signal(signal.SIGTERM, _elsewhere)
    assert signal.getsignal(signal.SIGTERM) is _elsewhere
