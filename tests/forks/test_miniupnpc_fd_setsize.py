"""A slow peer must not crash a process that has many descriptors open.

connecthostport() waited for a pending connect() with select(), whose
FD_SET() cannot hold a descriptor of FD_SETSIZE (1024) or more. Built with
_FORTIFY_SOURCE, as distributions build, the process aborted; without it,
FD_SET() wrote past the fd_set on the stack. The harness opens descriptors
until the library's socket lands above 1024 and then talks to peers on
127.0.0.1 that never answer.
"""

from __future__ import annotations

import re

import pytest
from miniupnpc_support import CLIENT_SOURCES, build, run

UPNPCOMMAND_HTTP_ERROR = -3


@pytest.fixture
def harness(cc):
    return build(
        cc,
        "miniupnpc_fdlimit.c",
        CLIENT_SOURCES,
        sanitize=False,
        extra=["-O2", "-U_FORTIFY_SOURCE", "-D_FORTIFY_SOURCE=2"],
    )


@pytest.mark.slow
def test_slow_peers_with_descriptor_above_fd_setsize(harness):
    proc = run(harness, timeout=90)
    if proc.returncode == 77:
        pytest.skip(f"cannot open enough descriptors: {proc.stdout.strip()}")

    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"exit status {proc.returncode}:\n{output}"
    fd = int(re.search(r"next descriptor above (\d+)", output).group(1))
    assert fd >= 1024

    connect = re.search(r"connect to full queue: (\w+) after ([\d.]+) s", output)
    assert connect, output
    assert connect.group(1) == "failed"
    # SO_SNDTIMEO, then the wait for the connection: 3 s each.
    assert float(connect.group(2)) < 15

    for peer in ("full queue", "mute peer"):
        soap = re.search(rf"soap to {peer}: (-?\d+) after ([\d.]+) s", output)
        assert soap, output
        assert int(soap.group(1)) == UPNPCOMMAND_HTTP_ERROR
        assert float(soap.group(2)) < 15
