"""Fixtures of the packaging tests.

These tests build what natfwd ships: the sdist and wheel, the Debian and RPM
packages, the GitHub workflows that make them. The slow ones are marked
``packaging`` and run in CI like every other marker.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from shipping_support import ROOT, run


@pytest.fixture(scope="session")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist of the working tree, made as a release is made."""
    run([sys.executable, ROOT / "tools" / "patchq", "apply"])
    out = tmp_path_factory.mktemp("sdist")
    run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "-o", out, ROOT])
    (made,) = out.glob("natfwd-*.tar.gz")
    return made
