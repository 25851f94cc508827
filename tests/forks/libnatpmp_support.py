"""Shared pieces of the libnatpmp fork tests.

Network tests run in a network namespace made for the test and removed after
it: the library, its sample client natpmpc and a scripted gateway
(``libnatpmp_responder.py``) talk over that namespace's own loopback, so no
datagram leaves it and nothing depends on the machine's real gateway.
"""

from __future__ import annotations

import os
import secrets
import selectors
import shutil
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

LIB = "libnatpmp"
ROOT = Path(__file__).resolve().parents[2]
RESPONDER = Path(__file__).resolve().parent / "libnatpmp_responder.py"

#: Seconds any one build step or program run may take.
TIMEOUT = 120

#: The library sources a client harness links, as laid out in the release.
SOURCES = ["natpmp.c", "getgateway.c"]

#: Retries before readnatpmpresponseorretry() gives up: 250 ms + 500 ms.
DEFINES = ["ENABLE_STRNATPMPERR", "NATPMP_MAX_RETRIES=2"]

#: Where the scripted gateway listens, inside the test's namespace.
GATEWAY = "127.0.0.1"

#: What AddressSanitizer and UndefinedBehaviorSanitizer print on a finding.
SANITIZER_MARKS = ("AddressSanitizer", "runtime error:")


def tree() -> Path:
    """The libnatpmp tree under test (see ``conftest.fork_tree``)."""
    override = os.environ.get("NATFWD_FORK_TREE_LIBNATPMP")
    path = Path(override) if override else ROOT / "vendor" / LIB / "tree"
    if not path.is_dir():
        pytest.skip(f"no {LIB} tree at {path}: run 'tools/patchq apply {LIB}'")
    return path


def assert_clean(proc: subprocess.CompletedProcess[str]) -> None:
    """Fail if a harness built with sanitizers reported anything."""
    for mark in SANITIZER_MARKS:
        assert mark not in proc.stderr, proc.stderr


def build_client(cc) -> Path:
    return cc.build(LIB, "libnatpmp_client.c", SOURCES, defines=DEFINES)


@dataclass
class Netns:
    """A network namespace with only its loopback interface, up."""

    name: str

    def cmd(self, *argv: str | Path) -> list[str]:
        return ["ip", "netns", "exec", self.name, *map(str, argv)]

    def run(self, *argv: str | Path, timeout: float = TIMEOUT):
        """Run a program in the namespace; sanitizer findings fail the test."""
        proc = subprocess.run(
            self.cmd(*argv),
            capture_output=True,
            text=True,
            errors="backslashreplace",
            timeout=timeout,
            check=False,
        )
        assert_clean(proc)
        return proc


@contextmanager
def netns():
    if shutil.which("ip") is None:
        pytest.skip("no 'ip' command: install the Debian package iproute2")
    if os.geteuid() != 0:
        pytest.skip("creating a network namespace needs root")

    ns = Netns(f"natfwd-lnp-{os.getpid()}-{secrets.token_hex(4)}")
    subprocess.run(["ip", "netns", "add", ns.name], check=True, timeout=30)
    try:
        subprocess.run(
            ["ip", "-n", ns.name, "link", "set", "lo", "up"], check=True, timeout=30
        )
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns.name], check=False, timeout=30)


@dataclass
class Responder:
    """What the scripted gateway received, once it has stopped."""

    requests: list[bytes] = field(default_factory=list)


@contextmanager
def responder(
    ns: Netns,
    *replies: str,
    address: str = GATEWAY,
    forge: tuple[str, str] | None = None,
    timeout: float = 10.0,
):
    """Run the scripted gateway in ``ns`` while the ``with`` block runs.

    ``forge`` is (ADDRESS:PORT, HEX): a datagram sent from there before each
    reply.
    """
    argv = [sys.executable, RESPONDER, address, "--timeout", str(timeout)]
    for reply in replies:
        argv += ["--reply", reply]
    if forge is not None:
        argv += ["--forge-from", forge[0], "--forge", forge[1]]
    proc = subprocess.Popen(
        ns.cmd(*argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    result = Responder()
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            started = sel.select(timeout=30) and proc.stdout.readline() == "ready\n"
        if started:
            yield result
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    # It exits with 0 when stopped; anything else is a fault of the test.
    assert started, f"responder did not start: {proc.args}\n{err}"
    assert proc.returncode == 0, f"responder failed: {proc.args}\n{err}"
    for line in out.splitlines():
        if line.startswith("request "):
            result.requests.append(bytes.fromhex(line.split()[1]))
