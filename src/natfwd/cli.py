"""The natfwd command line.

    natfwd status | add SPEC | remove SPEC | list | external-ip

Results go to stdout (as JSON with --json), diagnostics to stderr: one line
per error, with a traceback only under --debug. The exit status says what
happened; see EXIT_CODES and docs/cli.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import socket
import sys
import traceback
from collections.abc import Sequence
from typing import Callable

import natfwd
from natfwd import _bindings, _keep_args, upnp
from natfwd._deadline import Deadline
from natfwd._exceptions import StateBusy
from natfwd._gateway import DEFAULT_TIMEOUT
from natfwd._validate import (
    check_address,
    check_description,
    check_lease,
    check_port,
    check_protocol,
    check_timeout,
)

__all__ = ["EXIT_CODES", "main"]

log = logging.getLogger("natfwd.cli")

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_NO_GATEWAY = 3
EXIT_REFUSED = 4
EXIT_GATEWAY_FAILED = 5
EXIT_UNAVAILABLE = 6
EXIT_BUSY = 7
EXIT_INTERRUPTED = 130

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_INTERNAL: "internal error (a bug: please report it, with --debug output)",
    EXIT_USAGE: "bad usage: an argument or option value is invalid",
    EXIT_NO_GATEWAY: "no gateway answered (by any protocol tried) before the deadline",
    EXIT_REFUSED: "the gateway refused: an error code from it, a port in use, "
    "or something its protocol cannot do",
    EXIT_GATEWAY_FAILED: "the gateway failed: it stopped answering or answered "
    "something unusable",
    EXIT_UNAVAILABLE: "this build of natfwd lacks the protocol needed",
    EXIT_BUSY: "another natfwd keep is using the same state file",
    EXIT_INTERRUPTED: "interrupted",
}


class UsageError(Exception):
    """A command-line value is invalid (exit status 2)."""


# -- argument parsing ---------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, with errors as one line and exit status 2."""

    def error(self, message: str) -> None:
        raise UsageError(message)


def _timeout(text: str) -> float:
    try:
        if not text.isascii():  # float() reads digits of any script
            raise ValueError(text)
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"timeout must be a positive number of seconds, not {text!r}"
        ) from None
    try:
        return check_timeout(seconds)
    except ValueError as exc:  # out of range: the check says which range
        raise argparse.ArgumentTypeError(str(exc)) from None


def _lease(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(
            f"lease must be a whole number of seconds (0 for permanent), not {text!r}"
        )
    try:
        return check_lease(int(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_spec(text: str, default_protocol: str = "tcp") -> tuple[int, int, str]:
    """PORT[:EXTERNAL][/PROTOCOL] as (internal port, external port, protocol).

    ``:EXTERNAL`` alone (``:9001``) is not allowed: the internal port is
    what natfwd must know.
    """
    ports, slash, protocol = text.partition("/")
    internal, sep, external = ports.partition(":")
    try:
        internal_port = check_port(internal, "port")
        external_port = check_port(external, "external port") if sep else internal_port
        proto = check_protocol(protocol if slash else default_protocol)
    except ValueError as exc:
        raise UsageError(
            f"{exc} (in {text!r}; expected PORT[:EXTERNAL][/tcp|/udp])"
        ) from None
    return internal_port, external_port, proto.value


def _common_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """Options accepted before and after the command name.

    Under a command they default to SUPPRESS, so they override the values
    given before it only when given.
    """

    def default(value):
        return value if defaults else argparse.SUPPRESS

    group = parser.add_argument_group("common options")
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print the result as JSON on stdout",
    )
    group.add_argument(
        "--via",
        choices=("auto", "natpmp", "pcp", "upnp"),
        default=default("auto"),
        help="the protocol to use (default: auto, whichever answers first)",
    )
    group.add_argument(
        "--gateway",
        metavar="ADDR",
        default=default(None),
        help="the gateway's address for NAT-PMP (skips the route lookup)",
    )
    group.add_argument(
        "--upnp-url",
        metavar="URL",
        default=default(None),
        help="the IGD's description URL (skips the UPnP search)",
    )
    group.add_argument(
        "--interface",
        metavar="ADDR|NAME",
        default=default(None),
        help="the interface to search for UPnP gateways on",
    )
    group.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_timeout,
        default=default(DEFAULT_TIMEOUT),
        help=f"one deadline for the whole command (default: {DEFAULT_TIMEOUT:g})",
    )
    group.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=default(0),
        help="log progress on stderr; twice for details, three times for wire traffic",
    )
    group.add_argument(
        "--debug",
        action="store_true",
        default=default(False),
        help="show a traceback with errors",
    )


