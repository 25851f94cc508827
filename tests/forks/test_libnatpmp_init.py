"""A failed initnatpmp() leaves no descriptor open.

initnatpmp() creates its socket first, then looks for the gateway and
connects. When a later step failed, it returned the error with the socket
still open, and natpmp.h gives the caller no reason to call closenatpmp():
natpmpc does not, and a program that retries while the network is down loses
one descriptor per attempt until it runs out of them.

The harness runs in a fresh network namespace, which has no default route, so
discovery fails by reading that namespace's routing table; nothing is sent.
"""

from __future__ import annotations

import pytest
from libnatpmp_support import DEFINES, LIB, SOURCES, netns

CANNOTGETGATEWAY = -3
CONNECTERR = -8
ATTEMPTS = "50"


@pytest.fixture(scope="module")
def harness(cc_module):
    return cc_module.build(LIB, "libnatpmp_initleak.c", SOURCES, defines=DEFINES)


@pytest.mark.parametrize(
    ("gateway", "expected"),
    [
        pytest.param([], CANNOTGETGATEWAY, id="no-default-route"),
        pytest.param(["255.255.255.255"], CONNECTERR, id="connect-refused"),
    ],
)
def test_failed_init_leaves_no_descriptor(harness, gateway, expected):
    with netns() as ns:
        proc = ns.run(harness, ATTEMPTS, *gateway)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == f"rc={expected} leaked=0\n"
