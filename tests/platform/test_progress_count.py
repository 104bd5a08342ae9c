"""Counter: how far a long stage has come, said at most every so often."""

from __future__ import annotations

from samplegen.platform.progress_count import Counter


def test_a_long_stage_says_how_far_it_has_come_and_a_short_one_does_not() -> None:
    said: list[str] = []
    quiet = Counter(10, "scanned", said.append)
    quiet.add(5)
    assert said == []  # within REPORT_EVERY_S of the start
    chatty = Counter(1200, "encoded", said.append, every_s=0.0)
    for _ in range(3):
        chatty.add(400)
    assert said == ["encoded 400 of 1,200", "encoded 800 of 1,200"]  # not when it is all done
