"""Checks of the values natfwd sends to a gateway.

Every public call validates its arguments here before anything reaches C or
the network, so a bad value gives one clear InvalidArgument and never a
half-done exchange.
"""

from __future__ import annotations

import enum
import ipaddress
import math

from natfwd._exceptions import InvalidArgument

__all__ = [
    "MAX_DESCRIPTION_BYTES",
    "MAX_LEASE",
    "Protocol",
    "check_address",
    "check_description",
    "check_lease",
    "check_port",
    "check_protocol",
    "check_timeout",
]

# UPnP leaves the length of NewPortMappingDescription to the device; the
# longest that routers were seen to keep whole is a little over 250 bytes.
MAX_DESCRIPTION_BYTES = 255

# NewLeaseDuration is a ui4; NAT-PMP's lifetime is 32 bits too.
MAX_LEASE = 2**32 - 1


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
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value):
        raise InvalidArgument(
            f"description must not hold control characters: {value!r}"
        )
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
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidArgument(f"lease must be finite, not {value!r}")
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
    return float(value)


def check_address(value: object, what: str = "address") -> str:
    """An IPv4 address in dotted form."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be an IPv4 address, not {value!r}")
    try:
        return str(ipaddress.IPv4Address(value.strip()))
    except ValueError as exc:
        raise InvalidArgument(f"{what} must be an IPv4 address, not {value!r}") from exc