def build_parser() -> argparse.ArgumentParser:
    epilog = "exit status:\n" + "\n".join(
        f"  {code:<4}{meaning}" for code, meaning in EXIT_CODES.items()
    )
    parser = _Parser(
        prog="natfwd",
        description="Forward ports on the local router over UPnP IGD or NAT-PMP.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version",
        action="store_true",
        help="print the versions of natfwd and its libraries",
    )
    _common_options(parser, defaults=True)
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser
    )

    def command(
        name: str, handler: Callable, help_text: str
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        _common_options(sub, defaults=False)
        sub.set_defaults(handler=handler)
        return sub

    command(
        "status", cmd_status, "show the gateway natfwd finds and its external address"
    )

    add = command("add", cmd_add, "map a port on the gateway")
    add.add_argument("spec", metavar="PORT[:EXTERNAL][/tcp|/udp]")
    add.add_argument(
        "--lease",
        type=_lease,
        default=3600,
        metavar="SECONDS",
        help="the lease to ask for; 0 asks for a permanent mapping (default: 3600)",
    )
    add.add_argument(
        "--description",
        default="natfwd",
        metavar="TEXT",
        help="the mapping's description, shown by the router (default: natfwd)",
    )
    add.add_argument(
        "--internal-address",
        metavar="ADDR",
        help="the LAN address to forward to (UPnP only; default: this host's)",
    )
    add.add_argument(
        "--any-port",
        action="store_true",
        help="if the external port is taken, accept another one",
    )

    remove = command("remove", cmd_remove, "remove a port mapping")
    remove.add_argument("spec", metavar="PORT[:EXTERNAL][/tcp|/udp]")
    remove.add_argument(
        "--missing-ok",
        action="store_true",
        help="succeed if the gateway has no such mapping",
    )

    command("list", cmd_list, "list the gateway's port mappings (UPnP)")
    command("external-ip", cmd_external_ip, "print the gateway's external address")

    keep = command(
        "keep", cmd_keep, "map ports and keep them mapped until stopped (a daemon)"
    )
    _keep_args.add_arguments(keep)
    return parser


# -- commands -----------------------------------------------------------------


class Context:
    """What every command needs: its options, the deadline, the output."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.deadline = Deadline(args.timeout)

    def find_gateway(self, via: str | None = None) -> natfwd.Gateway:
        """The gateway, found within the command's deadline.

        Commands close it without removing what they added: a mapping made
        by ``natfwd add`` outlives the process, by design.
        """
        return natfwd.find_gateway(
            via=via or self.args.via,
            gateway=self.args.gateway,
            upnp_url=self.args.upnp_url,
            interface=self.args.interface,
            deadline=self.deadline,
        )

    def emit(self, document: dict[str, object], lines: Sequence[str]) -> None:
        if self.args.json:
            print(json.dumps({"ok": True, **document}, sort_keys=True))
        else:
            for line in lines:
                print(line)
        sys.stdout.flush()


def cmd_status(ctx: Context) -> int:
    with contextlib.closing(ctx.find_gateway()) as gateway:
        status = gateway.status(deadline=ctx.deadline)

    doc = status.to_json()
    lines = [
        f"gateway:          {status.address} ({status.method.value})",
        f"external address: {status.external_address or 'unknown'}",
    ]
    if status.double_nat:
        lines.append("double NAT:       yes (the external address is not public)")
    for key in ("igd_version", "connection", "location", "epoch"):
        if doc.get(key) is not None:
            lines.append(f"{key.replace('_', ' ') + ':':<18}{_shown(str(doc[key]))}")
    ctx.emit({"command": "status", "status": doc}, lines)
    return EXIT_OK


def cmd_add(ctx: Context) -> int:
    internal, external, protocol = parse_spec(ctx.args.spec)
    try:
        description = check_description(ctx.args.description)
        if ctx.args.internal_address is not None:
            check_address(ctx.args.internal_address, "internal address")
    except ValueError as exc:
        raise UsageError(str(exc)) from None

    via = None
    address = ctx.args.internal_address
    if ctx.args.via == "auto" and address is not None and not _is_own(address):
        # Only UPnP maps a port to another host; NAT-PMP and PCP map ports
        # to the host that asks, and would refuse.
        via = "upnp"

    with contextlib.closing(ctx.find_gateway(via)) as gateway:
        mapping = gateway.add(
            internal,
            external,
            protocol,
            lease=ctx.args.lease,
            description=description,
            internal_address=ctx.args.internal_address,
            any_port=ctx.args.any_port,
            deadline=ctx.deadline,
        )

    lease = f"lease {mapping.lease} s" if mapping.lease else "permanent"
    lines = [
        f"mapped {mapping.external_address or '?'}:{mapping.external_port}/{protocol}"
        f" -> {mapping.internal_address}:{mapping.internal_port}"
        f" via {mapping.method.value} ({lease})"
    ]
    lines += [f"note: {note}" for note in mapping.notes]
    ctx.emit({"command": "add", "mapping": mapping.to_json()}, lines)
    return EXIT_OK


def _is_own(address: str) -> bool:
    """Whether *address* is one of this host's (nothing is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((address, 0))
        except OSError:
            return False
    return True


def cmd_remove(ctx: Context) -> int:
    internal, external, protocol = parse_spec(ctx.args.spec)

    with contextlib.closing(ctx.find_gateway()) as gateway:
        try:
            gateway.remove(internal, external, protocol, deadline=ctx.deadline)
            removed = True
        except natfwd.UPnPError as exc:
            if exc.code != natfwd.UPnPErrorCode.NO_SUCH_ENTRY_IN_ARRAY:
                raise
            if not ctx.args.missing_ok:
                raise natfwd.UPnPError(
                    "DeletePortMapping",
                    exc.code,
                    f"the gateway has no mapping of external port "
                    f"{external}/{protocol}",
                    gateway=exc.gateway,
                ) from exc
            removed = False
        method = gateway.method.value
        address = gateway.address

    also = []
    if (
        ctx.args.via == "auto"
        and method != "upnp"
        and _remove_over_upnp_too(ctx, address, internal, external, protocol)
    ):
        also.append("upnp")

    doc = {
        "method": method,
        "protocol": protocol,
        "internal_port": internal,
        "external_port": external,
        "removed": removed,
        "also_removed_via": also,
    }
    what = "removed" if removed else "no mapping of"
    via = " and ".join([method, *also])
    ctx.emit(
        {"command": "remove", "mapping": doc},
        [f"{what} {external}/{protocol} via {via}"],
    )
    return EXIT_OK


# How long 'remove' in auto mode asks the gateway over UPnP as well.
UPNP_SWEEP_SECONDS = 1.0


def _remove_over_upnp_too(
    ctx: Context, address: str, internal: int, external: int, protocol: str
) -> bool:
    """Remove a UPnP mapping of *external* to this host's *internal* port.

    NAT-PMP and PCP cannot tell whether the gateway held the mapping they
    were asked to remove, and cannot remove one made over UPnP. In auto
    mode the same gateway is asked over UPnP too, briefly; only a mapping
    to this host and port goes. Returns whether one went.
    """
    deadline = ctx.deadline.within(UPNP_SWEEP_SECONDS)
    try:
        devices = upnp.discover(deadline=deadline, first=True, unicast=address)
        if not devices:
            return False
        igd, _ = upnp.IGD.select(devices, deadline=deadline)
        with igd:
            entry = igd.get_port_mapping(external, protocol, deadline=deadline)
            if entry is None or (entry.internal_client, entry.internal_port) != (
                igd.lan_address,
                internal,
            ):
                return False
            igd.delete_port_mapping(external, protocol, deadline=deadline)
    except natfwd.NatfwdError as exc:
        log.debug("no UPnP mapping of %d/%s removed: %s", external, protocol, exc)
        return False
    return True


def cmd_list(ctx: Context) -> int:
    via = "upnp" if ctx.args.via == "auto" else ctx.args.via
    with contextlib.closing(ctx.find_gateway(via)) as gateway:
        mappings = gateway.mappings(deadline=ctx.deadline)

    doc = [
        {
            "protocol": m.protocol.value,
            "external_port": m.external_port,
            "internal_address": m.internal_client,
            "internal_port": m.internal_port,
            "description": m.description,
            "enabled": m.enabled,
            "lease": m.lease,
            "remote_host": m.remote_host or None,
        }
        for m in mappings
    ]
    lines = [
        f"{m.external_port:>5}/{m.protocol.value} -> "
        f"{_shown(m.internal_client)}:{m.internal_port}"
        f"  lease {m.lease or 'permanent'}  {m.description!r}"
        for m in mappings
    ] or ["no port mappings"]
    ctx.emit({"command": "list", "mappings": doc}, lines)
    return EXIT_OK


def cmd_external_ip(ctx: Context) -> int:
    with contextlib.closing(ctx.find_gateway()) as gateway:
        address = gateway.external_address(deadline=ctx.deadline)
        method = gateway.method.value

    ctx.emit(
        {
            "command": "external-ip",
            "external_address": address or None,
            "method": method,
        },
        [address or "unknown"],
    )
    return EXIT_OK


def cmd_keep(ctx: Context) -> int:
    # The daemon is slow to import; the other commands do without it.
    from natfwd import _keep  # noqa: PLC0415

    defaults = {"via": "auto", "timeout": DEFAULT_TIMEOUT}
    return _keep.run(ctx.args, defaults)


def print_version(as_json: bool) -> int:
    info = _bindings.build_info()
    if as_json:
        print(
            json.dumps(
                {
                    "natfwd": natfwd.__version__,
                    "libraries": [
                        {
                            "backend": i.backend,
                            "library": i.library,
                            "version": i.version,
                            "origin": i.origin,
                            "api_version": i.api_version,
                        }
                        for i in info
                    ],
                },
                sort_keys=True,
            )
        )
        return EXIT_OK
    print(f"natfwd {natfwd.__version__}")
    for i in info:
        print(f"  {i.backend}: {i.origin}")
    for backend in {"upnp", "natpmp"} - {i.backend for i in info}:
        print(f"  {backend}: not built")
    return EXIT_OK


# -- errors -------------------------------------------------------------------


def exit_code_for(exc: BaseException) -> int:
    if isinstance(exc, (UsageError, natfwd.InvalidArgument)):
        return EXIT_USAGE
    if isinstance(exc, natfwd.GatewayNotFound):
        return EXIT_NO_GATEWAY
    refusals = (
        natfwd.UPnPError,
        natfwd.NATPMPError,
        natfwd.PCPError,
        natfwd.NotSupported,
    )
    if isinstance(exc, refusals):
        return EXIT_REFUSED
    if isinstance(exc, natfwd.GatewayError):
        return EXIT_GATEWAY_FAILED
    if isinstance(exc, natfwd.BackendUnavailable):
        return EXIT_UNAVAILABLE
    if isinstance(exc, StateBusy):
        return EXIT_BUSY
    return EXIT_INTERNAL


def _shown(text: str) -> str:
    """*text* safe for a terminal: what a gateway sends may hold escape
    sequences, so anything unprintable is shown as its Python escape."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _report(
    exc: BaseException,
    code: int,
    args: argparse.Namespace | None,
    wants_json: bool = False,
    keep: bool = False,
) -> None:
    debug = bool(args and getattr(args, "debug", False))
    if debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    message = str(exc) or type(exc).__name__
    if code == EXIT_INTERNAL:
        message = f"internal error: {type(exc).__name__}: {message} (run with --debug)"
    print(f"natfwd: {_shown(' '.join(message.split()))}", file=sys.stderr)

    if keep and (wants_json or getattr(args, "json", False)):
        # keep --json speaks the helper protocol, even to say it failed.
        from natfwd import _keep  # noqa: PLC0415

        _keep.Events().emit("error", error=_keep.error_json(exc), exit_code=code)
    elif wants_json or (args is not None and getattr(args, "json", False)):
        error: dict[str, object] = {
            "type": type(exc).__name__,
            "message": str(exc),
            "exit_code": code,
        }
        if getattr(exc, "code", None) is not None:
            error["code"] = int(exc.code)
        print(json.dumps({"ok": False, "error": error}, sort_keys=True))
    sys.stderr.flush()
    sys.stdout.flush()


class _StderrHandler(logging.StreamHandler):
    """A log handler writing to whatever sys.stderr is when it writes."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


@contextlib.contextmanager
def _c_output_hidden(hide: bool):
    """Keep what the C libraries print on stderr off the user's screen.

    miniupnpc reports some failures itself, with perror() and fprintf()
    ('connect: Connection refused'); natfwd's own one-line error says what
    failed, so the libraries' file descriptor 2 goes to the null device
    while Python's stderr keeps the real one.
    """
    if not hide:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError, ValueError):
        yield
        return
    python_stderr = sys.stderr
    try:
        uses_fd_2 = python_stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        uses_fd_2 = False
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    replacement = None
    if uses_fd_2:
        replacement = open(  # noqa: SIM115 -- closed below
            saved,
            "w",
            encoding=python_stderr.encoding,
            errors="backslashreplace",
            buffering=1,
            closefd=False,
        )
        sys.stderr = replacement
    try:
        yield
    finally:
        if replacement is not None:
            replacement.flush()
            sys.stderr = python_stderr
            replacement.close()
        os.dup2(saved, 2)
        os.close(saved)


