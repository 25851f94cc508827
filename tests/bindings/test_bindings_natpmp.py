"""natfwd._natpmp against a NAT-PMP responder in the test's own namespace.

The client is given the gateway address (``initnatpmp(p, 1, addr)``), so no
gateway is looked up, and the address exists only inside the namespace.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import time
from collections.abc import Iterator

import pytest
from natpmp_netns import GATEWAY, NatpmpResponder, NetNamespace

#: Longest a request may take, retries included, before the test gives up.
DEADLINE = 10.0
#: Most reads one request may take (each waits at most the retry timeout).
MAX_READS = 64


def in_addr(text: str) -> int:
    """The in_addr_t libnatpmp wants: the address in network byte order."""
    return struct.unpack("=I", socket.inet_aton(text))[0]


@contextlib.contextmanager
def client(natpmp, netns: NetNamespace) -> Iterator[object]:
    ffi, lib = natpmp.ffi, natpmp.lib
    handle = ffi.new("natpmp_t *")

    with netns.entered():
        rc = lib.initnatpmp(handle, 1, in_addr(GATEWAY))
    assert rc == 0, f"initnatpmp returned {rc}"
    try:
        yield handle
    finally:
        assert lib.closenatpmp(handle) == 0


def read_reply(natpmp, handle) -> tuple[int, object]:
    """Wait for the reply to the pending request, as libnatpmp's users do."""
    ffi, lib = natpmp.ffi, natpmp.lib
    response = ffi.new("natpmpresp_t *")
    timeout = ffi.new("long *")
    deadline = time.monotonic() + DEADLINE

    for _ in range(MAX_READS):
        rc = lib.natfwd_natpmp_timeout_ms(handle, timeout)
        assert rc == 0, f"natfwd_natpmp_timeout_ms returned {rc}"
        wait = min(timeout[0] / 1000, max(deadline - time.monotonic(), 0))
        select.select([handle.s], [], [], wait)
        rc = lib.readnatpmpresponseorretry(handle, response)
        if rc != lib.NATPMP_TRYAGAIN or time.monotonic() > deadline:
            return rc, response
    pytest.fail(f"no NAT-PMP reply after {MAX_READS} reads")


def public_address(natpmp, response) -> str:
    value = natpmp.lib.natfwd_natpmp_public_address(response)
    return socket.inet_ntoa(struct.pack("=I", value))


def mapping(natpmp, response) -> tuple[int, int, int]:
    ffi, lib = natpmp.ffi, natpmp.lib
    private, public = ffi.new("uint16_t *"), ffi.new("uint16_t *")
    lifetime = ffi.new("uint32_t *")

    lib.natfwd_natpmp_mapping(response, private, public, lifetime)

    return private[0], public[0], lifetime[0]


def test_public_address(natpmp, gateway_netns, natpmp_gateway: NatpmpResponder):
    lib = natpmp.lib
    natpmp_gateway.answer.public_address = "100.128.0.7"
    natpmp_gateway.answer.epoch = 123456

    with client(natpmp, gateway_netns) as handle:
        assert lib.sendpublicaddressrequest(handle) == 2
        rc, response = read_reply(natpmp, handle)

    assert rc == 0
    assert response.type == lib.NATPMP_RESPTYPE_PUBLICADDRESS
    assert response.resultcode == 0
    assert response.epoch == 123456
    assert public_address(natpmp, response) == "100.128.0.7"
    (request,) = natpmp_gateway.requests
    assert request.data == b"\x00\x00"
    assert request.source[0] == GATEWAY


@pytest.mark.parametrize(
    ("protocol", "opcode"), [("NATPMP_PROTOCOL_UDP", 1), ("NATPMP_PROTOCOL_TCP", 2)]
)
def test_new_port_mapping(
    natpmp, gateway_netns, natpmp_gateway: NatpmpResponder, protocol, opcode
):
    lib = natpmp.lib
    natpmp_gateway.answer.public_port = 61000
    natpmp_gateway.answer.lifetime = 1800
    natpmp_gateway.answer.epoch = 77

    with client(natpmp, gateway_netns) as handle:
        sent = lib.sendnewportmappingrequest(
            handle, getattr(lib, protocol), 8080, 40000, 3600
        )
        assert sent == 12
        rc, response = read_reply(natpmp, handle)

    assert rc == 0
    assert response.type == opcode
    assert response.epoch == 77
    assert mapping(natpmp, response) == (8080, 61000, 1800)
    (request,) = natpmp_gateway.requests
    assert request.opcode == opcode
    assert request.mapping() == (8080, 40000, 3600)


