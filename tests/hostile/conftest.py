"""Hostile and broken gateways: what miniupnpd in the lab cannot imitate.

The UPnP responder (``upnp_responder.HostileIGD``) listens on 127.0.0.1 of
the test's own network namespace; the NAT-PMP one on port 5351 there too.
The CLI runs in that namespace (``ip netns exec``), so even a search that
should not happen reaches nothing but the namespace's own loopback. Every
test checks what it was told against what the responder recorded: a
mapping the responder made must be reported as made, or be gone.

These tests need root and ``ip``: without them they are skipped (CI runs
them as root).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from natpmp_responder import HostileNatpmp
from netns import Netns, unavailable_reason
from upnp_responder import HostileIGD

from natfwd.cli import main


@dataclasses.dataclass
class Run:
    code: int
    out: str
    err: list[str]
    elapsed: float

    @property
    def error(self) -> str:
        """The one error line; fails the test unless there is exactly one."""
        assert len(self.err) == 1, f"expected one line on stderr, got {self.err}"
        assert self.err[0].startswith("natfwd: "), self.err
        assert self.err[0].isprintable(), self.err
        return self.err[0]


@pytest.fixture(scope="session")
def netns() -> Iterator[Netns]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    namespace = Netns(f"natfwd-hostile-{os.getpid()}")
    try:
        yield namespace
    finally:
        namespace.delete()


def _run(netns: Netns, argv: list[str], timeout: float, capfd, process: bool) -> Run:
    """Run the CLI in the namespace: in a process of its own as a user
    would, or (much faster) by calling its main() on a thread that enters
    the namespace. Either way stderr is read at the file descriptor, so
    what the C libraries print there counts too."""
    argv = [*argv, "--timeout", f"{timeout:g}"]
    start = time.monotonic()
    if process:
        proc = subprocess.run(
            netns.command([sys.executable, "-m", "natfwd", *argv]),
            capture_output=True,
            text=True,
            timeout=timeout + 30,
            check=False,
        )
        code, out, err = proc.returncode, proc.stdout, proc.stderr
    else:
        capfd.readouterr()
        with netns.entered():
            code = main(argv)
        out, err = capfd.readouterr()
    return Run(code, out, err.splitlines(), time.monotonic() - start)


@pytest.fixture
def igd(netns: Netns) -> Iterator[HostileIGD]:
    with netns.entered():
        server = HostileIGD(1)
        server.__enter__()
    try:
        yield server
    finally:
        server.__exit__(None, None, None)


@pytest.fixture
def igd2(netns: Netns) -> Iterator[HostileIGD]:
    with netns.entered():
        server = HostileIGD(2)
        server.__enter__()
    try:
        yield server
    finally:
        server.__exit__(None, None, None)


@pytest.fixture
def upnp_cli(netns: Netns, capfd):
    """Run natfwd against a HostileIGD, over UPnP only."""

    def run(
        server: HostileIGD, *argv: str, timeout: float = 3.0, process: bool = False
    ) -> Run:
        argv = (*argv, "--via", "upnp", "--upnp-url", server.location)
        return _run(netns, list(argv), timeout, capfd, process)

    return run


@pytest.fixture
def natpmp_gateway(netns: Netns) -> Iterator[HostileNatpmp]:
    """A NAT-PMP responder, started when the test enters it."""
    server = HostileNatpmp(netns)
    yield server
    server.__exit__(None, None, None)


@pytest.fixture
def natpmp_cli(netns: Netns, capfd):
    """Run natfwd against the namespace's 127.0.0.1, over NAT-PMP only."""

    def run(*argv: str, timeout: float = 2.0, process: bool = False) -> Run:
        argv = (*argv, "--via", "natpmp", "--gateway", "127.0.0.1")
        return _run(netns, list(argv), timeout, capfd, process)

    return run


@pytest.fixture
def search_cli(netns: Netns, capfd):
    """Run natfwd with a UPnP search of the namespace's 127.0.0.1 alone."""

    def run(*argv: str, timeout: float = 2.0, process: bool = False) -> Run:
        argv = (*argv, "--via", "upnp", "--gateway", "127.0.0.1")
        return _run(netns, list(argv), timeout, capfd, process)

    return run
