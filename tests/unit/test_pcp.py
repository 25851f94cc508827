"""natfwd.pcp against a PCP responder on loopback, well-behaved and not.

The responder answers each request with whatever the test tells it to, so
every way a reply can be wrong is met once: short, long, of another version,
for another request, refusing, or silent.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from natfwd import GatewayTimeout, MalformedReply, PCPError, PCPResult, pcp

Reply = Callable[[bytes], list[bytes]]


def mapped(address: str) -> bytes:
    return b"\0" * 10 + b"\xff\xff" + socket.inet_aton(address)


def map_reply(
    request: bytes,
    *,
    result: int = 0,
    lifetime: int | None = None,
    epoch: int = 42,
    external_port: int | None = None,
    address: str = "203.0.113.5",
    version: int = 2,
    opcode: int = 0x81,
) -> bytes:
    """The reply a good gateway gives to a MAP request, altered as asked."""
    asked = struct.unpack_from("!I", request, 4)[0]
    nonce, proto, port, suggested = struct.unpack_from("!12sB3xHH", request, 24)
    header = struct.pack(
        "!BBxBII12x",
        version,
        opcode,
        result,
        asked if lifetime is None else lifetime,
        epoch,
    )
    body = struct.pack(
        "!12sB3xHH16s",
        nonce,
        proto,
        port,
        (suggested or port) if external_port is None else external_port,
        mapped(address),
    )
    return [header + body]


class Responder:
    """A UDP server on 127.0.0.1 that answers by a function of the request."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.reply: Reply = map_reply
        self.requests: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            self.requests.append(data)
            for datagram in self.reply(data):
                self.sock.sendto(datagram, peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def responder() -> Iterator[Responder]:
    server = Responder()
    yield server
    server.close()


@pytest.fixture
def client(responder: Responder, tmp_path, monkeypatch) -> Iterator[pcp.Client]:
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))
    with pcp.Client("127.0.0.1", port=responder.port) as c:
        yield c


def test_map_returns_what_was_granted(responder, client):
    responder.reply = lambda r: map_reply(r, lifetime=600, external_port=19001)

    mapping = client.map("tcp", 9001, 9001, lifetime=3600, timeout=2)

    assert (mapping.external_port, mapping.lifetime) == (19001, 600)
    assert (mapping.external_address, mapping.epoch) == ("203.0.113.5", 42)
    version, opcode, _, lifetime, client_ip = struct.unpack_from(
        "!BBHI16s", responder.requests[0]
    )
    assert (version, opcode, lifetime) == (2, 1, 3600)
    assert client_ip == mapped("127.0.0.1")


def test_nonce_survives_the_process_through_the_state_folder(
    responder, tmp_path, monkeypatch
):
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))
    with pcp.Client("127.0.0.1", port=responder.port) as first:
        nonce = first.nonce(pcp.Protocol.TCP, 9001)
    with pcp.Client("127.0.0.1", port=responder.port) as second:
        assert second.nonce(pcp.Protocol.TCP, 9001) == nonce
        assert second.nonce(pcp.Protocol.UDP, 9001) != nonce
    assert (tmp_path / pcp.SECRET_FILE).stat().st_mode & 0o077 == 0


def test_refusal_carries_the_result_code(responder, client):
    responder.reply = lambda r: map_reply(r, result=PCPResult.NOT_AUTHORIZED)

    with pytest.raises(PCPError) as caught:
        client.map("udp", 9001, lifetime=60, timeout=2)

    assert caught.value.code is PCPResult.NOT_AUTHORIZED


def test_a_natpmp_gateway_answers_unsupported_version(responder, client):
    responder.reply = lambda r: [struct.pack("!BBHI", 0, 0x81, 1, 1234)]

    with pytest.raises(PCPError) as caught:
        client.announce(timeout=2)

    assert caught.value.code is PCPResult.UNSUPP_VERSION


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(lambda r: [map_reply(r)[0][:20]], id="shorter than a header"),
        pytest.param(lambda r: [map_reply(r)[0][:40]], id="MAP fields cut"),
        pytest.param(lambda r: [map_reply(r)[0] + b"\0\0"], id="not 4-byte aligned"),
        pytest.param(lambda r: [map_reply(r)[0] + b"\0" * 1100], id="too long"),
        pytest.param(lambda r: map_reply(r, version=3), id="version 3"),
        pytest.param(
            lambda r: [map_reply(r)[0][:44] + b"\x20\x01" + b"\0" * 14],
            id="IPv6 address",
        ),
    ],
)
def test_malformed_replies_are_refused_as_malformed(responder, client, reply):
    responder.reply = reply

    with pytest.raises(MalformedReply):
        client.map("tcp", 9001, 9001, lifetime=60, timeout=2)


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(lambda r: map_reply(r, opcode=0x80), id="another opcode"),
        pytest.param(
            lambda r: [map_reply(r)[0][:24] + b"x" * 12 + map_reply(r)[0][36:]],
            id="another nonce",
        ),
        pytest.param(lambda r: [], id="silence"),
    ],
)
def test_replies_to_other_requests_are_ignored_until_the_deadline(
    responder, client, reply
):
    responder.reply = reply

    start = time.monotonic()
    with pytest.raises(GatewayTimeout):
        client.map("tcp", 9001, 9001, lifetime=60, timeout=0.5)

    assert time.monotonic() - start < 0.5 + 0.3


def test_a_late_good_reply_after_a_stray_one_is_taken(responder, client):
    def stray_then_good(request: bytes) -> list[bytes]:
        return map_reply(request, opcode=0x80) + map_reply(request, epoch=7)

    responder.reply = stray_then_good

    assert client.map("tcp", 9001, lifetime=60, timeout=2).epoch == 7


def test_unmap_sends_lifetime_zero_with_the_same_nonce(responder, client):
    client.map("tcp", 9001, lifetime=60, timeout=2)
    client.unmap("tcp", 9001, timeout=2)

    created, deleted = responder.requests
    assert struct.unpack_from("!I", deleted, 4)[0] == 0
    assert created[24:36] == deleted[24:36]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((("sctp", 9001)), "protocol"),
        ((("tcp", 0)), "internal port"),
        ((("tcp", 9001, 70000)), "external port"),
    ],
)
def test_bad_arguments_send_nothing(responder, client, args, message):
    with pytest.raises(ValueError, match=message):
        client.map(*args, timeout=1)

    assert responder.requests == []
