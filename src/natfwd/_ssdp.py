"""SSDP search for Internet Gateway Devices.

miniupnpc's own search waits for a quiet period of at least one second
after the last answer. natfwd sends the M-SEARCH itself and stops at the
first gateway that answers, retransmitting with backoff until the deadline;
miniupnpc then fetches and parses the device description. A gateway on the
LAN typically answers within a few milliseconds.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import selectors
import socket
import struct
import sys
import time
from collections.abc import Collection
from typing import NamedTuple

from natfwd._deadline import Deadline
from natfwd._exceptions import InvalidArgument
from natfwd._validate import check_url

__all__ = ["SEARCH_TARGETS", "Response", "search"]

log = logging.getLogger("natfwd.upnp")
wire = logging.getLogger("natfwd.wire")

MULTICAST_GROUP = "239.255.255.250"
SSDP_PORT = 1900

# Searched together in one burst; an IGD answers at least one of them.
SEARCH_TARGETS = (
    "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
    "urn:schemas-upnp-org:device:InternetGatewayDevice:2",
    "urn:schemas-upnp-org:service:WANIPConnection:1",
    "urn:schemas-upnp-org:service:WANPPPConnection:1",
)

# Retransmit after these many seconds from the start (UDP may be lost).
RETRANSMIT_AT = (0.0, 0.25, 0.75, 1.75, 3.75)

MAX_DATAGRAM = 8192
MAX_RESPONSES = 64


class Response(NamedTuple):
    """One SSDP answer: where the device's description is, and who sent it."""

    location: str
    st: str
    usn: str
    source: str


def _request(target: str, host: str = MULTICAST_GROUP) -> bytes:
    # A unicast search carries no MX: the device answers at once.
    mx = "MX: 1\r\n" if host == MULTICAST_GROUP else ""
    return (
        "M-SEARCH * HTTP/1.1\r\n"
        f"HOST: {host}:{SSDP_PORT}\r\n"
        'MAN: "ssdp:discover"\r\n'
        f"{mx}"
        f"ST: {target}\r\n"
        "\r\n"
    ).encode("ascii")


def parse_response(data: bytes, source: str) -> Response | None:
    """A Response from one datagram, or None if it is not a usable answer.

    Anything a device on the LAN sends must give a Response or None, never
    an exception: one bad answer cannot be allowed to end the search.
    """
    # Latin-1 decodes any bytes: a SERVER header in another charset is no
    # reason to drop the answer; the LOCATION is checked to be ASCII.
    text = data.decode("latin-1")
    # Some devices end their lines with a bare LF.
    lines = [line.rstrip("\r") for line in text.split("\n")]
    if not lines[0].startswith("HTTP/1.") or lines[0].split()[1:2] != ["200"]:
        return None

    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers.setdefault(name.strip().lower(), value.strip())
    location = headers.get("location", "")
    st = headers.get("st", "")

    try:
        check_url(location, "LOCATION")
    except InvalidArgument:
        return None
    if st not in SEARCH_TARGETS:
        return None
    return Response(location=location, st=st, usn=headers.get("usn", ""), source=source)


def _multicast_socket(interface: str | None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 2)
        if interface is not None:
            try:
                sock.setsockopt(
                    socket.IPPROTO_IP,
                    socket.IP_MULTICAST_IF,
                    _interface_option(interface),
                )
            except OSError as exc:
                raise InvalidArgument(
                    f"cannot search on interface {interface!r}: "
                    f"{exc.strerror or exc} (give a name or an address of this host)"
                ) from exc
        sock.bind(("", 0))
    except BaseException:
        sock.close()
        raise
    return sock


def check_interface(interface: str) -> str:
    """*interface*, once the OS agrees it can search on it (nothing is sent)."""
    _multicast_socket(interface).close()
    return interface


def _interface_option(interface: str) -> bytes:
    """The IP_MULTICAST_IF value for an interface given by address or name."""
    try:
        return socket.inet_aton(str(ipaddress.IPv4Address(interface)))
    except ValueError:
        pass
    if not sys.platform.startswith("linux"):
        raise InvalidArgument(
            f"interface must be given by its IPv4 address here, not {interface!r}"
        )
    try:
        index = socket.if_nametoindex(interface)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
        raise InvalidArgument(f"no network interface named {interface!r}") from exc
    # struct ip_mreqn: multicast group, local address, interface index.
    return struct.pack("=4s4si", b"\0" * 4, b"\0" * 4, index)


