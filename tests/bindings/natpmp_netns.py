"""A NAT-PMP gateway inside a network namespace of the test's own.

``NetNamespace`` makes a namespace whose only interface is its own ``lo``,
with the gateway's address added to it, so that nothing sent to the gateway
can leave the machine. ``entered()`` switches the calling thread into it for
as long as sockets are being made: a socket stays in the namespace it was
made in, so once made it can be used from anywhere in the test process.

``NatpmpResponder`` answers NAT-PMP requests (RFC 6886) on UDP port 5351 of
the gateway address with values the test chooses, and records every request.
It serves at most ``MAX_REQUESTS`` requests and stops when the test ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import shutil
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator

#: The gateway address inside the test's namespace (TEST-NET-1, RFC 5737).
GATEWAY = "192.0.2.1"

CLONE_NEWNET = 0x40000000
NATPMP_PORT = 5351
MAX_REQUESTS = 64

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns(CLONE_NEWNET) failed: {os.strerror(err)}")


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made here, or None if they can."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs the tests as root)"
    if shutil.which("ip") is None:
        return "no 'ip' command: install iproute2"
    return None


class NetNamespace:
    """A named network namespace with only ``lo``, deleted by ``delete()``."""

    def __init__(self, name: str, addresses: list[str]) -> None:
        self.name = name
        self.path = f"/run/netns/{name}"
        if os.path.exists(self.path):
            # Left over by a run that was killed; it holds nothing of value.
            self._ip("netns", "delete", name)
        self._ip("netns", "add", name)
        try:
            self._ip("-n", name, "link", "set", "lo", "up")
            for address in addresses:
                self._ip("-n", name, "addr", "add", f"{address}/32", "dev", "lo")
        except BaseException:
            self.delete()
            raise

    @staticmethod
    def _ip(*args: str) -> None:
        proc = subprocess.run(
            ["ip", *args], capture_output=True, text=True, timeout=30, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"'ip {' '.join(args)}' failed ({proc.returncode}): "
                f"{proc.stderr.strip()}"
            )

    def delete(self) -> None:
        if os.path.exists(self.path):
            self._ip("netns", "delete", self.name)

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Run the body with the calling thread inside the namespace."""
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(self.path, os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(own)
        finally:
            os.close(target)
            os.close(own)


@dataclasses.dataclass
class Answer:
    """How the responder answers; the test changes it between requests."""

    public_address: str = "100.128.0.7"
    epoch: int = 4242
    result: int = 0
    public_port: int | None = None  # None: the port asked for
    lifetime: int | None = None  # None: the lifetime asked for
    drop: int = 0  # ignore this many requests before answering
    truncate: int | None = None  # cut every reply to this many bytes


@dataclasses.dataclass(frozen=True)
class Request:
    source: tuple[str, int]
    data: bytes

    @property
    def opcode(self) -> int:
        return self.data[1]

    def mapping(self) -> tuple[int, int, int]:
        """(private port, public port, lifetime) of a mapping request."""
        _, _, _, private, public, lifetime = struct.unpack("!BBHHHI", self.data)
        return private, public, lifetime


class NatpmpResponder:
    """Answers on ``address``:5351; make it inside ``NetNamespace.entered()``."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.answer = Answer()
        self._requests: list[Request] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((address, NATPMP_PORT))
        self._sock.settimeout(0.05)
        self._thread = threading.Thread(
            target=self._serve, name="natpmp-responder", daemon=True
        )

    def __enter__(self) -> NatpmpResponder:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def _serve(self) -> None:
        for _ in range(MAX_REQUESTS):
            data, source = self._receive()
            if data is None:
                return
            with self._lock:
                self._requests.append(Request(source, data))
                answer = self.answer
                if answer.drop > 0:
                    answer.drop -= 1
                    continue
            reply = self._reply(data, answer)
            if reply is not None:
                self._sock.sendto(reply[: answer.truncate], source)

    def _receive(self) -> tuple[bytes | None, tuple[str, int]]:
        while not self._stop.is_set():
            try:
                return self._sock.recvfrom(64)
            except socket.timeout:
                continue
        return None, ("", 0)

    @staticmethod
    def _reply(data: bytes, answer: Answer) -> bytes | None:
        if len(data) < 2:
            return None
        version, opcode = data[0], data[1]
        header = struct.pack(
            "!BBHI", version, 128 + opcode, answer.result, answer.epoch
        )
        if opcode == 0 and len(data) == 2:
            return header + socket.inet_aton(answer.public_address)
        if opcode in (1, 2) and len(data) == 12:
            _, _, _, private, public, lifetime = struct.unpack("!BBHHHI", data)
            if answer.public_port is not None:
                public = answer.public_port
            if answer.lifetime is not None:
                lifetime = answer.lifetime
            return header + struct.pack("!HHI", private, public, lifetime)
        # Anything else is answered "unsupported opcode", as RFC 6886 asks.
        return struct.pack("!BBHI", version, 128 + opcode, 5, answer.epoch)
