"""A bounded TCP/UDP echo server and client, run inside a lab namespace.

The lab starts this file with ``ip netns exec NS python echo.py ...``; it uses
only the standard library so it runs under any Python 3.

``serve`` binds, prints ``ready`` on a line of its own, then echoes what each
peer sends (unless ``--silent``) and prints ``peer <ip> <port> <hex data>``
for each one. It stops after ``--max-seconds`` or ``--max-peers``, whichever
comes first.

``send`` sends ``--payload`` to ``--host``:``--port``, prints the reply and
exits 0 when the reply equals the payload, 1 when nothing (or something else)
came back, 2 on a usage error. UDP is tried ``--attempts`` times.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time

BUFSIZE = 4096


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _serve_tcp(args: argparse.Namespace, deadline: float) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((args.bind, args.port))
        listener.listen(8)
        _say("ready")

        served = 0
        while served < args.max_peers and time.monotonic() < deadline:
            listener.settimeout(max(0.05, min(1.0, deadline - time.monotonic())))
            try:
                conn, peer = listener.accept()
            except socket.timeout:
                continue

            served += 1
            with conn:
                conn.settimeout(2.0)
                data = b""
                try:
                    data = conn.recv(BUFSIZE)
                    if data and not args.silent:
                        conn.sendall(data)
                except OSError:
                    pass
            _say(f"peer {peer[0]} {peer[1]} {data.hex()}")


def _serve_udp(args: argparse.Namespace, deadline: float) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((args.bind, args.port))
        _say("ready")

        served = 0
        while served < args.max_peers and time.monotonic() < deadline:
            sock.settimeout(max(0.05, min(1.0, deadline - time.monotonic())))
            try:
                data, peer = sock.recvfrom(BUFSIZE)
            except socket.timeout:
                continue

            served += 1
            _say(f"peer {peer[0]} {peer[1]} {data.hex()}")
            if not args.silent:
                sock.sendto(data, peer)


def _send_tcp(args: argparse.Namespace, payload: bytes) -> bytes:
    with socket.create_connection((args.host, args.port), timeout=args.timeout) as s:
        s.sendall(payload)
        return s.recv(BUFSIZE)


def _send_udp(args: argparse.Namespace, payload: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(args.timeout / args.attempts)
        for _ in range(args.attempts):
            sock.sendto(payload, (args.host, args.port))
            try:
                data, _peer = sock.recvfrom(BUFSIZE)
            except socket.timeout:
                continue
            return data
    return b""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="echo.py")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve")
    serve.add_argument("--proto", choices=("tcp", "udp"), default="tcp")
    serve.add_argument("--bind", default="0.0.0.0")
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--max-seconds", type=float, default=60.0)
    serve.add_argument("--max-peers", type=int, default=64)
    serve.add_argument("--silent", action="store_true", help="listen only")

    send = sub.add_parser("send")
    send.add_argument("--proto", choices=("tcp", "udp"), default="tcp")
    send.add_argument("--host", required=True)
    send.add_argument("--port", type=int, required=True)
    send.add_argument("--payload", default="natfwd-lab-probe")
    send.add_argument("--timeout", type=float, default=2.0)
    send.add_argument("--attempts", type=int, choices=range(1, 10), default=3)

    args = parser.parse_args(argv)

    if args.command == "serve":
        deadline = time.monotonic() + args.max_seconds
        if args.proto == "tcp":
            _serve_tcp(args, deadline)
        else:
            _serve_udp(args, deadline)
        return 0

    payload = args.payload.encode()
    try:
        if args.proto == "tcp":
            reply = _send_tcp(args, payload)
        else:
            reply = _send_udp(args, payload)
    except OSError as exc:
        print(f"echo.py: {args.host}:{args.port}/{args.proto}: {exc}", file=sys.stderr)
        return 1

    _say(reply.decode(errors="replace"))
    return 0 if reply == payload else 1


if __name__ == "__main__":
    sys.exit(main())
