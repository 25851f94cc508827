"""The UPnP search against devices that answer it badly.

A responder on 127.0.0.1:1900 of the tests' namespace answers each
M-SEARCH with a burst of datagrams the test chooses; ``--gateway
127.0.0.1 --via upnp`` makes natfwd search that address alone (a unicast
search), so nothing leaves the namespace.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from natfwd import _ssdp
from natfwd._deadline import Deadline

SSDP_PORT = 1900
MAX_SEARCHES = 64

IGD1 = "urn:schemas-upnp-org:device:InternetGatewayDevice:1"


def answer(location: str, st: str = IGD1) -> bytes:
    return (
        "HTTP/1.1 200 OK\r\n"
        "CACHE-CONTROL: max-age=120\r\n"
        f"ST: {st}\r\n"
        f"USN: uuid:hostile::{st}\r\n"
        "EXT:\r\n"
        f"LOCATION: {location}\r\n"
        "\r\n"
    ).encode("latin-1")


class SearchResponder:
    """Answers every M-SEARCH with ``burst``: datagrams, and pauses
    (numbers of seconds) between them."""

    def __init__(self, netns, burst: list[bytes | float]) -> None:
        self.burst = burst
        self.searches = 0
        self._sock = netns.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", SSDP_PORT))
        self._sock.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> SearchResponder:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set() and self.searches < MAX_SEARCHES:
            try:
                data, peer = self._sock.recvfrom(2048)
            except socket.timeout:
                continue
            except OSError:
                return
            if not data.startswith(b"M-SEARCH"):
                continue
            self.searches += 1
            for datagram in self.burst:
                if isinstance(datagram, float):
                    self._stop.wait(datagram)
                    continue
                with contextlib.suppress(OSError):
                    self._sock.sendto(datagram, peer)


GARBAGE = [
    b"",
    b"\x00" * 100,
    bytes(range(256)),
    b"HTTP/1.1 200 OK\r\n\r\n",
    answer("http://[fe80::1/rootDesc.xml"),  # makes urllib.parse raise
    answer("http://127.0.0.1:99999/rootDesc.xml"),
    answer("file:///etc/passwd"),
    answer("http://127.0.0.1/x\x1b[2J"),
    answer("http://127.0.0.1:1/x", st="urn:schemas-upnp-org:device:MediaServer:1"),
    b"NOTIFY * HTTP/1.1\r\nNTS: ssdp:alive\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n" + b"X: " + b"A" * 7000 + b"\r\n\r\n",
]


def _search(netns, search_cli, burst, *argv, timeout=2.0):
    with SearchResponder(netns, burst) as responder:
        run = search_cli(*argv, timeout=timeout)
    return run, responder


def test_garbage_before_the_answer_is_ignored(netns, igd, search_cli):
    burst = [*GARBAGE, answer(igd.location)]

    run, responder = _search(netns, search_cli, burst, "status", "--json")

    assert run.code == 0, run.err
    assert responder.searches >= 1
    assert igd.gets == ["/rootDesc.xml"]


def test_only_garbage_is_no_gateway_within_the_timeout(netns, igd, search_cli):
    run, _ = _search(netns, search_cli, GARBAGE, "status", timeout=1.0)

    assert run.code == 3
    run.error  # noqa: B018
    assert igd.gets == []


def test_flood_of_answers_is_bounded(netns, igd, search_cli):
    burst = [answer(f"http://127.0.0.1:{p}/rootDesc.xml") for p in range(2000, 2100)]

    run, _ = _search(netns, search_cli, burst, "status", timeout=1.5)

    assert run.code in (3, 5)
    run.error  # noqa: B018
    assert run.elapsed < 1.5 + 1.0


def test_a_useless_first_answer_does_not_hide_the_gateway(netns, igd, search_cli):
    burst = [answer("http://127.0.0.1:1/rootDesc.xml"), 0.2, answer(igd.location)]

    run, _ = _search(netns, search_cli, burst, "status", timeout=2.0)

    assert run.code == 0, run.err


def test_a_unicast_search_where_nothing_listens_ends_at_once(netns):
    # The device refuses port 1900 (ICMP port unreachable): the search says
    # so at once rather than waiting out a deadline of 10 s for answers.
    with netns.entered():
        started = time.monotonic()
        found = _ssdp.search(Deadline(10.0), unicast="127.0.0.1", first=True)
        elapsed = time.monotonic() - started

    assert found == []
    assert elapsed < 5.0, f"searched for {elapsed:.1f} s"
