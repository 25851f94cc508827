"""natpmpc, libnatpmp's sample client, is built with the fork and run.

It runs only in a network namespace made for the test. Where a command line
lets it get as far as sending, ``-g`` points it at that namespace's loopback,
where a scripted gateway answers.
"""

from __future__ import annotations

import pytest
from libnatpmp_support import GATEWAY, LIB, SOURCES, netns, responder, tree

# 203.0.113.5, which natpmpc then refuses as a reserved address; the test
# only needs to see that the answer was read.
PUBLIC_OK = "0080" + "0000" + "000003e8" + "cb007105"

# 1.2.3.4, an address natpmpc accepts as public, then 9090/udp mapped to
# 8080 for 60 s: what "natpmpc -a 9090 8080 udp 60" expects to hear.
PUBLIC_1234 = "0080" + "0000" + "000003e8" + "01020304"
UDP_MAPPED = "0081" + "0000" + "000003e8" + "1f90" + "2382" + "0000003c"


@pytest.fixture(scope="module")
def natpmpc(cc_module):
    return cc_module.build(
        LIB, str(tree() / "natpmpc.c"), SOURCES, defines=["ENABLE_STRNATPMPERR"]
    )


@pytest.fixture(scope="module")
def fdfill(cc_module):
    return cc_module.build(LIB, "libnatpmp_fdfill.c", [], sanitize=False)


@pytest.fixture(scope="module")
def ns():
    with netns() as ns:
        yield ns


def test_g_needs_an_address(ns, natpmpc):
    proc = ns.run(natpmpc, "-g")

    assert proc.returncode == 1
    assert "Not enough arguments for option -g" in proc.stderr
    assert "initnatpmp" not in proc.stdout


@pytest.mark.parametrize("bad", ["10.0.0.300", "gateway.invalid"])
def test_g_refuses_what_is_not_an_address(ns, natpmpc, bad):
    proc = ns.run(natpmpc, "-g", bad)

    assert proc.returncode == 1
    assert f"{bad} is not a valid IPv4 address" in proc.stderr
    assert "initnatpmp" not in proc.stdout


def test_socket_numbered_past_fd_setsize(ns, natpmpc, fdfill):
    with responder(ns, PUBLIC_OK) as gateway:
        proc = ns.run(fdfill, "1100", natpmpc, "-g", GATEWAY)

    assert "readnatpmpresponseorretry returned 0 (OK)" in proc.stdout
    assert "203.0.113.5" in proc.stderr
    assert gateway.requests == [bytes([0, 0])]


@pytest.mark.parametrize(
    ("args", "bad", "kind"),
    [
        pytest.param(["70000", "8080", "udp"], "70000", "16bits", id="public-port"),
        pytest.param(["9090", "-1", "udp"], "-1", "16bits", id="private-port"),
        pytest.param(["9090", "8080x", "udp"], "8080x", "16bits", id="port-suffix"),
        pytest.param(["9090", "8080", "udp", "12x"], "12x", "32bits", id="lifetime"),
        pytest.param(
            ["9090", "8080", "udp", "4294967296"], "4294967296", "32bits", id="2**32"
        ),
    ],
)
def test_a_refuses_numbers_out_of_range(ns, natpmpc, args, bad, kind):
    proc = ns.run(natpmpc, "-g", GATEWAY, "-a", *args)

    assert proc.returncode == 1
    assert f"{bad} is not a correct {kind} unsigned integer" in proc.stderr
    assert "initnatpmp" not in proc.stdout


@pytest.mark.parametrize(
    ("lifetime", "sent"),
    [
        pytest.param(["60"], 60, id="lifetime-then-option"),
        pytest.param([], 3600, id="option-right-after-protocol"),
    ],
)
def test_a_maps_the_port_asked_for(ns, natpmpc, lifetime, sent):
    args = ["-a", "9090", "8080", "udp", *lifetime, "-g", GATEWAY]
    with responder(ns, PUBLIC_1234, UDP_MAPPED) as gateway:
        proc = ns.run(natpmpc, *args)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == ""
    mapping = bytes.fromhex("00010000" + "1f90" + "2382") + sent.to_bytes(4, "big")
    assert gateway.requests == [bytes([0, 0]), mapping]
    assert "Mapped public port 9090 protocol UDP to local port 8080" in proc.stdout
