"""Helpers of the Windows tests: the Debian packages, wine, CMake."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
TOOLCHAIN = HERE / "mingw-w64-x86_64.cmake"

#: Just what cross-compiling C and running it needs: wine64 alone, not the
#: wine metapackage with its 32-bit half and desktop integration.
DEBIAN_PACKAGES = ["gcc-mingw-w64-x86-64", "wine64"]
WINE_DIRS = ["/usr/lib/wine", "/usr/lib64/wine", "/usr/bin"]


def find_wine_program(name: str) -> str:
    for directory in WINE_DIRS:
        path = Path(directory) / name
        if path.exists():
            return str(path)
    pytest.fail(
        f"{name} not found in {WINE_DIRS} after installing wine64", pytrace=False
    )


class Wine:
    """Runs Windows programs in natfwd's wine prefix."""

    def __init__(self, loader: str, server: str, prefix: Path) -> None:
        self.loader = loader
        self.server = server
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("WINE", "DISPLAY"))
        }
        self.env.update(
            WINEPREFIX=str(prefix), WINEDEBUG="-all", WINEDLLOVERRIDES="mscoree,mshtml="
        )

    def run(
        self, exe: Path, *args: str, timeout: float = 60, cwd=None
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [self.loader, str(exe), *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=cwd,
            timeout=timeout,
            check=False,
        )


def cmake_command() -> str:
    found = shutil.which("cmake")
    if found is None:
        pytest.fail(
            "cmake is not installed (tools/dev-requirements.txt)", pytrace=False
        )
    return found
