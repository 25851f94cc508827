"""The command line, offline: specs, argument errors, JSON errors, --version.

Nothing here reaches a gateway: every case fails before anything is sent,
and the ``offline`` fixture makes any attempt to send fail the test.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import natfwd
from natfwd import _ssdp, cli, natpmp, upnp
from natfwd.cli import EXIT_CODES, UsageError, exit_code_for, main, parse_spec

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Fail loudly if a test would search for, or talk to, a gateway.

    The C libraries' sockets are out of Python's reach, so the calls that
    make them are refused; every socket Python makes cannot connect or
    send anywhere.
    """

    def refuse(*args, **kwargs):
        raise AssertionError("a unit test tried to reach a gateway")

    monkeypatch.setattr(natpmp.Client, "__init__", refuse)
    monkeypatch.setattr(_ssdp, "search", refuse)
    monkeypatch.setattr(upnp.IGD, "_call", refuse)
    for method in ("connect", "connect_ex", "sendto", "sendmsg"):
        monkeypatch.setattr(socket.socket, method, refuse)


def run(capsys, *argv: str) -> tuple[int, str, list[str]]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err.splitlines()


# -- PORT[:EXTERNAL][/PROTOCOL] ------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("80", (80, 80, "tcp")),
        ("80/udp", (80, 80, "udp")),
        ("80/UDP", (80, 80, "udp")),
        ("8080:80", (8080, 80, "tcp")),
        ("8080:80/tcp", (8080, 80, "tcp")),
        ("1:65535/udp", (1, 65535, "udp")),
    ],
)
def test_spec(spec, expected):
    assert parse_spec(spec) == expected


def test_spec_default_protocol():
    assert parse_spec("53", default_protocol="udp") == (53, 53, "udp")


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "0",
        "65536",
        "abc",
        "-1",
        "80:",
        ":80",
        "80:0",
        "80:abc",
        "80:90:100",
        "80/",
        "80/sctp",
        "80/tcp/udp",
        "/tcp",
        "\u0663",
        "80.0",
        "80\x00",
    ],
)
def test_bad_spec(spec):
    with pytest.raises(UsageError, match="expected PORT") as info:
        parse_spec(spec)
    assert "\n" not in str(info.value)


# -- argument errors ---------------------------------------------------------------


BAD_ARGUMENTS = [
    [],
    ["bogus"],
    ["add"],
    ["add", "0"],
    ["add", "65536"],
    ["add", "abc/tcp"],
    ["add", "80/"],
    ["add", "80", "--bogus"],
    ["add", "80", "--lease", "-1"],
    ["add", "80", "--lease", "1.5"],
    ["add", "80", "--lease", "4294967296"],
    ["add", "80", "--lease", "\u0663"],
    ["add", "80", "--description", "two\nlines"],
    ["add", "80", "--description", "\x1b[31mred"],
    ["add", "80", "--description", "x" * 256],
    ["add", "80", "--description", "\udcff"],  # a byte of argv not in UTF-8
    ["add", "80", "--internal-address", "300.1.1.1"],
    ["add", "80", "--internal-address", "lan-host"],
    ["remove", "abc"],
    ["status", "--timeout", "0"],
    ["status", "--timeout", "-1"],
    ["status", "--timeout", "nan"],
    ["status", "--timeout", "inf"],
    ["status", "--timeout", "1e12"],
    ["status", "--timeout", "\u0663"],
    ["status", "--via", "carrier-pigeon"],
    ["status", "--gateway", "1.2.3"],
    ["status", "--gateway", "192.168.1.0/24"],
    ["status", "--via", "upnp", "--upnp-url", "ftp://192.168.1.1/rootDesc.xml"],
    ["status", "--via", "upnp", "--upnp-url", "http://"],
    ["status", "--via", "upnp", "--upnp-url", "http://192.168.1.1:99999/x"],
    ["status", "--via", "upnp", "--upnp-url", "http://192.168.1.1/x\r\nX: y"],
]


@pytest.mark.parametrize("argv", BAD_ARGUMENTS, ids=repr)
def test_bad_arguments_exit_2_with_one_line(capsys, argv):
    code, out, err = run(capsys, *argv)

    assert code == cli.EXIT_USAGE
    assert out == ""
    assert len(err) == 1, err
    assert err[0].startswith("natfwd: ")
    assert err[0].isprintable()
    assert "Traceback" not in err[0]


@pytest.mark.parametrize("argv", BAD_ARGUMENTS, ids=repr)
def test_bad_arguments_with_json(capsys, argv):
    code, out, err = run(capsys, *argv, "--json")

    assert code == cli.EXIT_USAGE
    assert len(err) == 1
    document = json.loads(out)
    assert document["ok"] is False
    error = document["error"]
    assert set(error) <= {"type", "message", "exit_code", "code"}
    assert error["exit_code"] == cli.EXIT_USAGE
    assert error["type"] in ("UsageError", "InvalidArgument")
    assert error["message"]
    assert out.count("\n") == 1  # exactly one JSON document


