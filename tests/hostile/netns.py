"""A throw-away network namespace holding nothing but its own loopback.

Tests that need NAT-PMP (always port 5351 of the gateway) or a gateway
search run there: nothing sent inside can reach any other network, and the
namespace has no default route, so a search that should not happen finds
nothing instead of asking a real router.

``Netns.socket()`` makes a socket inside the namespace from the test process
(the calling thread enters it just for the call; a socket stays in the
namespace it was made in). ``Netns.command()`` prefixes a command line with
``ip netns exec``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made here, or None if they can."""
    if not os.path.exists("/proc/thread-self/ns/net"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs the tests as root)"
    if shutil.which("ip") is None:
        return "no 'ip' command: install iproute2"
    return None


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _ip(*args: str) -> None:
    proc = subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=30, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")


class Netns:
    """``ip netns add NAME`` with ``lo`` up; ``delete()`` removes it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.path = f"/run/netns/{name}"
        _ip("netns", "add", name)
        try:
            _ip("-n", name, "link", "set", "lo", "up")
        except BaseException:
            self.delete()
            raise

    def delete(self) -> None:
        if os.path.exists(self.path):
            _ip("netns", "delete", self.name)

    def command(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """The calling thread inside the namespace for the body's length.

        Threads started in the body are born inside it and stay there.
        """
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

    def socket(self, family: int, kind: int) -> socket.socket:
        with self.entered():
            return socket.socket(family, kind)
