"""natpmpc, libnatpmp's sample client, is built with the fork and run.

It runs only in a network namespace made for the test, always with ``-g``
pointing at the namespace's loopback, where a scripted gateway answers.
"""

from __future__ import annotations

import pytest
from libnatpmp_support import GATEWAY, LIB, SOURCES, netns, responder, tree

# 203.0.113.5, which natpmpc then refuses as a reserved address; the test
# only needs to see that the answer was read.
PUBLIC_OK = "0080" + "0000" + "000003e8" + "cb007105"

SANITIZER_MARKS = ("AddressSanitizer", "runtime error:")


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


def assert_clean(proc) -> None:
    for mark in SANITIZER_MARKS:
        assert mark not in proc.stderr, proc.stderr


def test_g_needs_an_address(ns, natpmpc):
    proc = ns.run(natpmpc, "-g")

    assert_clean(proc)
    assert proc.returncode == 1
    assert "Not enough arguments for option -g" in proc.stderr
    assert "initnatpmp" not in proc.stdout


@pytest.mark.parametrize("bad", ["10.0.0.300", "gateway.invalid"])
def test_g_refuses_what_is_not_an_address(ns, natpmpc, bad):
    proc = ns.run(natpmpc, "-g", bad)

    assert_clean(proc)
    assert proc.returncode == 1
    assert f"{bad} is not a valid IPv4 address" in proc.stderr
    assert "initnatpmp" not in proc.stdout


def test_socket_numbered_past_fd_setsize(ns, natpmpc, fdfill):
    with responder(ns, PUBLIC_OK) as gateway:
        proc = ns.run(fdfill, "1100", natpmpc, "-g", GATEWAY)

    assert_clean(proc)
    assert "readnatpmpresponseorretry returned 0 (OK)" in proc.stdout
    assert "203.0.113.5" in proc.stderr
    assert gateway.requests == [bytes([0, 0])]