def test_debug_adds_the_traceback(capsys):
    code, _, err = run(capsys, "add", "80", "--description", "a\nb", "--debug")

    assert code == cli.EXIT_USAGE
    assert err[0] == "Traceback (most recent call last):"
    assert err[-1].startswith("natfwd: description must be printable text")


def test_error_line_escapes_what_it_quotes(capsys):
    exc = natfwd.PortInUse(
        "AddPortMapping", "external port 80/tcp is mapped already to \x1b[2J\u202e"
    )
    cli._report(exc, exit_code_for(exc), None)

    err = capsys.readouterr().err
    assert "\x1b" not in err
    assert "\u202e" not in err
    assert "\\x1b[2J" in err
    assert err.count("\n") == 1


def test_json_error_carries_the_gateway_code(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["natfwd", "add", "80", "--json"])
    exc = natfwd.UPnPError("AddPortMapping", 718, "taken")
    args = cli.build_parser().parse_args(["add", "80", "--json"])
    cli._report(exc, exit_code_for(exc), args)

    out, err = capsys.readouterr()
    assert json.loads(out) == {
        "ok": False,
        "error": {
            "type": "UPnPError",
            "message": "taken",
            "exit_code": cli.EXIT_REFUSED,
            "code": 718,
        },
    }
    assert err == "natfwd: taken\n"


# -- exit statuses -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (UsageError("x"), 2),
        (natfwd.InvalidArgument("x"), 2),
        (natfwd.GatewayNotFound("x"), 3),
        (natfwd.UPnPError("AddPortMapping", 501), 4),
        (natfwd.PortInUse("AddPortMapping", "x"), 4),
        (natfwd.NATPMPError("mapping request", 2), 4),
        (natfwd.NotSupported("x"), 4),
        (natfwd.GatewayTimeout("x"), 5),
        (natfwd.MalformedReply("x"), 5),
        (natfwd.GatewayError("x"), 5),
        (natfwd.BackendUnavailable("x"), 6),
        (RuntimeError("x"), 1),
        (natfwd.IsolatedCallCrashed("UPNP_AddPortMapping", signal=11), 1),
    ],
)
def test_exit_code_for(exc, code):
    assert exit_code_for(exc) == code
    assert code in EXIT_CODES


def test_every_exit_status_is_documented():
    if not DOCS.exists():
        pytest.skip(f"{DOCS} is not here (a wheel's tests run without docs/)")
    table = DOCS.read_text()
    for code in EXIT_CODES:
        assert f"\n| {code} |" in table, f"exit status {code} missing in {DOCS}"


def test_internal_errors_say_so_in_one_line(capsys):
    cli._report(KeyError("boom"), cli.EXIT_INTERNAL, None)

    err = capsys.readouterr().err.splitlines()
    assert err == ["natfwd: internal error: KeyError: 'boom' (run with --debug)"]


# -- --version -----------------------------------------------------------------------


def test_version(capsys):
    code, out, err = run(capsys, "--version")

    assert code == 0
    assert err == []
    lines = out.splitlines()
    assert lines[0] == f"natfwd {natfwd.__version__}"
    assert {line.split(":")[0].strip() for line in lines[1:]} == {"upnp", "natpmp"}


def test_version_json(capsys):
    code, out, _ = run(capsys, "--version", "--json")

    assert code == 0
    document = json.loads(out)
    assert document["natfwd"] == natfwd.__version__
    for library in document["libraries"]:
        assert set(library) == {
            "backend",
            "library",
            "version",
            "origin",
            "api_version",
        }
        assert library["backend"] in ("upnp", "natpmp")
        assert library["version"]


def test_installed_command():
    """The console script, as a user runs it: version, and a usage error."""
    version = subprocess.run(
        [sys.executable, "-m", "natfwd", "--version", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    usage = subprocess.run(
        [sys.executable, "-m", "natfwd", "add", "80:0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert version.returncode == 0, version.stderr
    assert json.loads(version.stdout)["natfwd"] == natfwd.__version__
    assert usage.returncode == 2
    assert usage.stdout == ""
    assert usage.stderr.count("\n") == 1
    assert "external port must be from 1 to 65535" in usage.stderr


def test_main_twice_logs_once(capsys):
    run(capsys, "-v", "--version")
    run(capsys, "-v", "--version")

    handlers = [
        h for h in logging.getLogger("natfwd").handlers if h.get_name() == "natfwd.cli"
    ]
    assert len(handlers) == 1


def test_an_interrupt_hidden_behind_a_lock_error_is_still_an_interrupt():
    # A second Ctrl-C landing while a lock is restored leaves this shape.
    def interrupted_twice() -> None:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("release unlocked lock")  # noqa: B904

    with pytest.raises(RuntimeError) as caught:
        interrupted_twice()

    assert cli._interrupted(caught.value)
    assert not cli._interrupted(RuntimeError("release unlocked lock"))


def test_only_keep_loads_the_keeper():
    """The daemon's module (and dataclasses with it) is slow to import; the
    one-shot commands, run once per mapping, must not pay for it."""
    probe = (
        "import sys\n"
        "from natfwd import cli\n"
        "cli.build_parser().parse_args(['add', '9001'])\n"
        "print(sorted(m for m in ('natfwd._keep', 'dataclasses') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"
