"""Time a clean wheel build and measure what it installs, per build flavour.

    python bench/build.py [--source DIR] [--repeat N] [--flavour NAME ...]

Each flavour is built from scratch (a new build folder, so CMake configures
and compiles everything, the vendored libraries included) with this
interpreter's build tools (``pip wheel --no-build-isolation``), then installed
into a temporary folder. Printed side by side: the build's wall-clock time
(best and median of the repeats), the wheel's size, and the installed size
of each compiled module and of the whole package.

Flavours:

    vendored   natfwd's forks, linked statically (the default build)
    system     the system's libminiupnpc and libnatpmp (NATFWD_USE_SYSTEM_LIBS=ON)

A flavour that cannot be built here (no system libraries, say) is reported
as such. This script only prints; it checks nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FLAVOURS = {
    "vendored": {"NATFWD_USE_SYSTEM_LIBS": "OFF"},
    "system": {"NATFWD_USE_SYSTEM_LIBS": "ON"},
}
MODULES = ("_miniupnpc", "_natpmp")


@dataclasses.dataclass
class Result:
    flavour: str
    times: list[float] = dataclasses.field(default_factory=list)
    wheel_size: int | None = None
    module_sizes: dict[str, int | None] = dataclasses.field(default_factory=dict)
    package_size: int | None = None
    error: str | None = None


def build_once(source: Path, env: dict[str, str], scratch: Path) -> tuple[float, Path]:
    out = scratch / "wheel"
    out.mkdir()
    cmd = [
        *(sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps"),
        *("-q", "-w", str(out), "-C", f"build-dir={scratch / 'build'}", str(source)),
    ]

    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start

    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        last = lines[-1] if lines else f"pip exited {proc.returncode}"
        raise RuntimeError(last.strip())
    (wheel,) = out.glob("natfwd-*.whl")
    return elapsed, wheel


def measure_install(wheel: Path, scratch: Path, result: Result) -> None:
    target = scratch / "site"
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "-q", "--no-deps"),
            *("--target", str(target), str(wheel)),
        ],
        check=True,
        capture_output=True,
    )
    package = target / "natfwd"
    for name in MODULES:
        found = list(package.glob(f"{name}.*so")) + list(package.glob(f"{name}.*pyd"))
        result.module_sizes[name] = found[0].stat().st_size if found else None
    result.package_size = sum(
        p.stat().st_size for p in package.rglob("*") if p.is_file()
    )


def bench(source: Path, flavour: str, repeat: int) -> Result:
    result = Result(flavour)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("NATFWD_") or k == "NATFWD_CACHE_DIR"
    }
    env.update(FLAVOURS[flavour])

    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix=f"natfwd-bench-{flavour}-") as tmp:
            scratch = Path(tmp)
            try:
                elapsed, wheel = build_once(source, env, scratch)
            except RuntimeError as exc:
                result.error = str(exc)
                return result
            result.times.append(elapsed)
            result.wheel_size = wheel.stat().st_size
            measure_install(wheel, scratch, result)
    return result


def kib(size: int | None) -> str:
    return "-" if size is None else f"{size / 1024:.1f} KiB"


def report(results: list[Result]) -> None:
    rows = [("", *(r.flavour for r in results))]

    def row(label: str, cell) -> None:
        cells = ("unavailable" if r.error else cell(r) for r in results)
        rows.append((label, *cells))

    row("build, best", lambda r: f"{min(r.times):.2f} s")
    row("build, median", lambda r: f"{statistics.median(r.times):.2f} s")
    row("builds", lambda r: str(len(r.times)))
    row("wheel", lambda r: kib(r.wheel_size))
    for name in MODULES:
        row(f"natfwd/{name}", lambda r, n=name: kib(r.module_sizes.get(n)))
    row("natfwd/ installed", lambda r: kib(r.package_size))

    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for cells in rows:
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
    for r in results:
        if r.error:
            print(f"\n{r.flavour}: could not build: {r.error}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=ROOT, help="natfwd tree")
    parser.add_argument("--repeat", type=int, default=1, help="builds per flavour")
    parser.add_argument(
        "--flavour",
        action="append",
        choices=sorted(FLAVOURS),
        help="build only these (default: all)",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat must be 1 or more, not {args.repeat!r}")

    flavours = args.flavour or list(FLAVOURS)
    print(f"natfwd clean wheel builds of {args.source}, {args.repeat} per flavour")
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs\n")
    report([bench(args.source, f, args.repeat) for f in flavours])
    return 0


if __name__ == "__main__":
    sys.exit(main())
