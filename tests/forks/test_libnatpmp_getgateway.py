"""getdefaultgateway() reads the default route of the caller's namespace.

On Linux the library takes the gateway from /proc/net/route, which shows the
routing table of the reading process's network namespace. Each test builds a
table in a namespace of its own (a veth pair whose both ends stay inside it,
addresses of the test's choosing) and runs upstream's testgetgateway there.
Nothing is sent: the function only reads the table.

The kernel writes each line of that file at a fixed width well under the
parser's 256-byte buffer, so long or malformed lines cannot reach it; these
tests pin what it does with the tables a machine really has.
"""

from __future__ import annotations

import subprocess

import pytest
from libnatpmp_support import LIB, netns, tree


@pytest.fixture(scope="module")
def testgetgateway(cc_module):
    return cc_module.build(LIB, str(tree() / "testgetgateway.c"), ["getgateway.c"])


def ip(ns, *args: str) -> None:
    subprocess.run(["ip", "-n", ns.name, *args], check=True, timeout=30)


@pytest.fixture
def lan():
    """A namespace with two links, 10.77.0.2/24 and 10.78.0.2/24."""
    with netns() as ns:
        ip(ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
        for dev, address in (("v0", "10.77.0.2/24"), ("v1", "10.78.0.2/24")):
            ip(ns, "addr", "add", address, "dev", dev)
            ip(ns, "link", "set", dev, "up")
        yield ns


def gateway(ns, exe) -> str:
    proc = ns.run(exe)
    return (proc.stdout + proc.stderr).strip()


def test_no_default_route(lan, testgetgateway):
    assert gateway(lan, testgetgateway) == "getdefaultgateway() failed"


def test_lowest_metric_default_route_wins(lan, testgetgateway):
    ip(lan, "route", "add", "default", "via", "10.77.0.1", "metric", "200")
    ip(lan, "route", "add", "default", "via", "10.78.0.1", "metric", "100")

    assert gateway(lan, testgetgateway) == "default gateway : 10.78.0.1"

    ip(lan, "route", "del", "default", "via", "10.78.0.1", "metric", "100")
    assert gateway(lan, testgetgateway) == "default gateway : 10.77.0.1"


def test_default_route_without_gateway_is_skipped(lan, testgetgateway):
    ip(lan, "route", "add", "default", "dev", "v1", "metric", "50")
    ip(lan, "route", "add", "10.99.0.0/16", "via", "10.78.0.7")

    assert gateway(lan, testgetgateway) == "getdefaultgateway() failed"

    ip(lan, "route", "add", "default", "via", "10.77.0.1", "metric", "200")
    assert gateway(lan, testgetgateway) == "default gateway : 10.77.0.1"
