"""Helpers shared by the packaging tests (see conftest.py for fixtures)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

#: The tools installed next to the interpreter running the tests (.venv/bin).
VENV_BIN = Path(sys.executable).parent


def venv_tool(name: str) -> str:
    """Return the path of a tool from tools/dev-requirements.txt, or fail."""
    path = VENV_BIN / name
    if not path.exists():
        found = shutil.which(name)
        if found is None:
            pytest.fail(
                f"{name!r} is not installed; it comes with "
                "tools/dev-requirements.txt (run tools/bootstrap)",
                pytrace=False,
            )
        return found
    return str(path)


def require_root(what: str) -> None:
    """Skip unless running as root, which installing system packages needs."""
    if os.geteuid() != 0:
        pytest.skip(f"{what} installs Debian packages, which needs root")


def run(cmd, **kwargs) -> subprocess.CompletedProcess:
    """Run *cmd*, failing the test with its output if it exits non-zero."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    proc = subprocess.run([str(c) for c in cmd], check=False, **kwargs)
    if proc.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, cmd))} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout[-6000:] if proc.stdout else ''}\n"
            f"--- stderr\n{proc.stderr[-6000:] if proc.stderr else ''}",
            pytrace=False,
        )
    return proc


def debian_packages_missing(packages) -> list:
    """Return those of *packages* that dpkg does not have installed."""
    missing = []
    for package in packages:
        proc = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", package],
            capture_output=True,
            text=True,
            check=False,
        )
        if "ok installed" not in proc.stdout:
            missing.append(package)
    return missing


def ensure_debian_packages(packages, why: str) -> None:
    """Install the Debian *packages* that are missing, or skip if not root.

    The heavier tools (wine, rpm, lintian, the build dependencies) are
    installed by the tests that need them rather than by tools/bootstrap, so
    a developer who never runs these tests never pays for them.
    """
    if shutil.which("dpkg-query") is None:
        pytest.skip(f"{why} needs Debian's packages, and this is not Debian")
    missing = debian_packages_missing(packages)
    if not missing:
        return
    require_root(why)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends"]
    proc = subprocess.run(
        install + missing, capture_output=True, text=True, check=False, env=env
    )
    if proc.returncode != 0:
        # The lists may be absent or stale on a fresh machine.
        run(["apt-get", "update", "-q"], env=env)
        run(install + missing, env=env)
