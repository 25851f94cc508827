"""The wait getnatpmprequesttimeout() gives is never negative.

A caller that comes back after the retry time (a busy event loop, a process
that was stopped, a slow machine) used to get the time elapsed since then as
a negative timeval. Passed to select(), as natpmpc and the documentation's
loop do, that fails with EINVAL and the request is abandoned; the wait must
be zero instead, so the caller reads or retransmits at once.
"""

from __future__ import annotations

import errno
import re

import pytest
from libnatpmp_support import DEFINES, GATEWAY, LIB, SOURCES, netns


@pytest.fixture(scope="module")
def harness(cc_module):
    return cc_module.build(LIB, "libnatpmp_timeout.c", SOURCES, defines=DEFINES)


def timeout_after(harness, late_ms: int) -> tuple[float, int, int]:
    with netns() as ns:
        proc = ns.run(harness, GATEWAY, str(late_ms))

    assert proc.returncode == 0, proc.stdout + proc.stderr
    match = re.fullmatch(
        r"timeout=(-?\d+)\.(\d+) select=(-?\d+) errno=(\d+)\n", proc.stdout
    )
    assert match, proc.stdout
    sec, usec, selected, err = map(int, match.groups())
    return sec + usec / 1e6, selected, err


def test_wait_before_the_retry_is_due(harness):
    wait, selected, err = timeout_after(harness, 0)

    assert 0 < wait <= 0.25
    assert (selected, err) == (0, 0)


@pytest.mark.parametrize("late_ms", [300, 1400])
def test_no_negative_wait_once_the_retry_is_due(harness, late_ms):
    wait, selected, err = timeout_after(harness, late_ms)

    assert wait == 0
    assert (selected, errno.errorcode.get(err, err)) == (0, 0)
