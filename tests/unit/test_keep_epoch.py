"""How the keeper tells from a NAT-PMP or PCP epoch that the gateway restarted."""

from __future__ import annotations

import pytest

from natfwd._keep import _epoch_says_restart


@pytest.mark.parametrize(
    ("last", "elapsed", "epoch"),
    [
        (100, 10.0, 110),  # grew with the clock
        (100, 10.0, 107),  # 7/8 of the time less two seconds: 106.75
        (100, 0.5, 100),  # too soon to have grown by a second
        (100, 1.0, 100),  # the gateway's clock is allowed to run slow
        (0, 0.0, 0),
    ],
)
def test_an_epoch_that_kept_up_is_no_restart(last, elapsed, epoch):
    assert not _epoch_says_restart(last, elapsed, epoch)


@pytest.mark.parametrize(
    ("last", "elapsed", "epoch"),
    [
        (100, 10.0, 106),  # fell behind 7/8 of the clock by more than 2 s
        (100, 10.0, 3),  # started again from zero
        (2, 1.0, 1),  # went back, though within the two seconds of slack
        (3, 0.1, 0),
    ],
)
def test_an_epoch_that_fell_behind_or_went_back_is_a_restart(last, elapsed, epoch):
    assert _epoch_says_restart(last, elapsed, epoch)
