"""What each module says it was built from, and the import-time version guard."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import natfwd

ROOT = Path(__file__).resolve().parents[2]

FORK_ORIGIN = re.compile(
    r"^natfwd fork of (?P<lib>\S+) (?P<version>\S+), "
    r"queue (?P<queue>[0-9a-f]{12}) \((?P<count>\d+) patches\)$"
)


def text(ffi, pointer) -> str:
    assert pointer != ffi.NULL
    return ffi.string(pointer).decode()


def pin_version(lib: str) -> str:
    pin = (ROOT / "vendor" / lib / "pin.toml").read_text(encoding="utf-8")
    match = re.search(r'^version = "([^"]+)"', pin, re.MULTILINE)
    assert match, f"no version in vendor/{lib}/pin.toml"
    return match.group(1)


def queue_identity(lib: str) -> tuple[str, int]:
    """The identity cmake/NatfwdFork.cmake gives patches/<lib>/series."""
    folder = ROOT / "patches" / lib
    lines = []
    for raw in (folder / "series").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        patch = line.split()[0]
        digest = hashlib.sha256((folder / patch).read_bytes()).hexdigest()
        lines.append(f"{patch} {digest}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()[:12], len(lines)


def check_fork_origin(origin: str, lib: str) -> None:
    match = FORK_ORIGIN.match(origin)
    assert match, f"unexpected origin {origin!r}"
    assert match["lib"] == lib
    assert match["version"] == pin_version(lib)
    queue, count = queue_identity(lib)
    assert (match["queue"], int(match["count"])) == (queue, count), (
        f"the module was built from another patch queue than patches/{lib}/ "
        f"holds now ({origin!r}); rebuild natfwd"
    )


def test_miniupnpc_package_version(miniupnpc):
    ffi, lib = miniupnpc.ffi, miniupnpc.lib

    assert text(ffi, lib.natfwd_package_version()) == natfwd.__version__


def test_natpmp_package_version(natpmp):
    ffi, lib = natpmp.ffi, natpmp.lib

    assert text(ffi, lib.natfwd_package_version()) == natfwd.__version__


def test_miniupnpc_library_version_and_origin(miniupnpc):
    ffi, lib = miniupnpc.ffi, miniupnpc.lib

    version = text(ffi, lib.natfwd_library_version())
    api = lib.natfwd_library_api_version()
    origin = text(ffi, lib.natfwd_library_origin())

    assert re.fullmatch(r"\d+\.\d+(\.\d+)?", version), version
    assert api >= 17
    if origin.startswith("natfwd fork"):
        check_fork_origin(origin, "miniupnpc")
        assert version == pin_version("miniupnpc")
    else:
        assert origin == f"system miniupnpc {version} (API {api})"


def test_natpmp_library_version_and_origin(natpmp):
    ffi, lib = natpmp.ffi, natpmp.lib

    version = text(ffi, lib.natfwd_library_version())
    origin = text(ffi, lib.natfwd_library_origin())

    if origin.startswith("natfwd fork"):
        check_fork_origin(origin, "libnatpmp")
        assert version == pin_version("libnatpmp")
    else:
        assert origin == f"system libnatpmp {version}"


def test_upnp_error_strings(miniupnpc):
    ffi, lib = miniupnpc.ffi, miniupnpc.lib

    assert "Conflict" in text(ffi, lib.strupnperror(718))
    assert "Invalid" in text(ffi, lib.strupnperror(402))
    assert text(ffi, lib.strupnperror(lib.UPNPCOMMAND_HTTP_ERROR))


def test_shim_buffer_sizes(miniupnpc):
    lib = miniupnpc.lib

    assert lib.NATFWD_ADDR_LEN >= 46  # INET6_ADDRSTRLEN
    assert lib.NATFWD_PORT_LEN >= 6
    assert lib.NATFWD_DESC_LEN >= 256
    assert lib.MINIUPNPC_URL_MAXSIZE >= 128


GUARD_PROBE = """
import sys
try:
    import natfwd._bindings
except ImportError as exc:
    print(type(exc).__name__, exc, sep=": ")
    sys.exit(3)
"""

needs_guard = pytest.mark.skipif(
    importlib.util.find_spec("natfwd._bindings") is None,
    reason="natfwd._bindings (the import-time version guard) is not written yet",
)


def probe_guard(path: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(path))
    return subprocess.run(
        [sys.executable, "-c", GUARD_PROBE],
        cwd=path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@needs_guard
def test_version_guard_refuses_a_module_built_for_another_version(tmp_path):
    """A module built for another natfwd must not load as if it fitted."""
    shutil.copytree(Path(natfwd.__file__).resolve().parent, tmp_path / "natfwd")
    init = tmp_path / "natfwd" / "__init__.py"
    source = init.read_text(encoding="utf-8")
    patched = re.sub(
        r'^__version__ = "[^"]*"',
        '__version__ = "0.0.0.dev0+elsewhere"',
        source,
        count=1,
        flags=re.MULTILINE,
    )
    assert patched != source, "no __version__ line in natfwd/__init__.py"
    init.write_text(patched, encoding="utf-8")

    proc = probe_guard(tmp_path)

    assert proc.returncode == 3, f"imported anyway: {proc.stdout}{proc.stderr}"
    assert "0.0.0.dev0+elsewhere" in proc.stdout
    assert natfwd.__version__ in proc.stdout


@needs_guard
def test_version_guard_accepts_the_matching_module(tmp_path):
    shutil.copytree(Path(natfwd.__file__).resolve().parent, tmp_path / "natfwd")

    proc = probe_guard(tmp_path)

    assert proc.returncode == 0, proc.stdout + proc.stderr
