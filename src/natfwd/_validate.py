"""Checks of the values natfwd sends to a gateway.

Every public call validates its arguments here before anything reaches C or
the network, so a bad value gives one clear InvalidArgument and never a
half-done exchange.
"""

from __future__ import annotations

import enum
import ipaddress
import math
import unicodedata
from urllib.parse import urlsplit

from natfwd._exceptions import InvalidArgument

__all__ = [
    "MAX_DESCRIPTION_BYTES",
    "MAX_LEASE",
    "MAX_TIMEOUT",
    "Protocol",
    "check_address",
    "check_description",
    "check_lease",
    "check_port",
    "check_protocol",
    "check_timeout",
    "check_url",
]

# UPnP leaves the length of NewPortMappingDescription to the device; the
# longest that routers were seen to keep whole is a little over 250 bytes.
MAX_DESCRIPTION_BYTES = 255

# NewLeaseDuration is a ui4; NAT-PMP's lifetime is 32 bits too.
MAX_LEASE = 2**32 - 1

# miniupnpc keeps at most 64 bytes of a host name; a description URL longer
# than this is no gateway's.
MAX_HOST_LENGTH = 64
MAX_URL_LENGTH = 1024

# Far beyond any real exchange, and far below what the OS can wait for.
MAX_TIMEOUT = 86400.0

# Characters a description may not hold: controls (C0, DEL, C1), line and
# paragraph separators, lone surrogates (not encodable as UTF-8), and the
# bidirectional overrides that make stored text display as something else.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f") | frozenset(
    chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))
)


class Protocol(str, enum.Enum):
    """The transport protocol of a port mapping."""

    TCP = "tcp"
    UDP = "udp"

    def __str__(self) -> str:
        return self.value


def check_port(value: object, what: str = "port", *, allow_zero: bool = False) -> int:
    """A port number as an int, from an int or a decimal string."""
    if isinstance(value, bool):
        raise InvalidArgument(f"{what} must be a number, not {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if not text.isdigit() or not text.isascii():
            raise InvalidArgument(
                f"{what} must be a number from 1 to 65535, not {value!r}"
            )
        value = int(text)
    if not isinstance(value, int):
        raise InvalidArgument(f"{what} must be an int, not {type(value).__name__}")
    low = 0 if allow_zero else 1
    if not low <= value <= 65535:
        raise InvalidArgument(f"{what} must be from {low} to 65535, not {value!r}")
    return value


def check_protocol(value: object) -> Protocol:
    """A Protocol from a Protocol or a case-insensitive 'tcp'/'udp'."""
    if isinstance(value, Protocol):
        return value
    if isinstance(value, str):
        try:
            return Protocol(value.strip().lower())
        except ValueError:
            pass
    raise InvalidArgument(f"protocol must be 'tcp' or 'udp', not {value!r}")


def check_description(value: object) -> str:
    """A mapping description: printable text of at most 255 UTF-8 bytes.

    Markup characters are fine (they are escaped on the wire); control
    characters are not, since gateways store and show descriptions as text.
    """
    if not isinstance(value, str):
        raise InvalidArgument(f"description must be text, not {type(value).__name__}")
    bad = next(
        (
            c
            for c in value
            if unicodedata.category(c) in _REFUSED_CATEGORIES or c in _BIDI_CONTROLS
        ),
        None,
    )
    if bad is not None:
        what = (
            "is not valid UTF-8"
            if 0xDC80 <= ord(bad) <= 0xDCFF
            else f"holds U+{ord(bad):04X}, a control character"
        )
        raise InvalidArgument(f"description must be printable text; {value!r} {what}")
    size = len(value.encode("utf-8"))
    if size > MAX_DESCRIPTION_BYTES:
        raise InvalidArgument(
            f"description is {size} bytes long; at most {MAX_DESCRIPTION_BYTES} "
            f"are allowed"
        )
    return value


def check_lease(value: object) -> int:
    """A lease in whole seconds; 0 asks for a permanent mapping."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(f"lease must be a number of seconds, not {value!r}")
    if isinstance(value, float) and not value.is_integer():
        # int() would make 0.5 a permanent lease, and NaN an error of its own.
        raise InvalidArgument(f"lease must be a whole number of seconds, not {value!r}")
    seconds = int(value)
    if not 0 <= seconds <= MAX_LEASE:
        raise InvalidArgument(
            f"lease must be from 0 to {MAX_LEASE} seconds, not {value!r}"
        )
    return seconds


def check_timeout(value: object) -> float:
    """A positive, finite number of seconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(f"timeout must be a number of seconds, not {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise InvalidArgument(
            f"timeout must be a positive number of seconds, not {value!r}"
        )
    if value > MAX_TIMEOUT:
        raise InvalidArgument(
            f"timeout must be at most {MAX_TIMEOUT:g} seconds, not {value!r}"
        )
    return float(value)


def check_address(value: object, what: str = "address") -> str:
    """An IPv4 address in dotted form."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be an IPv4 address, not {value!r}")
    try:
        return str(ipaddress.IPv4Address(value.strip()))
    except ValueError as exc:
        raise InvalidArgument(f"{what} must be an IPv4 address, not {value!r}") from exc


def check_url(value: object, what: str = "URL") -> str:
    """An http:// URL fit to hand to miniupnpc: a host, a valid port, and
    nothing that could end up as raw bytes of another HTTP header line."""
    expected = f"{what} must be an http://HOST[:PORT]/PATH URL, not {value!r}"
    if not isinstance(value, str):
        raise InvalidArgument(expected)
    if (
        not value.startswith("http://")
        or len(value) > MAX_URL_LENGTH
        or not value.isascii()
        or any(c <= " " or c == "\x7f" for c in value)
    ):
        raise InvalidArgument(expected)
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise InvalidArgument(expected) from exc
    host = parts.hostname or ""
    if (
        not host
        or len(host) > MAX_HOST_LENGTH
        or "@" in parts.netloc
        or parts.netloc.endswith(":")
        or port == 0
    ):
        raise InvalidArgument(expected)
    return value
