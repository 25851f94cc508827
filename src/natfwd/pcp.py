"""PCP gateways (Port Control Protocol, RFC 6887): MAP requests over IPv4.

PCP is NAT-PMP's successor, on the same port of the gateway. It has no C
library to build on, so natfwd speaks it here, with every reply checked in
full before anything in it is used::

    from natfwd import pcp

    with pcp.Client() as client:
        mapping = client.map("tcp", 9001, 9001, lifetime=3600)
        print(mapping.external_address, mapping.external_port)

A PCP gateway ties each mapping to a 96-bit nonce and lets only the same
nonce renew or delete it. natfwd derives the nonce from a secret kept in its
state folder (see :func:`natfwd._paths.state_dir`), so that a later process
on the same host can remove what an earlier one mapped; without a state
folder the nonce lives as long as the process.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import random
import selectors
import socket
import struct
import time
from typing import NamedTuple

from natfwd._deadline import Deadline
from natfwd._exceptions import (
    GatewayError,
    GatewayTimeout,
    MalformedReply,
    PCPError,
    PCPResult,
)
from natfwd._paths import state_dir
from natfwd._validate import (
    Protocol,
    check_address,
    check_lease,
    check_port,
    check_protocol,
)

__all__ = ["Announcement", "Client", "Mapping"]

log = logging.getLogger(__name__)
wire = logging.getLogger("natfwd.wire")

PCP_PORT = 5351
VERSION = 2
OPCODE_ANNOUNCE = 0
OPCODE_MAP = 1
RESPONSE_BIT = 0x80

# Common header of requests and of responses, then the MAP opcode's fields,
# the same in both directions (RFC 6887, sections 7.1, 7.2 and 11.1).
REQUEST_HEADER = struct.Struct("!BBHI16s")
RESPONSE_HEADER = struct.Struct("!BBxBII12x")
MAP_FIELDS = struct.Struct("!12sB3xHH16s")
MAX_MESSAGE = 1100

# IANA protocol numbers, as MAP carries them.
PROTOCOL_NUMBERS = {Protocol.TCP: 6, Protocol.UDP: 17}

# Retransmission (section 8.1.1): the first after about 3 s, then doubling.
INITIAL_RETRANSMIT = 3.0
LONGEST_RETRANSMIT = 1024.0

SECRET_FILE = "pcp-nonce-secret"


class Announcement(NamedTuple):
    """An ANNOUNCE reply: the gateway's epoch (seconds since its state began)."""

    epoch: int


class Mapping(NamedTuple):
    """A MAP reply: what the gateway granted. Lifetime 0: mapping deleted."""

    protocol: Protocol
    internal_port: int
    external_port: int
    external_address: str
    lifetime: int
    epoch: int


def _mapped(address: str) -> bytes:
    """An IPv4 address as PCP carries it: IPv4-mapped IPv6."""
    return ipaddress.IPv6Address(f"::ffff:{address}").packed


def _unmapped(packed: bytes) -> str | None:
    """The IPv4 address in an IPv4-mapped IPv6 field, or None."""
    mapped = ipaddress.IPv6Address(packed).ipv4_mapped
    return None if mapped is None else str(mapped)


def _secret() -> bytes:
    """The host's nonce secret, made on first use; the process's without a
    state folder."""
    folder = state_dir()
    if folder is None:
        return _PROCESS_SECRET
    path = folder / SECRET_FILE

    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        log.debug("PCP: cannot keep a nonce secret at %s: %s", path, exc)
        return _PROCESS_SECRET
    else:
        with os.fdopen(fd, "w") as file:
            file.write(os.urandom(32).hex() + "\n")

    try:
        secret = bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError) as exc:
        log.debug("PCP: unreadable nonce secret at %s: %s", path, exc)
        return _PROCESS_SECRET
    return secret if len(secret) >= 16 else _PROCESS_SECRET


_PROCESS_SECRET = os.urandom(32)


def default_gateway() -> str:
    """The default route's gateway, as libnatpmp finds it."""
    from natfwd import natpmp  # noqa: PLC0415 (loads the C library only here)

    with natpmp.Client() as client:
        return client.gateway


