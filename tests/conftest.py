"""What holds for every test: nothing leaves the machine.

Tests talk to loopback, or to the hosts of network namespaces they made
themselves. As a net under that rule, a Python socket of the test process
may connect or send to a non-loopback address only if it lives in another
network namespace than the one the tests started in; any other attempt
fails the test at once. (Programs the tests start, and C code,
are kept inside namespaces by the tests themselves.)
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import socket
import weakref
from collections.abc import Iterator

import pytest

_INITIAL_NETNS = (
    os.readlink("/proc/thread-self/ns/net")
    if os.path.exists("/proc/thread-self/ns/net")
    else None
)


# ioctl(2) asking for the network namespace a socket belongs to (Linux 4.9).
SIOCGSKNS = 0x894C


# The namespace each Python socket was made in: a socket stays there,
# whichever thread uses it later.
_BORN_IN: weakref.WeakKeyDictionary[socket.socket, str] = weakref.WeakKeyDictionary()


def _thread_netns() -> str:
    return os.readlink("/proc/thread-self/ns/net")


def _in_own_namespace(sock: socket.socket) -> bool:
    """Whether *sock* lives in a namespace other than the tests' start one.

    Known from when the socket was made, else asked of the kernel, else
    taken to be the calling thread's.
    """
    if _INITIAL_NETNS is None:
        return False
    born = _BORN_IN.get(sock)
    if born is not None:
        return born != _INITIAL_NETNS
    try:
        fd = fcntl.ioctl(sock.fileno(), SIOCGSKNS)
    except OSError:
        return _thread_netns() != _INITIAL_NETNS
    try:
        return os.readlink(f"/proc/self/fd/{fd}") != _INITIAL_NETNS
    finally:
        os.close(fd)


def _check(sock: socket.socket, address: object) -> None:
    if not isinstance(address, tuple) or not address:
        return  # a Unix socket path
    host = str(address[0]).split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None  # a name: resolved by the test only for loopback ones
    if ip is not None and (ip.is_loopback or ip.is_unspecified):
        return
    if ip is None and host in ("localhost", ""):
        return
    if _in_own_namespace(sock):
        return
    raise AssertionError(
        f"a test tried to reach {host!r} from the host's own network namespace; "
        "tests may only talk to loopback or inside namespaces they make"
    )


@pytest.fixture(autouse=True, scope="session")
def _nothing_leaves_the_machine() -> Iterator[None]:
    originals = {
        name: getattr(socket.socket, name)
        for name in ("connect", "connect_ex", "sendto")
    }

    def guarded(name):
        original = originals[name]

        def method(self, *args):
            _check(self, args[-1] if name == "sendto" else args[0])
            return original(self, *args)

        return method

    original_init = socket.socket.__init__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        if _INITIAL_NETNS is not None:
            _BORN_IN[self] = _thread_netns()

    for name in originals:
        setattr(socket.socket, name, guarded(name))
    socket.socket.__init__ = init
    yield
    for name, original in originals.items():
        setattr(socket.socket, name, original)
    socket.socket.__init__ = original_init
