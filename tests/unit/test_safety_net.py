"""The suite's own rule: a socket of the tests never reaches past loopback
from the host's network namespace (see tests/conftest.py)."""

from __future__ import annotations

import socket

import pytest


def test_sending_past_loopback_fails_before_anything_is_sent():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        with pytest.raises(AssertionError, match=r"192\.0\.2\.1"):
            sock.sendto(b"x", ("192.0.2.1", 5351))
        with pytest.raises(AssertionError, match=r"239\.255\.255\.250"):
            sock.connect(("239.255.255.250", 1900))


def test_loopback_is_allowed():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.sendto(b"ping", server.getsockname())
            assert server.recv(16) == b"ping"
