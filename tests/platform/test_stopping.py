"""The stall rule (moving averages over a window) and the overfit limit, on hand-made curves."""

from __future__ import annotations

import pytest

from samplegen.errors import SamplegenError
from samplegen.platform.stopping import StallRule, relative_change


def test_relative_change_uses_the_last_window_including_the_latest_epoch() -> None:
    assert relative_change([4, 4, 2, 2], 2) == pytest.approx(-0.5)
    assert relative_change([4, 4, 2], 2) is None  # needs 2w values
    assert relative_change([9, 4, 4, 2, 1], 2) == pytest.approx(1.5 / 4 - 1)


def test_stall_needs_both_losses_flat_and_2w_epochs() -> None:
    rule = StallRule(window=3, min_change=0.005, overfit_limit=None)
    flat = [10.0] * 6
    falling = [10.0, 9.0, 8.0, 7.0, 6.0, 5.0]
    assert rule.check(flat[:5], flat[:5]) is None  # 5 < 2w epochs
    stopped = rule.check(flat, flat)
    assert stopped is not None
    status, reason = stopped
    assert status == "stalled" and "over 3 epochs" in reason
    assert rule.check(flat, falling) is None  # validation still moves
    assert rule.check(falling, flat) is None  # training still moves
    tiny = [10.0, 10.0, 10.0, 9.99, 9.99, 9.99]  # -0.1% < 0.5%
    assert rule.check(tiny, tiny) is not None


def test_overfit_limit_and_off_switches() -> None:
    rule = StallRule(window=2, min_change=0.005, overfit_limit=1.4)
    train, val = [10.0, 8.0, 6.0, 4.0], [10.0, 9.0, 8.0, 6.0]  # val/train = 1.5
    stopped = rule.check(train, val)
    assert stopped is not None
    status, reason = stopped
    assert status == "overfit" and "1.500 > limit 1.4" in reason
    assert StallRule(window=2, overfit_limit=None).check(train, val) is None
    assert StallRule(window=None, overfit_limit=None).check([1.0] * 50, [1.0] * 50) is None
    with pytest.raises(SamplegenError, match="window"):
        StallRule(window=0)
    with pytest.raises(SamplegenError, match="overfit"):
        StallRule(overfit_limit=-1)
