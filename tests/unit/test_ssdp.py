"""natfwd._ssdp.parse_response: SSDP answers, good, odd and hostile.

Every datagram a LAN device sends must give a Response or None: one bad
answer may never end a search with an exception.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from natfwd import InvalidArgument
from natfwd._ssdp import (
    MAX_DATAGRAM,
    SEARCH_TARGETS,
    Response,
    _interface_option,
    parse_response,
)

REPLIES = Path(__file__).resolve().parents[1] / "fixtures" / "replies" / "ssdp"

SOURCE = "192.168.1.1"


def reply(name: str) -> bytes:
    return (REPLIES / name).read_bytes()


def answer(*headers: str, status: str = "HTTP/1.1 200 OK") -> bytes:
    return ("\r\n".join([status, *headers]) + "\r\n\r\n").encode("latin-1")


IGD1 = "urn:schemas-upnp-org:device:InternetGatewayDevice:1"


@pytest.mark.parametrize(
    ("name", "location", "st"),
    [
        (
            "miniupnpd-igd2.txt",
            "http://192.168.1.1:5000/rootDesc.xml",
            "urn:schemas-upnp-org:device:InternetGatewayDevice:2",
        ),
        (
            "mixed-case-headers-igd1.txt",
            "http://192.168.178.1:49000/igddesc.xml",
            IGD1,
        ),
        (
            "service-target-wanipconnection.txt",
            "http://10.0.0.138:80/IGD.xml",
            "urn:schemas-upnp-org:service:WANIPConnection:1",
        ),
        (
            "bare-lf-line-ends.txt",
            "http://192.168.0.1:1900/gatedesc.xml",
            "urn:schemas-upnp-org:service:WANPPPConnection:1",
        ),
        (
            "latin1-server-header.txt",
            "http://192.168.2.1:52869/picsdesc.xml",
            IGD1,
        ),
        (
            "ipv6-location.txt",
            "http://[fe80::1]:5000/rootDesc.xml",
            "urn:schemas-upnp-org:device:InternetGatewayDevice:2",
        ),
    ],
)
def test_recorded_answers_are_used(name, location, st):
    response = parse_response(reply(name), SOURCE)

    assert isinstance(response, Response)
    assert response.location == location
    assert response.st == st
    assert response.st in SEARCH_TARGETS
    assert response.usn.startswith("uuid:")
    assert response.source == SOURCE


@pytest.mark.parametrize(
    "name",
    [
        "not-an-igd-mediaserver.txt",
        "notify-alive.txt",
        "no-location.txt",
        "status-404.txt",
        "https-location.txt",
        "broken-ipv6-location.txt",
    ],
)
def test_recorded_answers_are_dropped(name):
    assert parse_response(reply(name), SOURCE) is None


def test_every_fixture_is_covered():
    named = {
        p.name for p in REPLIES.iterdir() if p.suffix == ".txt"
    }  # a new fixture needs a test above
    source = Path(__file__).read_text()
    assert {n for n in named if n not in source} == set()


def test_first_location_wins_and_usn_may_be_missing():
    response = parse_response(
        answer(
            f"ST: {IGD1}",
            "LOCATION: http://192.168.1.1:1/first.xml",
            "LOCATION: http://192.168.1.1:2/second.xml",
        ),
        SOURCE,
    )
    assert response == Response(
        location="http://192.168.1.1:1/first.xml", st=IGD1, usn="", source=SOURCE
    )


@pytest.mark.parametrize(
    "location",
    [
        "",
        "192.168.1.1:5000/rootDesc.xml",
        "file:///etc/passwd",
        "ftp://192.168.1.1/rootDesc.xml",
        "https://192.168.1.1/rootDesc.xml",
        "javascript:alert(1)",
        "http://",
        "http:///rootDesc.xml",
        "http://192.168.1.1:70000/rootDesc.xml",
        "http://192.168.1.1:-1/rootDesc.xml",
        "http://[::1/rootDesc.xml",
        "http://user:pw@192.168.1.1/rootDesc.xml",
        "http://192.168.1.1/root Desc.xml",
        "http://192.168.1.1/\x00rootDesc.xml",
        "http://192.168.1.1/\x1b[2J",
        "http://r\xe9seau.lan/rootDesc.xml",
        "http://192.168.1.1/" + "a" * 2000,
    ],
)
def test_unusable_locations_are_dropped(location):
    data = answer(f"ST: {IGD1}", f"LOCATION: {location}")
    assert parse_response(data, SOURCE) is None


@pytest.mark.parametrize(
    "st",
    ["", "ssdp:all", "upnp:rootdevice", IGD1 + " extra", IGD1.upper()],
)
def test_other_search_targets_are_dropped(st):
    data = answer(f"ST: {st}", "LOCATION: http://192.168.1.1/rootDesc.xml")
    assert parse_response(data, SOURCE) is None


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",
        b"\r\n\r\n",
        b"HTTP/1.1",
        b"HTTP/1.1 200",
        b"HTTP/1.1 OK 200\r\n\r\n",
        b"\xff\xfe\x00H\x00T\x00T\x00P",
        b"\x80" * 64,
        b"HTTP/1.1 200 OK\r\n" + b":" * 4000,
        b"HTTP/1.1 200 OK\r\n" + b"\n" * 4000,
        b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"A" * (MAX_DATAGRAM * 4) + b"\r\n",
        b"HTTP/1.1 200 OK\r\nLOCATION\r\nST\r\n\r\n",
        b"M-SEARCH * HTTP/1.1\r\nST: ssdp:all\r\n\r\n",
    ],
)
def test_garbage_is_dropped(data):
    assert parse_response(data, SOURCE) is None


def test_random_bytes_never_raise():
    good = reply("miniupnpd-igd2.txt")
    for seed in range(300):
        noise = os.urandom(seed % 97)
        cut = seed * 7 % len(good)
        for data in (noise, good[:cut] + noise, noise + good, good[:cut]):
            result = parse_response(data, SOURCE)
            assert result is None or isinstance(result, Response)


@pytest.mark.parametrize("name", ["no-such-interface0", "x" * 300, "nul\x00", "\xe9"])
def test_unknown_interface_is_an_invalid_argument(name):
    # Outside Linux, natfwd takes interfaces by address only.
    with pytest.raises(InvalidArgument, match=r"network interface|IPv4 address"):
        _interface_option(name)


def test_interface_by_address():
    assert _interface_option("192.168.1.20") == bytes([192, 168, 1, 20])
