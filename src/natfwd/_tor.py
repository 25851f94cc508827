"""``natfwd-tor-helper``: a port forwarding helper for Tor 0.2.4 to 0.3.3.

Those Tor versions run the program named by their ``PortForwardingHelper``
option about every five minutes, as::

    HELPER -p EXT:INT [-p EXT:INT ...]

and read one line per port from its stdout::

    tor-fw-helper tcp-forward EXT INT SUCCESS
    tor-fw-helper tcp-forward EXT INT FAIL [short message]

Tor rejects any other line, so everything else goes to stderr. What Tor
does with the child shapes the rest (docs/tor.md has the details):

* it starts the helper with an empty environment and no PATH search, so
  nothing here may depend on HOME, PATH or LANG;
* from 0.2.5.5 it polls the child every five seconds and drops the output
  of a child that has already exited: the helper keeps stdout open for
  LINGER seconds (10; ``$NATFWD_TOR_HELPER_LINGER`` for tests) after
  printing, then exits 0;
* it keeps the child's stdin open: the helper never reads it;
* it runs the helper again every 300 s or so: the lease asked for is
  LEASE (1200 s), so a mapping outlives a missed run or two, and a relay
  that stops leaves it behind for no more than 20 minutes.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Sequence

import natfwd
from natfwd._exceptions import NatfwdError
from natfwd._validate import check_port

__all__ = ["LEASE", "LINGER", "main", "parse_ports", "result_line"]

log = logging.getLogger("natfwd.tor")

LEASE = 1200
LINGER = 10.0
LINGER_ENV = "NATFWD_TOR_HELPER_LINGER"
TIMEOUT = 10.0
DESCRIPTION = "Tor relay (natfwd)"
# Tor reads the helper's stdout 400 bytes at a time; a message is cut well
# short of that, so every line fits in one read with room to spare.
MESSAGE_LIMIT = 80

USAGE = (
    "usage: natfwd-tor-helper -p [EXTERNAL]:INTERNAL [-p ...] [-v] [-g] [-T]\n"
    "Maps TCP ports for Tor's PortForwardingHelper option and prints one\n"
    "'tor-fw-helper tcp-forward EXT INT SUCCESS|FAIL' line per port.\n"
)


class UsageError(Exception):
    """The command line is unusable."""


def parse_ports(values: Sequence[str]) -> list[tuple[int, int]]:
    """(external, internal) pairs from ``[EXT]:INT`` words (``:INT``: same)."""
    ports = []
    for value in values:
        external, sep, internal = value.rpartition(":")
        if not sep:
            external = internal
        try:
            internal_port = check_port(internal, "internal port")
            external_port = (
                check_port(external, "external port") if external else internal_port
            )
        except ValueError as exc:
            raise UsageError(f"{exc} (in {value!r}; expected [EXT]:INT)") from None
        ports.append((external_port, internal_port))
    return ports


def result_line(external: int, internal: int, ok: bool, message: str = "") -> str:
    """One line of the protocol, message made short and single-line."""
    words = " ".join(str(message).split())
    words = words.encode("ascii", "replace").decode("ascii")
    if len(words) > MESSAGE_LIMIT:
        words = words[: MESSAGE_LIMIT - 3].rstrip() + "..."
    line = f"tor-fw-helper tcp-forward {external} {internal} "
    line += "SUCCESS" if ok else "FAIL"
    return f"{line} {words}" if words else line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="natfwd-tor-helper", add_help=False)
    parser.add_argument(
        "-p", "--port", "--forward-port", dest="ports", action="append", default=[]
    )
    parser.add_argument("-v", "--verbose", action="count", default=0)
    parser.add_argument("-g", "--fetch-public-ip", action="store_true")
    parser.add_argument("-T", "--test-commandline", action="store_true")
    parser.add_argument("-h", "--help", action="store_true")
    return parser


def _linger() -> float:
    text = os.environ.get(LINGER_ENV)
    if text is None:
        return LINGER
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        log.warning("ignoring %s=%r: not a number of seconds", LINGER_ENV, text)
        return LINGER
    return seconds


def _print(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _forward(ports: list[tuple[int, int]], fetch_ip: bool) -> None:
    """Map every port and print its line; never raises a NatfwdError."""
    try:
        gateway = natfwd.find_gateway(timeout=TIMEOUT)
    except NatfwdError as exc:
        log.warning("no gateway: %s", exc)
        for external, internal in ports:
            _print(result_line(external, internal, False, "no UPnP or NAT-PMP gateway"))
        return

    try:
        if fetch_ip:
            try:
                log.warning("external address: %s", gateway.external_address())
            except NatfwdError as exc:
                log.warning("no external address: %s", exc)
        for external, internal in ports:
            try:
                mapping = gateway.add(
                    internal,
                    external,
                    "tcp",
                    lease=LEASE,
                    description=DESCRIPTION,
                    timeout=TIMEOUT,
                )
            except NatfwdError as exc:
                log.warning("could not map %d to %d: %s", external, internal, exc)
                _print(result_line(external, internal, False, str(exc)))
                continue
            if mapping.external_port != external:
                # Tor advertises the port it asked for; another is no use.
                log.warning(
                    "the gateway gave port %d instead of %d",
                    mapping.external_port,
                    external,
                )
                _print(
                    result_line(
                        external,
                        internal,
                        False,
                        f"gateway gave port {mapping.external_port} instead",
                    )
                )
                continue
            _print(result_line(external, internal, True))
    finally:
        # The mappings must outlive this run: Tor runs the helper again
        # before the lease ends.
        gateway.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run as Tor runs the helper; returns the exit status."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("natfwd-tor-helper: %(message)s"))
    root = logging.getLogger("natfwd")
    root.addHandler(handler)

    args, unknown = _parser().parse_known_args(argv)
    root.setLevel(logging.INFO if args.verbose else logging.WARNING)
    if unknown:
        # Tor passes only the options above: anything else is a person's
        # typo, and a run that maps other ports than meant helps nobody.
        sys.stderr.write(f"natfwd-tor-helper: unknown argument {unknown[0]!r}\n")
        sys.stderr.write(USAGE)
        return 2
    if args.help:
        sys.stderr.write(USAGE)
        return 0
    try:
        ports = parse_ports(args.ports)
    except UsageError as exc:
        sys.stderr.write(f"natfwd-tor-helper: {exc}\n")
        return 2
    if not ports and not args.fetch_public_ip:
        sys.stderr.write(USAGE)
        return 2

    # Tor may stop the helper at any time; that is no error.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    try:
        _forward(ports, args.fetch_public_ip)
        # Tor 0.2.5.5 and later poll every five seconds and ignore the output
        # of a helper that has exited by then.
        time.sleep(_linger())
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
