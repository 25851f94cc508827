"""Control URLs built for link-local gateways must fit their allocation.

For an IPv6 link-local description URL, GetUPNPUrls() inserts the zone
(``%25`` and the interface name) into the control URLs. When the interface
index names no interface, the URL buffer was sized without the zone but the
zone, from an uninitialised name, was inserted all the same.
"""

from __future__ import annotations

import pytest
from miniupnpc_support import CLIENT_SOURCES, build, run

LOOPBACK_INDEX = "1"  # the loopback interface is always index 1 on Linux
NO_SUCH_INDEX = "999999"

CASES = [
    # description URL, control URL, interface index, expected control URL
    ("http://[fe80::1]:5000/rootDesc.xml", "/ctl", LOOPBACK_INDEX,
     "http://[fe80::1%25lo]:5000/ctl"),
    ("http://[fe80::1]:5000/rootDesc.xml", "/ctl", NO_SUCH_INDEX,
     "http://[fe80::1]:5000/ctl"),
    ("http://[fe80::1]:5000/rootDesc.xml", "ctl", NO_SUCH_INDEX,
     "http://[fe80::1]:5000/ctl"),
    ("http://[2001:db8::1]:5000/d.xml", "ctl", LOOPBACK_INDEX,
     "http://[2001:db8::1]:5000/ctl"),
    ("http://127.0.0.1:5000/d.xml", "/ctl", "0", "http://127.0.0.1:5000/ctl"),
]  # fmt: skip


@pytest.fixture(scope="module")
def harness(cc_module):
    return build(cc_module, "miniupnpc_urls.c", CLIENT_SOURCES, extra=["-O0"])


@pytest.mark.parametrize(("desc", "control", "scope", "expected"), CASES)
def test_control_url(harness, desc, control, scope, expected):
    proc = run(harness, desc, control, scope)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == f"control={expected}\n"
