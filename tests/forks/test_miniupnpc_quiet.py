"""miniupnpc built with MINIUPNPC_QUIET writes nothing on stderr.

natfwd promises one line on stderr per error; the library must not add its
own ("connect: Connection refused"). A refused connection and a host name
that cannot be resolved are the two failures every user meets.
"""

from __future__ import annotations

import socket
import subprocess

import pytest
from miniupnpc_support import CLIENT_SOURCES, TIMEOUT, build


def closed_port() -> int:
    """A loopback port that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def quiet_wget(cc_module):
    return build(
        cc_module, "miniupnpc_wget.c", CLIENT_SOURCES, defines=["MINIUPNPC_QUIET"]
    )


@pytest.fixture(scope="module")
def chatty_wget(cc_module):
    return build(cc_module, "miniupnpc_wget.c", CLIENT_SOURCES)


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://127.0.0.1:{port}/rootDesc.xml", id="refused"),
        pytest.param(
            "http://no-such-host.invalid:{port}/rootDesc.xml", id="unresolved"
        ),
    ],
)
def test_quiet_build_fails_silently(quiet_wget, url):
    result = subprocess.run(
        [quiet_wget, url.format(port=closed_port())],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )

    assert result.returncode == 0
    assert result.stdout.startswith("status=")
    assert result.stderr == ""


def test_default_build_still_reports_on_stderr(chatty_wget):
    # Without the define nothing changes for existing users of the library.
    result = subprocess.run(
        [chatty_wget, f"http://127.0.0.1:{closed_port()}/"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )

    assert "connect" in result.stderr
