"""An HTTP response longer than MINIUPNPC_HTTP_MAX_RESPONSE is dropped.

getHTTPResponse() grew its buffers for as long as the peer sent, so any LAN
host answering an SSDP search could make the library store an endless
description (or SOAP response) in memory. The read now stops with an error
past 16 MiB, headers included; smaller responses are read as before.
"""

from __future__ import annotations

import re

import pytest
from miniupnpc_support import CLIENT_SOURCES, RawResponder, build, run

MIB = 1024 * 1024
LIMIT = 16 * MIB  # MINIUPNPC_HTTP_MAX_RESPONSE


def body(size: int) -> bytes:
    line = b"<serviceType>urn:x</serviceType>\n"
    return (b"<root>" + line * (size // len(line) + 1))[:size]


def framed(kind: str, payload: bytes) -> bytes:
    if kind == "close":
        return b"HTTP/1.0 200 OK\r\n\r\n" + payload
    if kind == "length":
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (
            len(payload),
            payload,
        )
    step = 64 * 1024
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(payload[i : i + step]), payload[i : i + step])
        for i in range(0, len(payload), step)
    )
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%s0\r\n\r\n" % chunks


@pytest.fixture(scope="module")
def wget(cc_module):
    return build(cc_module, "miniupnpc_wget.c", CLIENT_SOURCES, sanitize=False)


def fetch(exe, response: bytes):
    with RawResponder(response) as srv:
        proc = run(exe, srv.url)

    assert proc.returncode == 0, proc.stderr
    head, _, rest = proc.stdout.partition("\n")
    match = re.fullmatch(r"status=(-?\d+) size=(-?\d+)", head)
    assert match, head
    return int(match[2]), rest


@pytest.mark.parametrize("kind", ["close", "length", "chunked"])
def test_oversized_response_is_dropped(wget, kind):
    size, rest = fetch(wget, framed(kind, body(LIMIT + MIB)))

    assert size == -1
    assert rest == ""


@pytest.mark.parametrize("kind", ["close", "length", "chunked"])
def test_large_response_below_the_limit_is_read(wget, kind):
    payload = body(LIMIT - 64 * 1024)
    size, rest = fetch(wget, framed(kind, payload))

    assert size == len(payload)
    assert rest.encode() == payload
