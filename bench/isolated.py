"""What natfwd.isolated costs per call, next to the same calls in-process.

Starts a lab gateway (real miniupnpd in network namespaces; needs root) and
runs itself again on the lab's LAN client, where it times each operation
several times both ways, over NAT-PMP and over UPnP:

    find_gateway, status, external_address, add + remove

plus a round trip to the worker that does nothing (the pipe and pickling
alone) and the start of a worker. It prints the medians side by side.
Figures only: nothing here passes or fails.

    sudo .venv/bin/python bench/isolated.py [--runs 20]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import natfwd
from natfwd import isolated

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from lab import Lab  # noqa: E402

PORT = 7900


def _paired_ms(
    direct: Callable[[], object], apart: Callable[[], object], runs: int
) -> tuple[float, float]:
    """Median times of two calls, run turn about so that load affects both."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(runs):
        for call, into in ((direct, times[0]), (apart, times[1])):
            start = time.perf_counter()
            call()
            into.append((time.perf_counter() - start) * 1000)
    return statistics.median(times[0]), statistics.median(times[1])


def _gateway_calls(gateway) -> dict[str, Callable[[], object]]:
    def add_remove() -> None:
        gateway.add(PORT, lease=600, timeout=5)
        gateway.remove(PORT, timeout=5)

    return {
        "status": lambda: gateway.status(timeout=5),
        "external_address": lambda: gateway.external_address(timeout=5),
        "add + remove": add_remove,
    }


def _find_and_close(find, via: str, worker=None) -> None:
    options = {"worker": worker} if worker else {}
    find(via=via, timeout=5, **options).close()


def inside(runs: int) -> None:
    """Time everything here, on the lab's client; print the table."""
    worker = isolated.Worker()
    start = time.perf_counter()
    worker.call("ping", (), {}, 10.0)
    started = (time.perf_counter() - start) * 1000
    _, ping = _paired_ms(
        lambda: None, lambda: worker.call("ping", (), {}, 5.0), runs * 5
    )

    rows = []
    for via in ("natpmp", "upnp"):
        finds = _paired_ms(
            functools.partial(_find_and_close, natfwd.find_gateway, via),
            functools.partial(_find_and_close, isolated.find_gateway, via, worker),
            runs,
        )
        rows.append((via, "find_gateway", *finds))
        direct = natfwd.find_gateway(via=via, timeout=5)
        apart = isolated.find_gateway(via=via, timeout=5, worker=worker)
        try:
            here, there = _gateway_calls(direct), _gateway_calls(apart)
            for operation, call in here.items():
                rows.append((via, operation, *_paired_ms(call, there[operation], runs)))
        finally:
            direct.close()
            apart.close()
    worker.close()

    print(f"worker start to first answer: {started:.1f} ms")
    print(f"empty round trip to the worker: {ping:.3f} ms")
    print()
    print(
        f"{'protocol':<9}{'operation':<18}{'in-process':>12}{'isolated':>12}"
        f"{'overhead':>12}"
    )
    for via, operation, ms, isolated_ms in rows:
        print(
            f"{via:<9}{operation:<18}{ms:>9.2f} ms{isolated_ms:>9.2f} ms"
            f"{isolated_ms - ms:>+9.2f} ms"
        )
    print()
    print(f"medians of {runs} runs each, taken turn about")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        inside(args.runs)
        return 0

    with Lab("all") as lab:
        result = lab.client_exec(
            [sys.executable, __file__, "--inside", "--runs", str(args.runs)],
            timeout=600,
        )
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
