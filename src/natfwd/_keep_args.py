"""The command line of ``natfwd keep``: its options, and the checks their
values (and a config file's) go through.

It is kept apart from the keeper, which is slow to import, so that the CLI
can describe every command without loading the keeper.
"""

from __future__ import annotations

import argparse

from natfwd._exceptions import InvalidArgument
from natfwd._validate import check_lease, check_timeout

__all__ = [
    "DEFAULT_CHECK_INTERVAL",
    "DEFAULT_DESCRIPTION",
    "DEFAULT_LEASE",
    "add_arguments",
    "lease_value",
    "seconds_value",
]

DEFAULT_LEASE = 3600
DEFAULT_CHECK_INTERVAL = 60.0
DEFAULT_DESCRIPTION = "natfwd keep"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``natfwd keep`` (the common ones are the CLI's)."""
    parser.add_argument(
        "specs",
        nargs="*",
        metavar="PORT[:EXTERNAL][/tcp|/udp]",
        help="the ports to keep mapped (commas or spaces separate several)",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="read the ports and options from a TOML or INI file",
    )
    parser.add_argument(
        "--lease",
        type=_option_type(lease_value, "lease"),
        metavar="SECONDS",
        help=f"the lease to ask for (default: {DEFAULT_LEASE}); 0 asks for "
        "a permanent mapping",
    )
    parser.add_argument(
        "--description",
        metavar="TEXT",
        help=f"the mappings' description (default: {DEFAULT_DESCRIPTION!r})",
    )
    parser.add_argument(
        "--renew-margin",
        type=_option_type(seconds_value, "renew margin"),
        metavar="SECONDS",
        help="renew this long before the granted lease ends "
        "(default: half-way through it)",
    )
    parser.add_argument(
        "--check-interval",
        type=_option_type(seconds_value, "check interval"),
        metavar="SECONDS",
        help="how often to ask the gateway whether it restarted "
        f"(default: {DEFAULT_CHECK_INTERVAL:g})",
    )
    parser.add_argument(
        "--state-file",
        metavar="FILE",
        help="where to record what is mapped (default: "
        "$STATE_DIRECTORY, /var/lib/natfwd or ~/.local/state/natfwd, "
        "file keep.json)",
    )
    stdin = parser.add_mutually_exclusive_group()
    stdin.add_argument(
        "--stop-on-stdin-eof",
        dest="stop_on_stdin_eof",
        action="store_const",
        const=True,
        help="stop when stdin reaches its end (the default when stdin is a pipe)",
    )
    stdin.add_argument(
        "--ignore-stdin",
        dest="stop_on_stdin_eof",
        action="store_const",
        const=False,
        help="never read stdin",
    )


def seconds_value(value: object, what: str) -> float:
    """A positive, finite number of seconds (*what* names it in errors),
    from a number or from text (a config file's value, or an option's)."""
    expected = f"{what} must be a positive number of seconds, not {value!r}"
    if isinstance(value, str):
        if not value.strip().isascii():  # float() reads digits of any script
            raise InvalidArgument(expected)
        try:
            value = float(value)
        except ValueError:
            raise InvalidArgument(expected) from None
    try:
        return check_timeout(value)
    except InvalidArgument as exc:
        raise InvalidArgument(str(exc).replace("timeout", what, 1)) from None


def lease_value(value: object, what: str = "lease") -> int:
    """A lease in whole seconds (0: permanent), from a number or text."""
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit()):
            raise InvalidArgument(
                f"{what} must be a whole number of seconds (0 for permanent), "
                f"not {value!r}"
            )
        value = int(text)
    try:
        return check_lease(value)
    except InvalidArgument as exc:
        raise InvalidArgument(str(exc).replace("lease", what, 1)) from None


def _option_type(check, what: str):
    """An argparse type that checks a value as the config file's are
    (argparse puts the option's name before the message)."""

    def convert(text: str):
        try:
            return check(text, what)
        except InvalidArgument as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert
