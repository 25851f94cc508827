"""Replies from a NAT-PMP gateway are checked before they are believed.

A scripted gateway in a network namespace of the test's own answers the
library's requests with crafted datagrams. Short replies must fail as
malformed instead of passing bytes the gateway never sent for an address or
a port, and a reply to a request of another type (a late answer to an earlier
request) must be ignored instead of being taken for the answer.

Hex layout of a reply (RFC 6886): version, opcode (128 + request opcode),
result code (2 bytes), epoch (4 bytes), then for opcode 128 the public address
(4 bytes), for 129/130 the private port, public port and lifetime (2+2+4).
"""

from __future__ import annotations

import pytest
from libnatpmp_support import GATEWAY, build_client, netns, responder

MALFORMED = -16
UNSUPPORTEDVERSION = -14
UNSUPPORTEDOPCODE = -15
NOGATEWAYSUPPORT = -7
NOTAUTHORIZED = -51

EPOCH = "000003e8"  # 1000 seconds
PUBLIC_OK = "0080" + "0000" + EPOCH + "cb007105"  # 203.0.113.5
UDP_OK = "0081" + "0000" + EPOCH + "1f90" + "2382" + "00000e10"  # 8080 -> 9090
PUBLIC_REQUEST = ["public"]
UDP_REQUEST = ["map", "udp", "8080", "9090", "3600"]
PUBLIC_FIELDS = "type=0 resultcode=0 epoch=1000 address=203.0.113.5"
UDP_FIELDS = "type=1 resultcode=0 epoch=1000 private=8080 public=9090 lifetime=3600"

# Well-formed replies to a request other than the one the tests send.
UDP_ZERO_OK = "0081" + "0000" + EPOCH + "0000" + "0000" + "00000000"
TCP_OK = "0082" + UDP_OK[4:]
PUBLIC_REFUSED = "0080" + "0002" + EPOCH


@pytest.fixture(scope="module")
def client(cc_module):
    return build_client(cc_module)


@pytest.fixture(scope="module")
def ns():
    with netns() as ns:
        yield ns


def ask(ns, client, request, *replies, forge=None):
    with responder(ns, *replies, forge=forge) as gateway:
        proc = ns.run(client, GATEWAY, *request)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    status, *fields = proc.stdout.splitlines()
    code = int(status.split()[0].removeprefix("rc="))
    return code, (fields[0] if fields else ""), gateway.requests


def test_well_formed_public_address_reply(ns, client):
    code, fields, requests = ask(ns, client, PUBLIC_REQUEST, PUBLIC_OK)

    assert code == 0
    assert fields == PUBLIC_FIELDS
    assert requests == [bytes([0, 0])]


def test_well_formed_mapping_reply(ns, client):
    code, fields, requests = ask(ns, client, UDP_REQUEST, UDP_OK)

    assert code == 0
    assert fields == UDP_FIELDS
    assert requests == [bytes.fromhex("000100001f90238200000e10")]


@pytest.mark.parametrize(
    ("request_", "reply"),
    [
        pytest.param(PUBLIC_REQUEST, PUBLIC_OK[:16], id="public-8-bytes"),
        pytest.param(PUBLIC_REQUEST, PUBLIC_OK[:22], id="public-11-bytes"),
        pytest.param(PUBLIC_REQUEST, PUBLIC_OK[:8], id="public-4-bytes"),
        pytest.param(PUBLIC_REQUEST, "", id="public-empty"),
        pytest.param(UDP_REQUEST, UDP_OK[:24], id="mapping-12-bytes"),
        pytest.param(UDP_REQUEST, UDP_OK[:30], id="mapping-15-bytes"),
        pytest.param(PUBLIC_REQUEST, "00800002", id="error-4-bytes"),
    ],
)
def test_short_reply_is_malformed(ns, client, request_, reply):
    code, fields, _ = ask(ns, client, request_, reply)

    assert code == MALFORMED, fields


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        pytest.param("01" + PUBLIC_OK[2:], UNSUPPORTEDVERSION, id="version-1"),
        pytest.param("02" + PUBLIC_OK[2:], UNSUPPORTEDVERSION, id="version-2"),
        pytest.param("0000" + PUBLIC_OK[4:], UNSUPPORTEDOPCODE, id="opcode-0"),
        pytest.param("0083" + PUBLIC_OK[4:], UNSUPPORTEDOPCODE, id="opcode-131"),
        pytest.param("0080" + "0002" + EPOCH, NOTAUTHORIZED, id="result-2"),
    ],
)
def test_rejected_reply_is_an_error(ns, client, reply, expected):
    code, fields, _ = ask(ns, client, PUBLIC_REQUEST, reply)

    assert code == expected, fields


@pytest.mark.parametrize(
    ("request_", "stale", "answer", "expected"),
    [
        pytest.param(
            PUBLIC_REQUEST, UDP_ZERO_OK, PUBLIC_OK, PUBLIC_FIELDS, id="udp-to-public"
        ),
        pytest.param(UDP_REQUEST, PUBLIC_OK, UDP_OK, UDP_FIELDS, id="public-to-udp"),
        pytest.param(
            UDP_REQUEST, PUBLIC_REFUSED, UDP_OK, UDP_FIELDS, id="public-error-to-udp"
        ),
        pytest.param(UDP_REQUEST, TCP_OK, UDP_OK, UDP_FIELDS, id="tcp-to-udp"),
    ],
)
def test_reply_to_another_request_is_ignored(
    ns, client, request_, stale, answer, expected
):
    code, fields, requests = ask(ns, client, request_, f"{stale},{answer}")

    assert code == 0, fields
    assert fields == expected
    assert len(requests) == 1


def test_only_replies_to_another_request_mean_no_answer(ns, client):
    code, fields, requests = ask(ns, client, PUBLIC_REQUEST, UDP_ZERO_OK)

    assert code == NOGATEWAYSUPPORT, fields
    assert requests == [bytes([0, 0])] * 2, "expected one retransmission"


# RFC 6886 has the client discard responses that do not come from the
# gateway's address and port. The library connect()s its socket to the
# gateway, so the system already drops them; these tests keep it that way.
@pytest.mark.parametrize(
    "source", ["127.0.0.2:5351", f"{GATEWAY}:5352"], ids=["other-address", "other-port"]
)
def test_reply_from_elsewhere_is_discarded(ns, client, source):
    forged = "0080" + "0000" + EPOCH + "c6336401"  # 198.51.100.1

    code, fields, _ = ask(ns, client, PUBLIC_REQUEST, PUBLIC_OK, forge=(source, forged))

    assert code == 0, fields
    assert fields == PUBLIC_FIELDS
