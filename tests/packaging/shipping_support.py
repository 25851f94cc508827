"""Helpers shared by the packaging tests (see conftest.py for fixtures)."""

from __future__ import annotations

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
