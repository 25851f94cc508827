"""natfwd-tor-helper, run the way Tor runs a PortForwardingHelper.

Tor (0.2.4 to 0.3.3) starts the helper by its absolute path with an empty
environment, holds its stdin open, reads its stdout up to a line (or 399
bytes) at a time, and accepts only lines of the shape

    tor-fw-helper tcp-forward <external> <internal> SUCCESS|FAIL [message]

split on spaces: five or more words, the first two exactly these, both
ports from 1 to 65535, the fifth SUCCESS or FAIL. ``tor_accepts`` below
applies those rules; any line it refuses is one Tor would have rejected.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lab import Lab

from natfwd import _tor

lab_test = pytest.mark.lab

# Tor reads into a 400-byte buffer, one byte kept for the terminating NUL.
TOR_READ = 399


def tor_accepts(output: bytes) -> list[tuple[int, int, bool, str]]:
    """Parse helper output as Tor does; fail on anything Tor would reject."""
    results = []
    for raw in output.split(b"\n")[:-1] if output.endswith(b"\n") else [output]:
        # A line longer than the buffer would reach Tor in pieces.
        assert len(raw) + 1 <= TOR_READ, f"line too long for Tor: {raw!r}"
        line = raw.decode("ascii")
        words = [w for w in line.split(" ") if w]
        assert len(words) >= 5, f"Tor rejects {line!r}: too few words"
        assert words[:2] == ["tor-fw-helper", "tcp-forward"], f"Tor rejects {line!r}"
        external, internal = int(words[2]), int(words[3])
        assert 1 <= external <= 65535, line
        assert 1 <= internal <= 65535, line
        assert words[4] in ("SUCCESS", "FAIL"), f"Tor rejects {line!r}"
        results.append((external, internal, words[4] == "SUCCESS", " ".join(words[5:])))
    return results


def _helper() -> str:
    path = Path(sys.executable).parent / "natfwd-tor-helper"
    if not path.exists():
        pytest.skip("natfwd-tor-helper is not installed next to this Python")
    return str(path)


def _run_as_tor(
    lab: Lab, role: str, args: list[str], env: dict[str, str]
) -> tuple[bytes, bytes, int, float]:
    """Run the helper in *role*'s namespace as Tor would: absolute path,
    *env* as the whole environment, stdin a pipe held open throughout.
    Returns stdout, stderr, the exit status and how long the helper lived
    after its last line."""
    ip = shutil.which("ip")
    assert ip is not None
    process = subprocess.Popen(
        [ip, "netns", "exec", lab.netns(role), _helper(), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd="/",
    )
    try:
        output = b""
        last_line = time.monotonic()
        while True:
            line = process.stdout.readline()
            if not line:
                break
            output += line
            last_line = time.monotonic()
        code = process.wait(timeout=60)
        lingered = time.monotonic() - last_line
        errors = process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            stream.close()
    return output, errors, code, lingered


# -- without a lab ------------------------------------------------------------


def test_result_lines_are_what_tor_accepts() -> None:
    lines = [
        _tor.result_line(9001, 9001, True),
        _tor.result_line(443, 9001, False, "no gateway\nat all " + "x" * 500),
        _tor.result_line(80, 8080, False, "caf\u00e9 closed"),
    ]
    parsed = tor_accepts("".join(f"{line}\n" for line in lines).encode())
    assert parsed[0] == (9001, 9001, True, "")
    assert parsed[1][:3] == (443, 9001, False)
    assert parsed[1][3].startswith("no gateway at all")
    assert len(parsed[1][3]) <= _tor.MESSAGE_LIMIT
    assert parsed[2] == (80, 8080, False, "caf? closed")


def test_port_arguments() -> None:
    assert _tor.parse_ports(["9001:9001", ":9030", "443:9001", "80"]) == [
        (9001, 9001),
        (9030, 9030),
        (443, 9001),
        (80, 80),
    ]
    with pytest.raises(_tor.UsageError):
        _tor.parse_ports(["9001:0"])


def test_help_and_usage_errors_print_nothing_on_stdout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _tor.main(["-h"]) == 0
    assert _tor.main([]) == 2
    assert _tor.main(["-p", "x:1"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "usage" in err


# -- in the lab ---------------------------------------------------------------


@lab_test
def test_helper_run_exactly_as_tor_runs_it(lab_all: Lab) -> None:
    output, errors, code, lingered = _run_as_tor(
        lab_all, "lan", ["-p", "9001:9001", "--forward-port", ":9030", "-v"], env={}
    )
    try:
        assert code == 0, errors
        assert tor_accepts(output) == [
            (9001, 9001, True, ""),
            (9030, 9030, True, ""),
        ], errors
        # Tor polls every 5 s and drops the output of a helper that exited.
        assert lingered >= _tor.LINGER - 0.5
        assert {m.external_port for m in lab_all.mappings()} == {9001, 9030}
        # Leases long enough to outlive a missed 300 s run (NAT-PMP or UPnP).
        leases = {lease.external_port: lease for lease in lab_all.leases()}
        assert set(leases) == {9001, 9030}
        for lease in leases.values():
            assert lease.expires == 0 or lease.expires - time.time() >= 600
    finally:
        for port in ("9001", "9030"):
            lab_all.client_exec(
                [sys.executable, "-m", "natfwd", "--via", "upnp", "remove",
                 port, "--missing-ok"],
                timeout=30,
            )  # fmt: skip


@lab_test
def test_helper_reports_failure_in_lines_tor_accepts(lab_all: Lab) -> None:
    # The internet host has no gateway to ask: every port fails.
    output, errors, code, _ = _run_as_tor(
        lab_all,
        "wan",
        ["-p", "9001:9001", "-p", "9030:9030"],
        env={_tor.LINGER_ENV: "0.2"},
    )
    assert code == 0, errors
    parsed = tor_accepts(output)
    assert [(e, i, ok) for e, i, ok, _ in parsed] == [
        (9001, 9001, False),
        (9030, 9030, False),
    ]
    assert all(message for *_, message in parsed)


@pytest.mark.parametrize(
    "argv", [["--bogus"], ["-p", "9001:9001", "--bogus"], ["-p", "9001", "extra"]]
)
def test_unknown_arguments_are_refused_before_anything_is_sent(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
) -> None:
    def find_gateway(**_):
        raise AssertionError("the helper went looking for a gateway")

    monkeypatch.setattr(_tor.natfwd, "find_gateway", find_gateway)
    assert _tor.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert f"unknown argument {argv[-1]!r}" in err
    assert "ignoring" not in err
