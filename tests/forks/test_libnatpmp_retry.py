"""Retransmissions keep RFC 6886's spacing when the caller comes back late.

A request is retransmitted after 250 ms, then after 500 ms, 1 s and so on
(RFC 6886, section 3.1). The library used to add each interval to the time
the previous retransmission was due rather than to the time it was sent: a
caller that looked at its request only after two seconds got three
retransmissions at once, and with them used up the retries meant to give a
slow gateway more and more time.

A silent scripted gateway in the test's own network namespace counts what
arrives.
"""

from __future__ import annotations

import pytest
from libnatpmp_support import GATEWAY, LIB, SOURCES, netns, responder

TRYAGAIN = -100


@pytest.fixture(scope="module")
def harness(cc_module):
    # The library's default of 9 tries, so that none runs out in the test.
    return cc_module.build(
        LIB, "libnatpmp_stall.c", SOURCES, defines=["ENABLE_STRNATPMPERR"]
    )


def test_late_caller_gets_one_retransmission_not_a_burst(harness):
    # Stalled for 2 s, past the retry times at 0.25, 0.75 and 1.75 s; then
    # watched for 300 ms, less than the 500 ms before the next retry is due.
    with netns() as ns, responder(ns) as gateway:
        proc = ns.run(harness, GATEWAY, "2000", "300")

    assert proc.stdout == f"rc={TRYAGAIN}\n", proc.stdout + proc.stderr
    assert len(gateway.requests) == 2, "request + one retransmission expected"


def test_punctual_caller_keeps_the_schedule(harness):
    # Watched from the start for 1.0 s: retries due at 0.25 and 0.75 s.
    with netns() as ns, responder(ns) as gateway:
        proc = ns.run(harness, GATEWAY, "0", "1000")

    assert proc.stdout == f"rc={TRYAGAIN}\n", proc.stdout + proc.stderr
    assert len(gateway.requests) == 3