def _setup_logging(verbosity: int) -> None:
    handler = _StderrHandler()
    # From -vv on, each line says when it happened, in milliseconds since
    # start-up, so that a slow gateway can be told from a slow host.
    timing = "[%(relativeCreated)7.1f ms] " if verbosity >= 2 else ""
    handler.setFormatter(
        logging.Formatter(f"natfwd: {timing}%(levelname)s: %(message)s")
    )
    handler.set_name("natfwd.cli")
    root = logging.getLogger("natfwd")
    # main() may run more than once in a process: one handler, on the
    # stderr of this run.
    for old in [h for h in root.handlers if h.get_name() == "natfwd.cli"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(
        logging.WARNING
        if verbosity == 0
        else logging.INFO
        if verbosity == 1
        else logging.DEBUG
    )
    logging.getLogger("natfwd.wire").setLevel(
        logging.DEBUG if verbosity >= 3 else logging.WARNING
    )


def _interrupted(exc: BaseException) -> bool:
    """Whether *exc* came of an interrupt.

    A second Ctrl-C that lands while the first unwinds through a lock can
    leave a RuntimeError ("release unlocked lock") in its place, with the
    KeyboardInterrupt only in its context.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__context__
    return False


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = None
    try:
        args = build_parser().parse_args(argv)
        _setup_logging(args.verbose)
        if args.version:
            return print_version(args.json)
        if args.command is None:
            raise UsageError(
                "a command is needed: status, add, remove, list, external-ip or keep"
            )
        with _c_output_hidden(args.verbose < 2 and not args.debug):
            return args.handler(Context(args))
    except KeyboardInterrupt:
        print("natfwd: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if _interrupted(exc):
            print("natfwd: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        code = exit_code_for(exc)
        # Arguments that did not parse still asked for JSON, if they did.
        words = list(sys.argv[1:] if argv is None else argv)
        wants_json = "--json" in words
        keep = (
            _command_word(words) == "keep"
            if args is None
            else getattr(args, "command", None) == "keep"
        )
        _report(exc, code, args, wants_json and args is None, keep)
        return code


def _command_word(words: Sequence[str]) -> str | None:
    """The command named in arguments that did not parse, if any."""
    takes_value = {"--via", "--gateway", "--upnp-url", "--interface", "--timeout"}
    words = iter(words)
    for word in words:
        if word in takes_value:
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None
