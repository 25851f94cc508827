"""natfwd._validate: every value natfwd sends is checked before it is sent."""

from __future__ import annotations

import pytest

from natfwd import InvalidArgument, Protocol
from natfwd._validate import (
    MAX_DESCRIPTION_BYTES,
    MAX_LEASE,
    MAX_TIMEOUT,
    check_address,
    check_description,
    check_lease,
    check_port,
    check_protocol,
    check_timeout,
    check_url,
)

# -- ports ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1, 1), (80, 80), (65535, 65535), ("8080", 8080), (" 80", 80), ("0080", 80)],
)
def test_port_accepts(value, expected):
    assert check_port(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        0,
        -1,
        65536,
        2**64,
        "0",
        "65536",
        "",
        " ",
        "abc",
        "80a",
        "+80",
        "-80",
        "8_0",
        "0x50",
        "\u0663",  # ARABIC-INDIC DIGIT THREE: isdigit() says yes
        "\uff18\uff10",  # fullwidth digits
        "²",  # isdigit() too, and int() refuses it
        "80\x00",
        True,
        False,
        80.0,
        80.5,
        float("nan"),
        None,
        b"80",
        [80],
    ],
)
def test_port_refuses(value):
    with pytest.raises(InvalidArgument) as info:
        check_port(value)
    assert isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)


def test_port_zero_where_allowed():
    assert check_port(0, allow_zero=True) == 0
    with pytest.raises(InvalidArgument):
        check_port(-1, allow_zero=True)


def test_port_message_names_what_and_value():
    with pytest.raises(InvalidArgument, match=r"external port .*'abc'"):
        check_port("abc", "external port")


# -- protocols -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("tcp", Protocol.TCP),
        ("UDP", Protocol.UDP),
        (" Tcp ", Protocol.TCP),
        (Protocol.UDP, Protocol.UDP),
    ],
)
def test_protocol_accepts(value, expected):
    assert check_protocol(value) is expected


@pytest.mark.parametrize(
    "value",
    ["", "sctp", "tcp/udp", "TCP\x00", "\uff54\uff43\uff50", "tcp6", 6, None, b"tcp"],
)
def test_protocol_refuses(value):
    with pytest.raises(InvalidArgument, match="'tcp' or 'udp'"):
        check_protocol(value)


# -- descriptions ----------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "",
        "natfwd",
        "<b>bold</b> & 'quotes' \"double\"",  # markup is escaped on the wire
        "]]></NewPortMappingDescription><x>",
        "&amp; &#x41; &lt;",
        "é ü ß 中文 👍",
        "family 👨\u200d👩\u200d👧",  # joiners hold emoji together
        "x" * MAX_DESCRIPTION_BYTES,
        "é" * (MAX_DESCRIPTION_BYTES // 2),
    ],
)
def test_description_accepts(value):
    assert check_description(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "line\nbreak",
        "tab\there",
        "nul\x00",
        "bell\x07",
        "escape \x1b[31mred",
        "del\x7f",
        "c1 \x85 next line",
        "c1 \x9b csi",
        "line\u2028separator",
        "para\u2029separator",
        "right-to-left \u202eoverride",
        "isolate \u2066x\u2069",
        "lone surrogate \udcff",  # what argv makes of a byte not in UTF-8
    ],
)
def test_description_refuses_control_characters(value):
    with pytest.raises(InvalidArgument, match="printable") as info:
        check_description(value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "value",
    [
        "x" * (MAX_DESCRIPTION_BYTES + 1),
        "é" * (MAX_DESCRIPTION_BYTES // 2 + 1),  # 128 characters, 256 bytes
        "👍" * 64,  # 64 characters, 256 bytes
    ],
)
def test_description_refuses_more_than_255_utf8_bytes(value):
    with pytest.raises(InvalidArgument, match="256 bytes"):
        check_description(value)


@pytest.mark.parametrize("value", [None, b"natfwd", 5])
def test_description_must_be_text(value):
    with pytest.raises(InvalidArgument, match="text"):
        check_description(value)


# -- leases --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 0), (1, 1), (3600, 3600), (3600.0, 3600), (MAX_LEASE, MAX_LEASE)],
)
def test_lease_accepts(value, expected):
    assert check_lease(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        -1,
        MAX_LEASE + 1,
        0.5,  # int() would make it 0: a permanent mapping
        -0.5,
        1.5,
        float("nan"),
        float("inf"),
        True,
        "3600",
        None,
    ],
)
def test_lease_refuses(value):
    with pytest.raises(InvalidArgument, match="lease"):
        check_lease(value)


# -- timeouts ------------------------------------------------------------------


@pytest.mark.parametrize("value", [0.001, 1, 2.5, MAX_TIMEOUT])
def test_timeout_accepts(value):
    assert check_timeout(value) == float(value)


@pytest.mark.parametrize(
    "value",
    [
        0,
        -1,
        float("nan"),
        float("inf"),
        MAX_TIMEOUT * 2,
        1e12,  # beyond what threads can wait for
        True,
        "5",
        None,
    ],
)
def test_timeout_refuses(value):
    with pytest.raises(InvalidArgument, match="timeout"):
        check_timeout(value)


# -- addresses and URLs ----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("192.168.1.20", "192.168.1.20"), (" 10.0.0.1 ", "10.0.0.1")],
)
def test_address_accepts(value, expected):
    assert check_address(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "192.168.1",
        "192.168.1.256",
        "::1",
        "host.lan",
        "\u0661\u0662\u0667.0.0.1",
        None,
        1,
    ],
)
def test_address_refuses(value):
    with pytest.raises(InvalidArgument, match="IPv4"):
        check_address(value)


@pytest.mark.parametrize(
    "value",
    [
        "http://192.168.1.1:5000/rootDesc.xml",
        "http://192.168.1.1/",
        "http://[fe80::1]:49152/desc.xml",
        "http://router.lan:80/igd.xml?x=1",
    ],
)
def test_url_accepts(value):
    assert check_url(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "https://192.168.1.1/rootDesc.xml",
        "ftp://192.168.1.1/",
        "HTTP//192.168.1.1/",
        "http://",
        "http:///rootDesc.xml",
        "http://192.168.1.1:99999/",
        "http://192.168.1.1:0/",
        "http://192.168.1.1:/x",
        "http://192.168.1.1:port/",
        "http://user@192.168.1.1/",
        "http://192.168.1.1/a b",
        "http://192.168.1.1/x\r\nHost: elsewhere",
        "http://192.168.1.1/\x00",
        "http://r\u043euter.lan/",  # a Cyrillic o
        "http://" + "h" * 65 + "/",
        "http://192.168.1.1/" + "x" * 1100,
        None,
        b"http://192.168.1.1/",
    ],
)
def test_url_refuses(value):
    with pytest.raises(InvalidArgument, match="http://") as info:
        check_url(value, "an IGD location")
    assert "\n" not in str(info.value)
