"""natfwd.isolated: calls in a worker process, which may die without harm.

The gateways here are on 127.0.0.1: the loopback IGD of tests/bindings,
which answers with canned SOAP replies, and a "slow responder" that accepts
a connection and never answers, so that a call is reliably blocked in C
code when the test kills its worker.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import natfwd
from natfwd import isolated

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bindings"))
from loopback_igd import LoopbackIGD, fault, success

WANIP2 = "urn:schemas-upnp-org:service:WANIPConnection:2"


@pytest.fixture
def worker() -> Iterator[isolated.Worker]:
    with isolated.Worker() as w:
        yield w


@pytest.fixture
def igd() -> Iterator[LoopbackIGD]:
    with LoopbackIGD() as server:
        yield server


class SlowResponder:
    """A TCP listener on 127.0.0.1 that accepts and never answers."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(10)
        self.accepted = threading.Event()
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}/rootDesc.xml"

    def _accept(self) -> None:
        try:
            connection, _ = self._listener.accept()
        except OSError:
            return
        self._held.append(connection)
        self.accepted.set()

    def close(self) -> None:
        self._listener.close()
        self._thread.join(timeout=15)
        for connection in self._held:
            connection.close()


@pytest.fixture
def slow() -> Iterator[SlowResponder]:
    responder = SlowResponder()
    yield responder
    responder.close()


def _kill_when_blocked(worker: isolated.Worker, slow: SlowResponder, signum: int):
    def kill() -> None:
        if slow.accepted.wait(10):
            os.kill(worker.pid, signum)

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("signum", [signal.SIGSEGV, signal.SIGABRT])
def test_a_crash_in_mid_call_raises_and_the_host_carries_on(
    worker: isolated.Worker, slow: SlowResponder, igd: LoopbackIGD, signum: int
) -> None:
    worker.start()
    first = worker.pid
    killer = _kill_when_blocked(worker, slow, signum)

    started = time.monotonic()
    with pytest.raises(natfwd.IsolatedCallCrashed) as caught:
        isolated.find_gateway(via="upnp", upnp_url=slow.url, timeout=8, worker=worker)
    killer.join()

    assert caught.value.signal == signum
    assert caught.value.call == "find_gateway"
    assert time.monotonic() - started < 5  # at the crash, not at the timeout
    # the retry runs in a new worker
    gateway = isolated.find_gateway(
        via="upnp", upnp_url=igd.url("igd2-rootdesc.xml"), timeout=5, worker=worker
    )
    assert worker.pid != first
    assert gateway.method == natfwd.Method.UPNP
    gateway.close()


def test_an_interrupted_call_leaves_no_reply_behind(
    worker: isolated.Worker, slow: SlowResponder, igd: LoopbackIGD
) -> None:
    worker.start()
    first = worker.pid
    main = threading.get_ident()

    def interrupt() -> None:
        if slow.accepted.wait(10):
            signal.pthread_kill(main, signal.SIGINT)

    thread = threading.Thread(target=interrupt, daemon=True)
    thread.start()
    with pytest.raises(KeyboardInterrupt):
        isolated.find_gateway(via="upnp", upnp_url=slow.url, timeout=8, worker=worker)
    thread.join()

    # The next call gets its own answer, from a new worker.
    gateway = isolated.find_gateway(
        via="upnp", upnp_url=igd.url("igd2-rootdesc.xml"), timeout=5, worker=worker
    )
    assert worker.pid != first
    assert gateway.address == "127.0.0.1"
    gateway.close()


def test_results_and_exceptions_are_those_of_natfwd(
    worker: isolated.Worker, igd: LoopbackIGD
) -> None:
    gateway = isolated.find_gateway(
        via="upnp", upnp_url=igd.url("igd2-rootdesc.xml"), timeout=5, worker=worker
    )
    igd.queue(
        "GetExternalIPAddress",
        success("GetExternalIPAddress", WANIP2, {"NewExternalIPAddress": "8.8.4.4"}),
    )
    assert gateway.external_address(timeout=5) == "8.8.4.4"

    igd.queue("AddPortMapping", fault(606, "Action not authorized"))
    with pytest.raises(natfwd.UPnPError) as caught:
        gateway.add(9001, internal_address="127.0.0.2", timeout=5)
    assert caught.value.code == natfwd.UPnPErrorCode.ACTION_NOT_AUTHORIZED
    assert caught.value.action == "AddPortMapping"
    assert caught.value.gateway == "127.0.0.1"
    assert "606" in str(caught.value)

    with pytest.raises(natfwd.InvalidArgument):
        gateway.add(0, timeout=5)
    with pytest.raises(ValueError, match="sctp"):  # InvalidArgument is one too
        gateway.add(9001, protocol="sctp", timeout=5)
    gateway.close()


