"""A minimal NAT-PMP (RFC 6886) and PCP (RFC 6887) client for lab checks.

The upstream ``natpmpc`` stops as soon as the gateway reports a reserved
external address, and every address in the lab is a reserved one, so the lab
proves the NAT-PMP and PCP paths with this small client instead. The lab runs
it with ``ip netns exec NS python natpmp_probe.py ...``; standard library only.

Commands (each prints one JSON object and exits 0 when a reply came, whatever
its result code; 1 when none came within the retries; 2 on a usage error):

``address``  NAT-PMP external address request (opcode 0)
``map``      NAT-PMP mapping request (opcode 1 UDP, 2 TCP); lifetime 0 deletes
``pcp-map``  PCP MAP request, IPv4 only; deleting (lifetime 0) or renewing
             a mapping needs the ``--nonce`` it was made with

Requests are sent to ``--gateway`` port 5351 at most ``--attempts`` times,
waiting 250 ms, then twice as long each time (RFC 6886 section 3.1).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import socket
import struct
import sys

PORT = 5351
NATPMP_OPCODES = {"udp": 1, "tcp": 2}
IANA_PROTOCOLS = {"tcp": 6, "udp": 17}


def exchange(gateway: str, request: bytes, attempts: int, match) -> bytes | None:
    """Send *request* until a reply for which *match* is true comes back."""
    wait = 0.25
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((gateway, PORT))
        for _ in range(attempts):
            sock.send(request)
            sock.settimeout(wait)
            try:
                while True:
                    reply = sock.recv(1100)
                    if match(reply):
                        return reply
            except socket.timeout:
                wait *= 2
            except ConnectionRefusedError:
                # ICMP port unreachable: nobody listens. Retry in case the
                # daemon is still starting, but do not wait for the timeout.
                wait *= 2
    return None


def natpmp_address(args: argparse.Namespace) -> dict | None:
    reply = exchange(
        args.gateway,
        struct.pack("!BB", 0, 0),
        args.attempts,
        lambda r: len(r) >= 12 and r[1] == 128,
    )
    if reply is None:
        return None

    _version, _op, result, epoch = struct.unpack("!BBHI", reply[:8])
    return {
        "result": result,
        "epoch": epoch,
        "address": str(ipaddress.IPv4Address(reply[8:12])),
    }


def natpmp_map(args: argparse.Namespace) -> dict | None:
    opcode = NATPMP_OPCODES[args.proto]
    request = struct.pack(
        "!BBHHHI", 0, opcode, 0, args.internal, args.external, args.lifetime
    )
    reply = exchange(
        args.gateway,
        request,
        args.attempts,
        lambda r: len(r) >= 16 and r[1] == 128 + opcode,
    )
    if reply is None:
        return None

    _v, _op, result, epoch, internal, external, lifetime = struct.unpack(
        "!BBHIHHI", reply[:16]
    )
    return {
        "result": result,
        "epoch": epoch,
        "internal_port": internal,
        "external_port": external,
        "lifetime": lifetime,
    }


def _mapped(address: str) -> bytes:
    return ipaddress.IPv6Address(f"::ffff:{address}").packed


def pcp_map(args: argparse.Namespace) -> dict | None:
    nonce = bytes.fromhex(args.nonce) if args.nonce else os.urandom(12)
    header = struct.pack("!BBHI", 2, 1, 0, args.lifetime) + _mapped(args.client_ip)
    body = nonce + struct.pack(
        "!B3xHH", IANA_PROTOCOLS[args.proto], args.internal, args.external
    )
    body += _mapped("0.0.0.0")
    reply = exchange(
        args.gateway,
        header + body,
        args.attempts,
        lambda r: len(r) >= 24 and r[1] == 0x81 and r[24:36] == nonce,
    )
    if reply is None:
        return None

    _v, _op, _r, result, lifetime, epoch = struct.unpack("!BBBBII", reply[:12])
    document = {
        "result": result,
        "epoch": epoch,
        "lifetime": lifetime,
        "nonce": nonce.hex(),
    }
    if len(reply) >= 60:
        internal, external = struct.unpack("!HH", reply[40:44])
        document.update(
            internal_port=internal,
            external_port=external,
            external_address=str(ipaddress.IPv6Address(reply[44:60]).ipv4_mapped),
        )
    return document


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be in 0..65535, got {text!r}")
    return value


def _nonce(text: str) -> str:
    try:
        if len(bytes.fromhex(text)) == 12:
            return text
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"nonce must be 24 hex digits, got {text!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="natpmp_probe.py")
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--attempts", type=int, choices=range(1, 7), default=4)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("address")
    for name in ("map", "pcp-map"):
        command = sub.add_parser(name)
        command.add_argument("--proto", choices=("tcp", "udp"), default="tcp")
        command.add_argument("--internal", type=_port, required=True)
        command.add_argument("--external", type=_port, default=0)
        command.add_argument("--lifetime", type=int, default=3600)
        if name == "pcp-map":
            command.add_argument("--client-ip", required=True)
            command.add_argument("--nonce", type=_nonce, default=None)

    args = parser.parse_args(argv)
    handler = {"address": natpmp_address, "map": natpmp_map, "pcp-map": pcp_map}
    document = handler[args.command](args)
    if document is None:
        print(f"natpmp_probe.py: no reply from {args.gateway}", file=sys.stderr)
        return 1

    print(json.dumps(document))
    return 0


if __name__ == "__main__":
    sys.exit(main())
