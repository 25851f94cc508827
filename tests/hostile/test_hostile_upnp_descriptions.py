"""IGD root descriptions that are cut short, huge, absurd, or point elsewhere.

natfwd must either use the IGD or say in one line why it cannot, with a
documented exit status and within --timeout. Every URL in these documents
stays on the namespace's loopback.
"""

from __future__ import annotations

import pytest
from hostile_support import STARTUP_MARGIN
from upnp_responder import (
    DESCRIPTION_PATH,
    Drip,
    Hang,
    Send,
    http,
    root_description,
)

import natfwd
from natfwd import upnp

GOOD = root_description(1)
OURS = (8080, "TCP")
ADD = ("add", "8080", "--internal-address", "127.0.0.1")


def _nested(depth: int) -> bytes:
    return GOOD.replace(
        b"<friendlyName>", b"<a>" * depth + b"</a>" * depth + b"<friendlyName>"
    )


USABLE = {
    "huge (8 MB of padding)": lambda igd: GOOD.replace(
        b"<friendlyName>", b"<pad>" + b"x" * 8_000_000 + b"</pad><friendlyName>"
    ),
    "nested 100000 deep": lambda igd: _nested(100_000),
    "unclosed nesting": lambda igd: GOOD.replace(
        b"<friendlyName>", b"<a>" * 50_000 + b"<friendlyName>"
    ),
    "relative control URL": lambda igd: root_description(1, control_url="ctl/IPConn"),
    "absolute control URL": lambda igd: root_description(
        1, control_url=f"http://127.0.0.1:{igd.port}/ctl/IPConn"
    ),
    "URLBase of the same server": lambda igd: root_description(
        1, url_base=f"http://127.0.0.1:{igd.port}/"
    ),
    "URLBase without a slash": lambda igd: root_description(
        1, url_base=f"http://127.0.0.1:{igd.port}", control_url="ctl/IPConn"
    ),
    "WANPPPConnection": lambda igd: root_description(1, kind="WANPPPConnection"),
    "no XML declaration, indented with CRLF": lambda igd: GOOD.replace(
        b'<?xml version="1.0"?>\r\n', b""
    ).replace(b"><", b">\r\n\t  <"),
    "control URL of 5000 bytes": lambda igd: root_description(
        1, control_url="/" + "c" * 5000
    ),
}


@pytest.mark.parametrize("name", list(USABLE))
def test_odd_but_usable_descriptions(igd, upnp_cli, name):
    igd.description = USABLE[name](igd)

    run = upnp_cli(igd, *ADD)

    assert run.code == 0, run.err
    assert run.err == []
    assert set(igd.table) == {OURS}
    assert run.elapsed < 3.0 + STARTUP_MARGIN


UNUSABLE = {
    "empty": (b"", 3),
    "truncated in half": (GOOD[: len(GOOD) // 2], 4),
    "truncated inside the WAN service": (
        GOOD[: GOOD.find(b"<controlURL>/ctl/IPConn") + 15],
        4,
    ),
    "HTML login page": (b"<html><body><form>Password</form></body></html>", 4),
    "binary": (bytes(range(256)) * 64, 4),
    "no WAN connection service": (root_description(1, wan_service=False), 4),
    "a media server": (
        GOOD.replace(b"InternetGatewayDevice", b"MediaServer").replace(
            b"WANIPConnection", b"ContentDirectory"
        ),
        4,
    ),
    "control URL on a closed port": (
        root_description(1, control_url="http://127.0.0.1:1/ctl/IPConn"),
        5,
    ),
    "URLBase on a closed port": (
        root_description(1, url_base="http://127.0.0.1:1/"),
        5,
    ),
    "URLBase that is no URL": (root_description(1, url_base="\x01junk"), 5),
    "control URL on a name that does not resolve": (
        root_description(1, control_url="http://gateway.invalid:5000/ctl"),
        5,
    ),
}


@pytest.mark.parametrize("name", list(UNUSABLE))
def test_unusable_descriptions_fail_in_one_line(igd, upnp_cli, name):
    document, code = UNUSABLE[name]
    igd.description = document

    run = upnp_cli(igd, *ADD)

    assert run.code == code, run.err
    run.error  # noqa: B018 -- one line, and nothing from the C library
    assert run.elapsed < 3.0 + STARTUP_MARGIN
    assert igd.table == {}


@pytest.mark.parametrize(
    "steps",
    [
        lambda: [Hang()],
        lambda: [Drip(http(200, GOOD), 1.0)],
        lambda: [Send(http(200, GOOD)[:200]), Hang()],
        lambda: [Send(http(404, b"")), Hang()],
    ],
    ids=["silent", "dripping", "stalls mid-way", "404 then silence"],
)
def test_description_that_never_arrives(igd, upnp_cli, steps):
    igd.get = lambda path: steps()

    run = upnp_cli(igd, *ADD, timeout=0.6)

    assert run.code in (3, 5)
    run.error  # noqa: B018
    assert run.elapsed < 0.6 + STARTUP_MARGIN


def test_description_404(igd, upnp_cli):
    igd.documents.pop(DESCRIPTION_PATH)

    run = upnp_cli(igd, "status")

    assert run.code in (3, 4)
    run.error  # noqa: B018


# -- the same through the Python API: only natfwd's exceptions -----------------------


@pytest.mark.parametrize("name", list(UNUSABLE))
def test_api_raises_natfwd_errors_only(netns, igd, name):
    igd.description = UNUSABLE[name][0]

    with netns.entered():
        try:
            with upnp.IGD(igd.location, timeout=2.0) as device:
                device.status_info(deadline=None)
        except natfwd.NatfwdError:
            pass
