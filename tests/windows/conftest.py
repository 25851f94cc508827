"""Fixtures for the Windows tests: the mingw-w64 toolchain and a wine prefix.

Both come from Debian (mingw-w64 to cross-compile, wine64 to run the result)
and are installed here when missing, which needs root. Wine runs in a prefix
of natfwd's own under ~/.cache/natfwd, with one wineserver kept up for the
session so that each program starts in about a second.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from debian_packages import ensure
from windows_support import DEBIAN_PACKAGES, Wine, find_wine_program


@pytest.fixture(scope="session")
def wine() -> Wine:
    ensure(DEBIAN_PACKAGES, "cross-building for Windows")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    prefix = cache / "natfwd" / "wine-prefix"
    prefix.mkdir(parents=True, exist_ok=True)
    made = Wine(find_wine_program("wine64"), find_wine_program("wineserver"), prefix)

    # Make or update the prefix first and wait for what that starts to end:
    # left to the first program, it can outlast a test's timeout.
    wineboot = [made.loader, "wineboot", "--init"]
    subprocess.run(wineboot, env=made.env, capture_output=True, check=True, timeout=300)
    subprocess.run([made.server, "-w"], env=made.env, check=True, timeout=120)
    # One persistent server for the session (-p), shut down at the end (-k).
    subprocess.run([made.server, "-p"], env=made.env, check=True, timeout=60)
    # The first program of a session starts wine's background services, which
    # keep its stdout open: start them here, where nobody reads that, rather
    # than under CTest, which would wait for them.
    subprocess.run(
        [made.loader, "cmd", "/c", "ver"],
        env=made.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
        timeout=120,
    )
    yield made
    subprocess.run([made.server, "-k"], env=made.env, check=False, timeout=60)
