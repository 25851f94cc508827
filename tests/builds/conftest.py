"""Shared build results for the packaging tests.

Everything is built once per session, in a temporary folder, from a ``git
clone`` of this repository: what is committed is what gets tested, and the
clone starts with no vendor trees, so the fetch-and-patch step runs for real
(from the download cache, ``~/.cache/natfwd`` or ``NATFWD_CACHE_DIR``).

The built packages are tested with ``tests/bindings`` of the same clone, run
by a separate "tester" virtual environment that holds the build and test
tools but no natfwd, so that the natfwd under test is exactly the one on
``PYTHONPATH`` (an editable install in the project's own environment would
otherwise take precedence).

These tests need root (network namespaces, Debian packages) and PyPI.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging_support import ROOT, TESTER_EXTRAS, Venv, run


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("packaging")


@pytest.fixture(scope="session")
def clone(workspace: Path) -> Path:
    """A git clone of the repository's HEAD, without vendor trees."""
    path = workspace / "clone"
    run(["git", "clone", "--quiet", "--no-hardlinks", ROOT, path])
    assert not (path / "vendor" / "miniupnpc" / "tree").exists()
    return path


@pytest.fixture(scope="session")
def tester(workspace: Path) -> Venv:
    """Build and test tools, and no natfwd."""
    made = Venv.create(workspace / "tester")
    made.pip(
        "install", "-q", "-r", ROOT / "tools" / "dev-requirements.txt", *TESTER_EXTRAS
    )
    return made


@pytest.fixture(scope="session")
def netns_offline(workspace: Path) -> Iterator[str]:
    """A network namespace with only ``lo``, up: no route anywhere else."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 for a network namespace")
    name = f"natfwd-offline-{os.getpid()}"
    run(["ip", "netns", "add", name])
    try:
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        yield name
    finally:
        run(["ip", "netns", "delete", name], check=False)
