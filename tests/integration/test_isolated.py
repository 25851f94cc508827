"""natfwd.isolated against the lab's real miniupnpd.

The worker runs on the lab's LAN client (``ip netns exec`` as its prefix)
while the test, its host, stays outside: the host never talks to a gateway
itself. tests/unit/test_isolated.py covers crashes in mid-call.
"""

from __future__ import annotations

import os
import signal
import sys

import pytest
from lab import Lab

import natfwd
from natfwd import isolated

lab_test = pytest.mark.lab


@lab_test
@pytest.mark.parametrize("via", ["natpmp", "upnp"])
def test_mappings_outlive_a_crashed_worker_and_are_removed(
    lab_all: Lab, via: str
) -> None:
    worker = isolated.Worker(prefix=["ip", "netns", "exec", lab_all.client_ns])
    try:
        with isolated.find_gateway(via=via, timeout=5, worker=worker) as gateway:
            assert gateway.method == natfwd.Method(via)
            mapping = gateway.add(7800, lease=120, timeout=5)
            assert mapping.internal_address == lab_all.client_ip
            assert {m.external_port for m in lab_all.mappings()} == {7800}

            os.kill(worker.pid, signal.SIGSEGV)
            with pytest.raises(natfwd.IsolatedCallCrashed):
                gateway.status(timeout=5)

            # found again in a new worker, by the same protocol
            assert gateway.status(timeout=5).method == natfwd.Method(via)
            gateway.add(7801, 7801, "udp", lease=120, timeout=5)
            assert {m.external_port for m in lab_all.mappings()} == {7800, 7801}
        # leaving the block removed both, the one from before the crash too
        assert lab_all.mappings() == []
    finally:
        worker.close()


@lab_test
def test_the_worker_speaks_for_the_namespace_it_runs_in(lab_all: Lab) -> None:
    worker = isolated.Worker(
        python=sys.executable, prefix=["ip", "netns", "exec", lab_all.client_ns]
    )
    try:
        gateway = isolated.find_gateway(via="natpmp", timeout=5, worker=worker)
        assert gateway.address == lab_all.gateway_lan_ip
        assert gateway.external_address(timeout=5) == lab_all.wan_ip
        gateway.close()
    finally:
        worker.close()


@lab_test
def test_leaving_the_block_after_the_worker_died_still_removes(lab_all: Lab) -> None:
    worker = isolated.Worker(prefix=["ip", "netns", "exec", lab_all.client_ns])
    try:
        with isolated.find_gateway(via="upnp", timeout=5, worker=worker) as gateway:
            gateway.add(7802, lease=120, timeout=5)
            assert {m.external_port for m in lab_all.mappings()} == {7802}
            os.kill(worker.pid, signal.SIGKILL)
        # the death is heard of by the removal, which a new worker redoes
        assert lab_all.mappings() == []
    finally:
        worker.close()


@lab_test
def test_a_host_using_the_default_worker_exits_without_warnings(lab_all: Lab) -> None:
    script = (
        "from natfwd import isolated\n"
        "with isolated.find_gateway(via='natpmp', timeout=5) as gateway:\n"
        "    gateway.add(7803, lease=120, timeout=5)\n"
    )
    done = lab_all.client_exec(
        [sys.executable, "-X", "dev", "-W", "error::ResourceWarning", "-c", script],
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr, done.stderr
    assert lab_all.mappings() == []
