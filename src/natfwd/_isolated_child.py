"""The worker process of :mod:`natfwd.isolated`: runs natfwd's C calls.

Started as ``python -m natfwd._isolated_child``. It reads requests from
stdin and writes replies to stdout, one frame each: a 4-byte big-endian
length, then a pickle. A request is ``(operation, args, kwargs)``; a reply
is ``("ok", value)`` or ``("error", encoded exception)``. The process ends
when stdin does, so it never outlives its host.

Both ends are the same natfwd installation, started by the host itself:
the pickles never come from anywhere else.
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import sys

import natfwd
from natfwd._exceptions import NatfwdError

HEADER = struct.Struct(">I")

# What a host may call on a gateway it found.
GATEWAY_METHODS = frozenset(
    {"add", "remove", "mappings", "status", "external_address", "remove_added"}
)


def encode_exception(exc: BaseException) -> tuple:
    """An exception as plain data the host can rebuild.

    natfwd's exceptions take arguments their ``args`` do not hold, so they
    travel as class name, message and attributes instead of as pickles.
    """
    if isinstance(exc, NatfwdError):
        attributes = {}
        for key, value in vars(exc).items():
            try:
                pickle.dumps(value)
            except Exception:
                attributes[key] = repr(value)
            else:
                attributes[key] = value
        return ("natfwd", type(exc).__name__, str(exc), attributes)
    try:
        return ("pickle", pickle.dumps(exc))
    except Exception:
        return ("other", type(exc).__name__, str(exc))


def read_frame(fd: int) -> bytes | None:
    """One frame's payload, or None at the end of the stream."""
    header = _read_exactly(fd, HEADER.size)
    if header is None:
        return None
    (size,) = HEADER.unpack(header)
    payload = _read_exactly(fd, size)
    if payload is None:
        raise EOFError("the stream ended inside a frame")
    return payload


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks = []
    while size:
        chunk = os.read(fd, size)
        if not chunk:
            if chunks:
                raise EOFError("the stream ended inside a frame")
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def write_frame(fd: int, payload: bytes) -> None:
    data = HEADER.pack(len(payload)) + payload
    while data:
        written = os.write(fd, data)
        data = data[written:]


class Worker:
    """The gateways found so far, by handle."""

    def __init__(self) -> None:
        self._gateways: dict[int, natfwd.Gateway] = {}
        self._next = 1

    def handle(self, operation: str, args: tuple, kwargs: dict) -> object:
        if operation == "ping":
            return os.getpid()
        if operation == "find_gateway":
            gateway = natfwd.find_gateway(**kwargs)
            handle = self._next
            self._next += 1
            self._gateways[handle] = gateway
            return handle, gateway.method, gateway.address
        if operation == "close":
            gateway = self._gateways.pop(args[0], None)
            if gateway is not None:
                gateway.close()
            return None
        if operation == "gateway":
            handle, method, *rest = args
            if method not in GATEWAY_METHODS:
                raise ValueError(f"no gateway method {method!r} may be called")
            gateway = self._gateways.get(handle)
            if gateway is None:
                raise NatfwdError("the gateway was closed")
            return getattr(gateway, method)(*rest, **kwargs)
        raise ValueError(f"unknown operation {operation!r}")


def main() -> int:
    # Replies go to a private copy of stdout; whatever C code prints goes to
    # stderr instead, so it cannot corrupt a frame.
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the host's
    replies = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    requests = 0

    worker = Worker()
    while True:
        payload = read_frame(requests)
        if payload is None:
            return 0
        operation, args, kwargs = pickle.loads(payload)
        try:
            reply = ("ok", worker.handle(operation, args, kwargs))
        except BaseException as exc:  # every failure goes back to the host
            reply = ("error", encode_exception(exc))
        try:
            data = pickle.dumps(reply)
        except Exception as exc:
            data = pickle.dumps(("error", encode_exception(exc)))
        write_frame(replies, data)


if __name__ == "__main__":
    sys.exit(main())