class Client:
    """A PCP client bound to one gateway (by default the default route's).

    *port* is the gateway's PCP port, 5351 everywhere but in tests.
    """

    def __init__(self, gateway: str | None = None, *, port: int = PCP_PORT) -> None:
        self.gateway = (
            default_gateway() if gateway is None else check_address(gateway, "gateway")
        )
        port = check_port(port, "PCP port")
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._sock.setblocking(False)
            self._sock.connect((self.gateway, port))
            self.client_address = self._sock.getsockname()[0]
        except OSError as exc:
            self._sock.close()
            raise GatewayError(
                f"PCP: cannot reach {self.gateway}: {exc.strerror or exc}",
                gateway=self.gateway,
            ) from exc
        self._secret = _secret()
        log.debug("PCP client %s for gateway %s", self.client_address, self.gateway)

    def close(self) -> None:
        """Close the socket. Safe to call more than once."""
        self._sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- requests -----------------------------------------------------------

    def announce(
        self, *, timeout: float | None = 2.0, deadline: Deadline | None = None
    ) -> Announcement:
        """ANNOUNCE: whether the gateway speaks PCP, and its epoch."""
        deadline = Deadline.given(deadline, timeout, 2.0)
        request = REQUEST_HEADER.pack(
            VERSION, OPCODE_ANNOUNCE, 0, 0, _mapped(self.client_address)
        )

        result, _lifetime, epoch, _body = self._exchange(
            "ANNOUNCE", request, OPCODE_ANNOUNCE, deadline, lambda body: True
        )

        self._check("ANNOUNCE", result)
        return Announcement(epoch=epoch)

    def map(
        self,
        protocol: Protocol | str,
        internal_port: int,
        external_port: int = 0,
        *,
        lifetime: int = 3600,
        timeout: float | None = 2.0,
        deadline: Deadline | None = None,
    ) -> Mapping:
        """MAP: ask for a mapping; external_port 0 lets the gateway choose."""
        protocol = check_protocol(protocol)
        internal_port = check_port(internal_port, "internal port")
        external_port = check_port(external_port, "external port", allow_zero=True)
        lifetime = check_lease(lifetime)
        deadline = Deadline.given(deadline, timeout, 2.0)
        return self._map(protocol, internal_port, external_port, lifetime, deadline)

    def unmap(
        self,
        protocol: Protocol | str,
        internal_port: int,
        *,
        timeout: float | None = 2.0,
        deadline: Deadline | None = None,
    ) -> None:
        """Delete the mapping of *internal_port* (MAP with lifetime 0)."""
        protocol = check_protocol(protocol)
        internal_port = check_port(internal_port, "internal port")
        deadline = Deadline.given(deadline, timeout, 2.0)
        self._map(protocol, internal_port, 0, 0, deadline)

    def nonce(self, protocol: Protocol, internal_port: int) -> bytes:
        """The mapping nonce for one internal port: the same in every process
        of this host that shares the state folder."""
        key = f"{self.client_address}/{protocol.value}/{internal_port}".encode()
        return hmac.new(self._secret, key, hashlib.sha256).digest()[:12]

    def _map(
        self,
        protocol: Protocol,
        internal_port: int,
        external_port: int,
        lifetime: int,
        deadline: Deadline,
    ) -> Mapping:
        what = "MAP delete" if lifetime == 0 else "MAP"
        nonce = self.nonce(protocol, internal_port)
        number = PROTOCOL_NUMBERS[protocol]
        request = REQUEST_HEADER.pack(
            VERSION, OPCODE_MAP, 0, lifetime, _mapped(self.client_address)
        ) + MAP_FIELDS.pack(
            nonce, number, internal_port, external_port, _mapped("0.0.0.0")
        )

        def ours(body: bytes) -> bool:
            # A reply to another of our requests (another port, an older
            # nonce) is not the answer to this one.
            if len(body) < MAP_FIELDS.size:
                return True
            got_nonce, got_number, got_port, _, _ = MAP_FIELDS.unpack_from(body)
            return (got_nonce, got_number, got_port) == (nonce, number, internal_port)

        result, granted, epoch, body = self._exchange(
            what, request, OPCODE_MAP, deadline, ours
        )

        self._check(what, result)
        if len(body) < MAP_FIELDS.size:
            raise MalformedReply(
                f"PCP {what} reply from {self.gateway} is {len(body)} bytes "
                f"short of its MAP fields",
                gateway=self.gateway,
            )
        _, _, _, assigned_port, assigned = MAP_FIELDS.unpack_from(body)
        address = _unmapped(assigned)
        if lifetime and (address is None or not assigned_port):
            raise MalformedReply(
                f"PCP {what}: the gateway granted no IPv4 address and port",
                gateway=self.gateway,
            )
        return Mapping(
            protocol=protocol,
            internal_port=internal_port,
            external_port=assigned_port,
            external_address=address or "",
            lifetime=granted,
            epoch=epoch,
        )

    # -- the exchange -------------------------------------------------------

    def _exchange(self, what, request, opcode, deadline, ours):
        """Send *request* until a valid reply to it comes, or *deadline*.

        Returns (result code, lifetime, epoch, opcode-specific bytes).
        """
        interval = INITIAL_RETRANSMIT * random.uniform(0.9, 1.1)
        next_send = time.monotonic()

        with selectors.DefaultSelector() as selector:
            selector.register(self._sock, selectors.EVENT_READ)
            while not deadline.expired():
                now = time.monotonic()
                if now >= next_send:
                    wire.debug(
                        "PCP %s -> %s (%d bytes)", what, self.gateway, len(request)
                    )
                    try:
                        self._sock.send(request)
                    except OSError as exc:
                        raise self._socket_error(what, exc) from exc
                    next_send = now + interval
                    interval = min(interval * 2, LONGEST_RETRANSMIT)
                wait = min(deadline.remaining(), max(0.0, next_send - now))
                if not selector.select(wait):
                    continue
                reply = self._receive(what, opcode, ours)
                if reply is not None:
                    return reply
        raise GatewayTimeout(
            f"PCP {what}: no answer from {self.gateway} before the deadline",
            gateway=self.gateway,
        )

    def _receive(self, what, opcode, ours):
        try:
            data = self._sock.recv(MAX_MESSAGE + 1)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            raise self._socket_error(what, exc) from exc
        wire.debug("PCP %s <- %d bytes", what, len(data))

        if len(data) >= 4 and data[0] == 0:
            # A NAT-PMP gateway's answer: it does not speak PCP.
            raise PCPError(what, PCPResult.UNSUPP_VERSION, gateway=self.gateway)
        if len(data) < RESPONSE_HEADER.size or len(data) > MAX_MESSAGE or len(data) % 4:
            raise MalformedReply(
                f"PCP {what}: a reply of {len(data)} bytes from {self.gateway} "
                f"is not a PCP message",
                gateway=self.gateway,
            )
        version, r_opcode, result, lifetime, epoch = RESPONSE_HEADER.unpack_from(data)
        if version != VERSION:
            raise MalformedReply(
                f"PCP {what}: the reply from {self.gateway} is of version {version}",
                gateway=self.gateway,
            )
        if r_opcode != RESPONSE_BIT | opcode:
            log.debug("PCP: ignored a reply with opcode %#x", r_opcode)
            return None
        body = data[RESPONSE_HEADER.size :]
        if not ours(body):
            log.debug("PCP: ignored a reply to another request")
            return None
        return result, lifetime, epoch, body

    def _socket_error(self, what: str, exc: OSError) -> GatewayError:
        if isinstance(exc, ConnectionRefusedError):
            return GatewayError(
                f"PCP {what}: {self.gateway} refused it (no PCP service there)",
                gateway=self.gateway,
            )
        return GatewayError(
            f"PCP {what}: {exc.strerror or exc} talking to {self.gateway}",
            gateway=self.gateway,
        )

    def _check(self, what: str, result: int) -> None:
        """The one place PCP result codes become exceptions."""
        if result != PCPResult.SUCCESS:
            raise PCPError(what, result, gateway=self.gateway)