def test_a_gateway_found_before_a_crash_is_found_again(
    worker: isolated.Worker, igd: LoopbackIGD
) -> None:
    gateway = isolated.find_gateway(
        via="upnp", upnp_url=igd.url("igd2-rootdesc.xml"), timeout=5, worker=worker
    )
    os.kill(worker.pid, signal.SIGKILL)
    with pytest.raises(natfwd.IsolatedCallCrashed) as caught:
        gateway.external_address(timeout=5)
    assert caught.value.signal == signal.SIGKILL

    # one for finding the gateway again (its status), one for the call
    address = success(
        "GetExternalIPAddress", WANIP2, {"NewExternalIPAddress": "8.8.4.4"}
    )
    igd.queue("GetExternalIPAddress", address, address)
    assert gateway.external_address(timeout=5) == "8.8.4.4"
    gateway.close()


def _wait_until_dead(pid: int) -> None:
    """Until *pid* is a zombie (Linux); elsewhere, return at once."""
    stat = Path(f"/proc/{pid}/stat")
    end = time.monotonic() + 5
    while time.monotonic() < end:
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return
        if state == "Z":
            return
        time.sleep(0.01)


def test_a_worker_that_died_between_calls_fails_the_next_call_only(
    worker: isolated.Worker, igd: LoopbackIGD
) -> None:
    gateway = isolated.find_gateway(
        via="upnp", upnp_url=igd.url("igd2-rootdesc.xml"), timeout=5, worker=worker
    )
    dead = worker.pid
    os.kill(dead, signal.SIGKILL)
    _wait_until_dead(dead)  # dead before the call begins, not during it

    with pytest.raises(natfwd.IsolatedCallCrashed) as caught:
        gateway.external_address(timeout=5)
    assert caught.value.signal == signal.SIGKILL
    gc.collect()  # a pipe of the dead worker left open would warn here

    address = success(
        "GetExternalIPAddress", WANIP2, {"NewExternalIPAddress": "8.8.4.4"}
    )
    igd.queue("GetExternalIPAddress", address, address)
    assert gateway.external_address(timeout=5) == "8.8.4.4"
    assert worker.pid != dead
    gateway.close()


def test_a_hung_worker_is_stopped(
    worker: isolated.Worker, igd: LoopbackIGD, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(isolated, "GRACE", 0.2)
    gateway = isolated.find_gateway(
        via="upnp", upnp_url=igd.url("igd2-rootdesc.xml"), timeout=5, worker=worker
    )
    hung = worker.pid
    os.kill(hung, signal.SIGSTOP)
    try:
        with pytest.raises(natfwd.GatewayTimeout, match="did not answer"):
            gateway.status(timeout=0.3)
    finally:
        # The host killed it; this only matters if the test failed first.
        with contextlib.suppress(ProcessLookupError):
            os.kill(hung, signal.SIGCONT)


def test_calls_from_many_threads_take_turns(
    worker: isolated.Worker, igd: LoopbackIGD
) -> None:
    url = igd.url("igd2-rootdesc.xml")
    results: list[object] = []

    def find() -> None:
        try:
            gateway = isolated.find_gateway(
                via="upnp", upnp_url=url, timeout=10, worker=worker
            )
            results.append(gateway.address)
            gateway.close()
        except Exception as exc:  # reported below
            results.append(exc)

    threads = [threading.Thread(target=find) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert results == ["127.0.0.1"] * 6


def test_the_worker_ends_with_its_host_pipe(worker: isolated.Worker) -> None:
    worker.start()
    pid = worker.pid
    worker.close()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
