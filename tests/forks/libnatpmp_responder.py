"""A scripted NAT-PMP gateway for the libnatpmp fork tests.

Run inside a network namespace that the test created::

    python libnatpmp_responder.py ADDRESS [--reply HEX[,HEX...]]...

It binds UDP port 5351 on ADDRESS, prints ``ready`` once bound, then answers
the n-th request with the n-th ``--reply`` (the last one is reused when the
requests outnumber them); a comma-separated reply sends several datagrams in
a row, and an empty one an empty datagram. Each request received is printed
as ``request HEX``. It stops after ``--max-requests`` requests or
``--timeout`` seconds, whichever comes first, so it never outlives its test.
With ``--forge-from ADDRESS:PORT --forge HEX``, a second socket bound there
sends HEX to the client before each reply, as another host (or another port
of the gateway) forging answers would. On SIGTERM it first reports the
requests already queued on its socket, so a test that stops it right after
its client exits still sees every request.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import time

NATPMP_PORT = 5351


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address", help="IPv4 address to listen on")
    parser.add_argument(
        "--reply",
        action="append",
        default=[],
        help="hex datagrams sent back for one request, comma-separated",
    )
    parser.add_argument("--forge-from", help="ADDRESS:PORT of the forger")
    parser.add_argument("--forge", help="hex datagram the forger sends")
    parser.add_argument("--max-requests", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=10.0)
    return parser.parse_args(argv)


def datagrams(reply: str) -> list[bytes]:
    try:
        return [bytes.fromhex(part) for part in reply.split(",")]
    except ValueError as exc:
        raise SystemExit(f"responder: --reply {reply!r} is not hex: {exc}") from exc


class Stop(Exception):
    """SIGTERM arrived."""


def stop(signum, frame) -> None:
    raise Stop


def forger(args) -> socket.socket | None:
    if not args.forge_from:
        return None
    address, _, port = args.forge_from.rpartition(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, int(port)))
    return sock


def serve(sock, forged, replies: list[list[bytes]], args) -> None:
    deadline = time.monotonic() + args.timeout
    for count in range(args.max_requests):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            request, peer = sock.recvfrom(64)
        except socket.timeout:
            break
        print(f"request {request.hex()}", flush=True)

        if forged is not None:
            forged.sendto(bytes.fromhex(args.forge), peer)
        for datagram in replies[min(count, len(replies) - 1)] if replies else []:
            sock.sendto(datagram, peer)


def drain(sock: socket.socket) -> None:
    sock.setblocking(False)
    while True:
        try:
            request = sock.recv(64)
        except BlockingIOError:
            return
        print(f"request {request.hex()}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    replies = [datagrams(r) for r in args.reply]
    signal.signal(signal.SIGTERM, stop)

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((args.address, NATPMP_PORT))
        forged = forger(args)
        print("ready", flush=True)
        try:
            serve(sock, forged, replies, args)
        except Stop:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            drain(sock)
        finally:
            if forged is not None:
                forged.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
