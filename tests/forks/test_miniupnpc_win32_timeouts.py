"""On Windows, the socket timeouts must be given as Winsock reads them.

Winsock takes SO_RCVTIMEO and SO_SNDTIMEO as a DWORD of milliseconds. Handed
a struct timeval of 3 s, it reads its first four bytes, tv_sec, as 3 ms.
Until the cross-built library can be run under Wine, this test compiles
connecthostport.c with the MinGW-w64 compiler and lets the pointer types of
setsockopt() speak: Winsock's prototype takes ``const char *``.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
from miniupnpc_support import STRINGS_H, tree

MINGW = "x86_64-w64-mingw32-gcc"


@pytest.mark.windows
@pytest.mark.parametrize("resolver", ["getaddrinfo", "gethostbyname"])
def test_timeouts_compile_for_winsock(tmp_path, resolver):
    if shutil.which(MINGW) is None:
        pytest.skip(f"no MinGW-w64 compiler {MINGW!r}")
    src = tree() / "src" / "connecthostport.c"
    if not src.is_file():
        pytest.skip(f"no miniupnpc tree at {tree()}")
    (tmp_path / "miniupnpcstrings.h").write_text(STRINGS_H)

    cmd = [
        MINGW,
        "-c",
        "-Wall",
        "-Werror=incompatible-pointer-types",
        "-DMINIUPNPC_SET_SOCKET_TIMEOUT",
        "-DMINIUPNP_STATICLIB",
        f"-I{tmp_path}",
        f"-I{tree() / 'include'}",
        f"-I{tree() / 'src'}",
        "-o",
        str(tmp_path / "connecthostport.o"),
        str(src),
    ]
    if resolver == "gethostbyname":
        cmd.append("-DNO_GETADDRINFO")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)

    assert proc.returncode == 0, proc.stderr
    assert "setsockopt" not in proc.stderr, proc.stderr