def test_delete_mapping_is_lifetime_zero(
    natpmp, gateway_netns, natpmp_gateway: NatpmpResponder
):
    lib = natpmp.lib
    natpmp_gateway.answer.public_port = 0

    with client(natpmp, gateway_netns) as handle:
        lib.sendnewportmappingrequest(handle, lib.NATPMP_PROTOCOL_TCP, 8080, 0, 0)
        rc, response = read_reply(natpmp, handle)

    assert rc == 0
    assert mapping(natpmp, response) == (8080, 0, 0)
    assert natpmp_gateway.requests[0].mapping() == (8080, 0, 0)


@pytest.mark.parametrize(
    ("result", "error"),
    [
        (2, "NATPMP_ERR_NOTAUTHORIZED"),
        (3, "NATPMP_ERR_NETWORKFAILURE"),
        (4, "NATPMP_ERR_OUTOFRESOURCES"),
    ],
)
def test_gateway_result_codes(
    natpmp, gateway_netns, natpmp_gateway: NatpmpResponder, result, error
):
    lib = natpmp.lib
    natpmp_gateway.answer.result = result
    natpmp_gateway.answer.epoch = 9

    with client(natpmp, gateway_netns) as handle:
        lib.sendnewportmappingrequest(handle, lib.NATPMP_PROTOCOL_UDP, 5000, 5000, 60)
        rc, response = read_reply(natpmp, handle)

    assert rc == getattr(lib, error)
    assert response.resultcode == result
    assert response.epoch == 9


def test_retry_after_lost_request(
    natpmp, gateway_netns, natpmp_gateway: NatpmpResponder
):
    """libnatpmp resends after 250 ms, and the timeout shim says when."""
    ffi, lib = natpmp.ffi, natpmp.lib
    natpmp_gateway.answer.drop = 1
    timeout = ffi.new("long *")

    with client(natpmp, gateway_netns) as handle:
        lib.sendpublicaddressrequest(handle)
        assert lib.natfwd_natpmp_timeout_ms(handle, timeout) == 0
        first_wait = timeout[0]
        rc, response = read_reply(natpmp, handle)

    assert 0 < first_wait <= 250
    assert rc == 0
    assert public_address(natpmp, response) == natpmp_gateway.answer.public_address
    assert len(natpmp_gateway.requests) == 2


def test_timeout_without_pending_request(natpmp, gateway_netns):
    ffi, lib = natpmp.ffi, natpmp.lib
    timeout = ffi.new("long *")

    with client(natpmp, gateway_netns) as handle:
        rc = lib.natfwd_natpmp_timeout_ms(handle, timeout)

    assert rc == lib.NATPMP_ERR_NOPENDINGREQ


def test_no_gateway_listening(natpmp, gateway_netns):
    """Nothing on port 5351: the kernel's refusal ends the wait at once."""
    lib = natpmp.lib

    with client(natpmp, gateway_netns) as handle:
        lib.sendpublicaddressrequest(handle)
        rc, _ = read_reply(natpmp, handle)

    assert rc == lib.NATPMP_ERR_NOGATEWAYSUPPORT


@pytest.mark.parametrize(("request_type", "length"), [("address", 10), ("mapping", 12)])
def test_short_reply_is_malformed(
    natpmp, gateway_netns, natpmp_gateway: NatpmpResponder, request_type, length
):
    """The fork reports a truncated reply instead of reading past its end."""
    ffi, lib = natpmp.ffi, natpmp.lib
    origin = ffi.string(lib.natfwd_library_origin())
    if not origin.startswith(b"natfwd fork"):
        assert lib.NATFWD_NATPMP_ERR_MALFORMED == -1000
        pytest.skip(f"only natfwd's fork checks reply lengths; built with {origin!r}")
    natpmp_gateway.answer.truncate = length

    with client(natpmp, gateway_netns) as handle:
        if request_type == "address":
            lib.sendpublicaddressrequest(handle)
        else:
            lib.sendnewportmappingrequest(handle, lib.NATPMP_PROTOCOL_TCP, 80, 80, 60)
        rc, _ = read_reply(natpmp, handle)

    assert rc == lib.NATFWD_NATPMP_ERR_MALFORMED
