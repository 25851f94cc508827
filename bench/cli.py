"""How long natfwd takes to map a port, next to upstream's own clients.

Starts a lab gateway (real miniupnpd in network namespaces; needs root),
then times whole processes on the lab's LAN client, each run several times:

    natpmpc -a        vs  natfwd add --via natpmp    (NAT-PMP gateway)
    upnpc -a          vs  natfwd add --via upnp      (UPnP-only gateway)

and prints the median and spread of each, with peak memory (max RSS) of the
process. Figures only: nothing here passes or fails.

    sudo .venv/bin/python bench/cli.py [--runs 15]

natpmpc as released refuses to map once it sees the lab's external address
(every address a lab may use is reserved); the row here is the lab's build
of it without that refusal, which asks for the public address, then maps,
as natfwd does. Between runs each tool removes what it mapped, so every run
makes a new mapping.

The "auto" row runs on the UPnP-only gateway, where NAT-PMP is asked in
vain: after the first few runs the gateway's ICMP rate limit stops it from
refusing, so the row shows the worst case, NAT-PMP's quarter-second of
grace (counted from the start) spent in full.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from lab import Lab, peer_path  # noqa: E402

NATFWD = [sys.executable, "-m", "natfwd"]


def timed(lab: Lab, argv: list[str]) -> tuple[float, int, int]:
    """Wall time (ms), exit status and peak RSS (KiB) of one run on the client."""
    start = time.perf_counter()
    result = lab.client_exec(["/usr/bin/time", "-f", "%M", *argv], check=False)
    elapsed = (time.perf_counter() - start) * 1000
    rss = int(result.stderr.strip().splitlines()[-1]) if result.stderr.strip() else 0
    return elapsed, result.returncode, rss


def series(lab: Lab, argv: list[str], runs: int, cleanup: list[str] | None) -> dict:
    times, statuses, rss = [], set(), []
    for _ in range(runs):
        elapsed, status, peak = timed(lab, argv)
        times.append(elapsed)
        statuses.add(status)
        rss.append(peak)
        if cleanup:
            lab.client_exec(cleanup, check=False)
    return {
        "median": statistics.median(times),
        "min": min(times),
        "max": max(times),
        "rss": statistics.median(rss),
        "status": sorted(statuses),
    }


def row(name: str, figures: dict) -> str:
    return (
        f"{name:<34} {figures['median']:8.1f} {figures['min']:8.1f} "
        f"{figures['max']:8.1f} {figures['rss'] / 1024:8.1f}   {figures['status']}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()

    header = (
        f"{'command':<34} {'median':>8} {'min':>8} {'max':>8} {'RSS MiB':>8}   exit"
    )
    print(f"{header}\n{'':<34} {'(ms)':>8} {'(ms)':>8} {'(ms)':>8}")

    with Lab(variant="all", name="bench-natpmp") as lab:
        natpmpc = str(peer_path("natpmpc-lab"))
        print(
            row(
                "natpmpc -a 9001 9001 tcp 3600",
                series(
                    lab,
                    [natpmpc, "-a", "9001", "9001", "tcp", "3600"],
                    args.runs,
                    [natpmpc, "-a", "9001", "9001", "tcp", "0"],
                ),
            )
        )
        print(
            row(
                "natfwd add 9001 --via natpmp",
                series(
                    lab,
                    [*NATFWD, "add", "9001", "--via", "natpmp"],
                    args.runs,
                    [*NATFWD, "remove", "9001", "--via", "natpmp"],
                ),
            )
        )
        print(
            row(
                "python -c pass (interpreter alone)",
                series(lab, [sys.executable, "-c", "pass"], args.runs, None),
            )
        )

    with Lab(variant="upnp", name="bench-upnp") as lab:
        upnpc = str(peer_path("upnpc"))
        print(
            row(
                "upnpc -a CLIENT 9001 9001 TCP",
                series(
                    lab,
                    [upnpc, "-e", "natfwd", "-a", lab.client_ip, "9001", "9001", "TCP"],
                    max(3, args.runs // 3),
                    [upnpc, "-d", "9001", "TCP"],
                ),
            )
        )
        print(
            row(
                "natfwd add 9001 --via upnp",
                series(
                    lab,
                    [*NATFWD, "add", "9001", "--via", "upnp"],
                    args.runs,
                    [*NATFWD, "remove", "9001", "--via", "upnp"],
                ),
            )
        )
        print(
            row(
                "natfwd add 9001 (auto)",
                series(
                    lab,
                    [*NATFWD, "add", "9001"],
                    args.runs,
                    [*NATFWD, "remove", "9001"],
                ),
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
