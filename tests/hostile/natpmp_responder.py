"""A NAT-PMP gateway (RFC 6886) that can be made to misbehave.

``HostileNatpmp`` answers on port 5351 of an address in a test's namespace.
Left alone it is correct: it keeps a table of mappings, grants what is asked
and removes on a lifetime of 0. A test bends it with:

- ``result``: the result code of every reply (0 success, 1..5, or any),
  ``map_result`` that of mapping replies only;
- ``grant_port`` / ``grant_lifetime``: grant something other than asked;
- ``mangle``: a function turning each correct reply into the bytes sent
  (truncated, wrong version or opcode, ...); returning None sends nothing;
- ``apply``: whether a request changes the table (with a reply that goes
  wrong, the gateway may have mapped the port all the same);
- ``reply_from``: another local address to send replies from.

Table changes are recorded in ``events`` as ``("map" | "unmap", protocol,
internal port)``. At most ``MAX_REQUESTS`` requests are served.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import struct
import threading
from collections.abc import Callable

from netns import Netns

NATPMP_PORT = 5351
MAX_REQUESTS = 256
PROTOCOLS = {1: "udp", 2: "tcp"}


@dataclasses.dataclass(frozen=True)
class Granted:
    external_port: int
    lifetime: int


class HostileNatpmp:
    """Use as a context manager; the socket is made inside ``netns``."""

    def __init__(
        self,
        netns: Netns,
        address: str = "127.0.0.1",
        *,
        public_address: str = "100.128.0.7",
    ) -> None:
        self.address = address
        self.public_address = public_address
        self.epoch = 4242
        self.result = 0
        self.map_result: int | None = None
        self.grant_port: int | None = None
        self.grant_lifetime: int | None = None
        self.apply = True
        self.mangle: Callable[[bytes], bytes | None] = lambda reply: reply
        self.reply_from: str | None = None
        self.table: dict[tuple[str, int], Granted] = {}
        self.events: list[tuple[str, str, int]] = []
        self.requests: list[bytes] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock = netns.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((address, NATPMP_PORT))
        self._sock.settimeout(0.05)
        self._other: socket.socket | None = None
        self._netns = netns
        self._thread = threading.Thread(
            target=self._serve, name="hostile-natpmp", daemon=True
        )

    def __enter__(self) -> HostileNatpmp:
        if self.reply_from is not None:
            self._other = self._netns.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._other.bind((self.reply_from, NATPMP_PORT))
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout=5)
        self._sock.close()
        if self._other is not None:
            self._other.close()

    def opcodes(self) -> list[int]:
        with self._lock:
            return [r[1] for r in self.requests if len(r) > 1]

    def _serve(self) -> None:
        served = 0
        while not self._stop.is_set() and served < MAX_REQUESTS:
            try:
                data, peer = self._sock.recvfrom(1100)
            except socket.timeout:
                continue
            except OSError:
                return
            served += 1
            with self._lock:
                self.requests.append(data)
                reply = self._answer(data)
            if reply is None:
                continue
            reply = self.mangle(reply)
            if reply is None:
                continue
            sender = self._other or self._sock
            with contextlib.suppress(OSError):
                sender.sendto(reply, peer)

    def _answer(self, data: bytes) -> bytes | None:
        if len(data) < 2:
            return None
        version, opcode = data[0], data[1]
        if version != 0:
            return struct.pack("!BBHI", 0, 128 + opcode, 1, self.epoch)
        if opcode == 0 and len(data) == 2:
            return struct.pack(
                "!BBHI4s",
                0,
                128,
                self.result,
                self.epoch,
                socket.inet_aton(self.public_address),
            )
        if opcode in PROTOCOLS and len(data) == 12:
            _, _, _, internal, external, lifetime = struct.unpack("!BBHHHI", data)
            result = self.result if self.map_result is None else self.map_result
            granted = self._map(PROTOCOLS[opcode], internal, external, lifetime, result)
            return struct.pack(
                "!BBHIHHI",
                0,
                128 + opcode,
                result,
                self.epoch,
                internal,
                granted.external_port,
                granted.lifetime,
            )
        return struct.pack("!BBHI", 0, 128 + opcode, 5, self.epoch)

    def _map(
        self, protocol: str, internal: int, external: int, lifetime: int, result: int
    ) -> Granted:
        key = (protocol, internal)
        if lifetime == 0:
            if result == 0 and self.apply and key in self.table:
                del self.table[key]
                self.events.append(("unmap", protocol, internal))
            return Granted(0, 0)
        granted = Granted(
            self.grant_port if self.grant_port is not None else external or internal,
            self.grant_lifetime if self.grant_lifetime is not None else lifetime,
        )
        if result == 0 and self.apply:
            self.table[key] = granted
            self.events.append(("map", protocol, internal))
        return granted
