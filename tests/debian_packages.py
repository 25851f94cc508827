"""Debian packages that some tests need and install themselves.

The heavier tools (wine, rpm, lintian, the build dependencies) are
installed by the tests that need them rather than by tools/bootstrap, so a
developer who never runs these tests never pays for them.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def require_root(what: str) -> None:
    """Skip unless running as root, which installing system packages needs."""
    if os.geteuid() != 0:
        pytest.skip(f"{what} installs Debian packages, which needs root")


def missing(packages) -> list:
    """Those of *packages* that dpkg does not have installed."""
    return [
        package
        for package in packages
        if "ok installed"
        not in subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", package],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
    ]


def ensure(packages, why: str) -> None:
    """Install those of *packages* that are missing, for *why*; skip the
    test where that cannot be done (not Debian, not root)."""
    if shutil.which("dpkg-query") is None:
        pytest.skip(f"{why} needs Debian's packages, and this is not Debian")
    absent = missing(packages)
    if not absent:
        return
    require_root(why)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *absent]
    for attempt in (1, 2):
        proc = subprocess.run(
            install, capture_output=True, text=True, check=False, env=env
        )
        if proc.returncode == 0:
            return
        if attempt == 1:
            # The lists may be absent or stale on a fresh machine.
            subprocess.run(
                ["apt-get", "update", "-q"], capture_output=True, env=env, check=False
            )
    pytest.fail(
        f"{' '.join(install)} exited {proc.returncode}\n{proc.stderr[-6000:]}",
        pytrace=False,
    )