def search(
    deadline: Deadline,
    *,
    interface: str | None = None,
    first: bool = True,
    unicast: str | None = None,
    exclude: Collection[str] = (),
) -> list[Response]:
    """Search for IGDs until *deadline*, or until the first answer if *first*.

    With *unicast*, only the device at that address is asked. Answers whose
    location is in *exclude* are ignored. Answers come back in the order
    they arrived, each location once.
    """
    destination = unicast or MULTICAST_GROUP
    found: dict[str, Response] = {}
    start = time.monotonic()
    pending = list(RETRANSMIT_AT)

    with contextlib.ExitStack() as stack:
        sock = stack.enter_context(_multicast_socket(interface))
        sel = stack.enter_context(selectors.DefaultSelector())
        sel.register(sock, selectors.EVENT_READ)
        sockets = [sock]
        probe = None
        if unicast:
            # Answers may come from any port of the device, so they are
            # read on an unconnected socket. The same search sent from a
            # connected one also learns of an ICMP "port unreachable":
            # then nothing there speaks SSDP, and the rest of the deadline
            # would be spent waiting for nothing.
            probe = stack.enter_context(_connected_socket(unicast))
            sel.register(probe, selectors.EVENT_READ)
            # It sends one search, first: a gateway rate-limits its ICMP
            # errors, and the first datagram is the likeliest to get one.
            sockets.insert(0, probe)
        while not deadline.expired() and len(found) < MAX_RESPONSES:
            elapsed = time.monotonic() - start
            refused = False
            while pending and pending[0] <= elapsed:
                pending.pop(0)
                for each in sockets:
                    if each is probe:
                        sent = _send_burst(
                            each, destination, SEARCH_TARGETS[:1], connected=True
                        )
                    else:
                        sent = _send_burst(each, destination)
                    refused |= not sent
            wait = deadline.remaining()
            if pending:
                wait = min(wait, pending[0] - elapsed)
            if not refused:
                for key, _ in sel.select(max(0.0, wait)):
                    refused |= not _receive(key.fileobj, found, exclude)
            if refused:
                log.debug("SSDP: nothing listens at %s:%d", unicast, SSDP_PORT)
                break
            if first and found:
                break
    return list(found.values())


def _connected_socket(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setblocking(False)
        sock.connect((address, SSDP_PORT))
    except BaseException:
        sock.close()
        raise
    return sock


# How the OS reports an ICMP "port unreachable" on a UDP socket: refused
# on POSIX systems, reset on Windows.
_REFUSED = (ConnectionRefusedError, ConnectionResetError)


def _send_burst(
    sock: socket.socket,
    destination: str,
    targets: Collection[str] = SEARCH_TARGETS,
    *,
    connected: bool = False,
) -> bool:
    """Send one search per target; False if the port was refused."""
    for target in targets:
        wire.debug("SSDP M-SEARCH to %s for %s", destination, target)
        request = _request(target, destination)
        try:
            # The BSDs and macOS refuse sendto() on a connected socket.
            if connected:
                sock.send(request)
            else:
                sock.sendto(request, (destination, SSDP_PORT))
        except _REFUSED:
            return False  # an earlier search's ICMP error, reported now
        except OSError as exc:
            log.debug("SSDP search could not be sent: %s", exc)
    return True


def _receive(
    sock: socket.socket, found: dict[str, Response], exclude: Collection[str]
) -> bool:
    """Read every answer waiting on *sock*; False if the port was refused."""
    while True:
        try:
            data, (source, _port) = sock.recvfrom(MAX_DATAGRAM)
        except (BlockingIOError, InterruptedError):
            return True
        except _REFUSED:
            return False
        except OSError as exc:
            log.debug("SSDP receive failed: %s", exc)
            return True
        response = parse_response(data, source)
        if response is None:
            wire.debug("SSDP ignored %d bytes from %s", len(data), source)
            continue
        wire.debug(
            "SSDP answer from %s: %s at %s", source, response.st, response.location
        )
        if response.location not in exclude:
            found.setdefault(response.location, response)
