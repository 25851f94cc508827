"""miniwget must frame HTTP bodies as the headers really say.

getHTTPResponse() compared each header name with "content-length" and
"transfer-encoding" only over the received name's own length, so that
"Content: 5" set the body length and "T: chunked" switched to chunked
decoding. Content-Length went through atoi() and chunk sizes through an
unchecked unsigned shift, so that out of range values wrapped around to
small ones and cut the body short.
"""

from __future__ import annotations

import re

import pytest
from miniupnpc_support import CLIENT_SOURCES, RawResponder, build, run

BODY = b"<root>hello world, the whole body</root>"

CASES = {
    # name: (response, expected body)
    "short-name-content": (
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent: 5\r\n\r\n%s"
        % (len(BODY), BODY),
        BODY,
    ),
    "short-name-transfer": (
        b"HTTP/1.1 200 OK\r\nT: chunked\r\nConnection: close\r\n\r\n" + BODY,
        BODY,
    ),
    "single-letter-c": (
        b"HTTP/1.1 200 OK\r\nC: 3\r\n\r\n" + BODY,
        BODY,
    ),
    "content-length-wraps": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 4294967301\r\n\r\n" + BODY,
        BODY,
    ),
    "content-length-junk": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 12abc\r\n\r\n" + BODY,
        BODY,
    ),
    "chunk-size-wraps": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"100000005\r\nhello\r\n0\r\n\r\n",
        b"",
    ),
    # Framing that was right before must stay right.
    "content-length": (
        b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n" + BODY,
        BODY[:11],
    ),
    "chunked": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"6\r\n<root>\r\n0000000A;x=y\r\nhello worl\r\n0\r\n\r\n",
        b"<root>hello worl",
    ),
    "no-length": (b"HTTP/1.0 200 OK\r\n\r\n" + BODY, BODY),
}


@pytest.fixture(scope="module")
def wget(cc_module):
    return build(cc_module, "miniupnpc_wget.c", CLIENT_SOURCES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_body_framing(wget, name):
    response, expected = CASES[name]
    with RawResponder(response) as srv:
        proc = run(wget, srv.url)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    head, _, body = proc.stdout.partition("\n")
    assert re.fullmatch(r"status=200 size=\d+", head), head
    assert body.encode() == expected
