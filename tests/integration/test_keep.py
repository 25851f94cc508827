"""natfwd keep against the real miniupnpd of the lab, and its systemd units.

Every keeper runs on the lab's LAN client, with short leases and a short
``--renew-margin`` and ``--check-interval``, so renewals and restarts play
out in seconds. Its stdout is read as the helper protocol
(docs/helper-protocol.md): each test waits for events, never for time.
"""

from __future__ import annotations

import io
import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from lab import Lab

from natfwd import _keep, cli
from natfwd._exceptions import GatewayTimeout, InvalidArgument
from natfwd._gateway import GatewayStatus, Mapping, Method
from natfwd._validate import Protocol
from natfwd.upnp import PortMapping

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "contrib" / "systemd"

lab_test = pytest.mark.lab


class Keeper:
    """A ``natfwd keep`` process on the lab's client, and its events."""

    def __init__(self, lab: Lab, args: list[str], *, stdin=subprocess.DEVNULL):
        self.lab = lab
        self.events: queue.Queue[dict] = queue.Queue()
        self.seen: list[dict] = []
        self.process = lab.popen(
            "lan",
            [sys.executable, "-m", "natfwd", "keep", "--json", *args],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._stderr_lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._errors = threading.Thread(target=self._read_stderr, daemon=True)
        self._errors.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            event = json.loads(line)
            assert event["v"] == 1, line
            self.events.put(event)

    def _read_stderr(self) -> None:
        # Line by line, so that a failing wait can show what the keeper has
        # logged so far while it still runs.
        for line in self.process.stderr:
            self._stderr_lines.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr_lines)

    def wait_for(self, event: str, timeout: float = 15.0, **match: object) -> dict:
        """The next event named *event* whose fields have the values *match*."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            try:
                got = self.events.get(timeout=max(0.0, left))
            except queue.Empty:
                raise AssertionError(
                    f"no {event!r} event {match} within {timeout} s; "
                    f"saw {self.seen[-12:]}; stderr:\n{self.stderr_now()[-3000:]}"
                ) from None
            self.seen.append(got)
            if got["event"] == event and all(got.get(k) == v for k, v in match.items()):
                return got

    def stderr_now(self) -> str:
        if self.process.poll() is not None:
            self._errors.join(timeout=5)
        return self.stderr

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout=timeout)
        finally:
            self.kill()
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=5)
        self._errors.join(timeout=5)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None and not stream.closed:
                stream.close()


def _ports(lab: Lab) -> set[tuple[str, int]]:
    return {(m.protocol.lower(), m.external_port) for m in lab.mappings()}


def _wait_ports(lab: Lab, want: set, timeout: float = 10.0) -> set:
    end = time.monotonic() + timeout
    while True:
        got = _ports(lab)
        if got == want or time.monotonic() > end:
            return got
        time.sleep(0.1)


# -- without a lab ------------------------------------------------------------


def test_parse_specs() -> None:
    specs = _keep.parse_specs(["9001", "9030:80/udp,5353/UDP"])
    assert [str(s) for s in specs] == ["9001/tcp", "9030:80/udp", "5353/udp"]
    assert specs[1].internal_port == 9030
    assert specs[1].external_port == 80


@pytest.mark.parametrize("bad", ["0", "9001/sctp", ":80", "9001:x", "1 1", "70000"])
def test_parse_specs_rejects(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        _keep.parse_specs([bad])


def test_config_files_toml_and_ini(tmp_path: Path) -> None:
    toml = tmp_path / "keep.toml"
    toml.write_text('ports = ["9001", "53/udp"]\nlease = 600\ncheck_interval = 5\n')
    ini = tmp_path / "keep.conf"
    ini.write_text("[keep]\nports = 9001, 53/udp\nlease = 600\ncheck_interval = 5\n")
    if _keep._toml_module() is not None:
        assert _keep.load_config(str(toml)) == {
            "specs": ["9001", "53/udp"],
            "lease": 600,
            "check_interval": 5,
        }
    assert _keep.load_config(str(ini)) == {
        "specs": ["9001", "53/udp"],
        "lease": "600",
        "check_interval": "5",
    }

    ini.write_text("[keep]\nports = 1\nleese = 5\n")
    with pytest.raises(InvalidArgument, match="leese"):
        _keep.load_config(str(ini))


def test_journal_lines_carry_a_priority_and_no_time() -> None:
    formatter = _keep._JournalFormatter()
    record = logging.LogRecord(
        "natfwd", logging.WARNING, "", 0, "lost %s", ("x",), None
    )
    assert formatter.format(record) == "<4>lost x"


def test_state_file_is_replaced_atomically_and_locked(tmp_path: Path) -> None:
    state = _keep.StateFile(tmp_path / "sub" / "keep.json", create_folder=True)
    state.lock()
    try:
        state.save({"pid": 1, "mappings": []})
        assert json.loads(state.path.read_text())["version"] == 1
        assert sorted(p.name for p in state.path.parent.iterdir()) == [
            "keep.json",
            "keep.json.lock",
        ]
        other = _keep.StateFile(state.path)
        with pytest.raises(_keep.StateBusy):
            other.lock()
    finally:
        state.unlock()
    leftovers = [p for p in state.path.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


class FakeGateway:
    """A UPnP gateway in memory that grants at most 40 s, whatever is asked."""

    method = Method.UPNP
    address = "192.0.2.1"

    def __init__(self) -> None:
        self.held: dict[tuple[int, str], int] = {}
        self.descriptions: dict[tuple[int, str], str] = {}
        self.asked: list[int] = []

    def status(self, timeout: float | None = None) -> GatewayStatus:
        return GatewayStatus(
            Method.UPNP, self.address, "198.51.100.1", False, {"location": None}
        )

    def add(self, internal, external, protocol, *, lease, description, timeout):
        self.asked.append(lease)
        self.held[(external, str(protocol))] = internal
        self.descriptions[(external, str(protocol))] = description
        return Mapping(
            method=Method.UPNP,
            protocol=Protocol(protocol),
            internal_address="192.0.2.10",
            internal_port=internal,
            external_port=external,
            external_address="198.51.100.1",
            lease=min(lease, 40),
            description=description,
            double_nat=False,
        )

    def remove(self, internal, external, protocol, *, timeout):
        del self.held[(external, str(protocol))]

    def mappings(self, timeout: float | None = None) -> list[PortMapping]:
        return [
            PortMapping(
                port,
                Protocol(proto),
                "192.0.2.10",
                internal,
                self.descriptions.get((port, proto), ""),
                True,
                30,
            )
            for (port, proto), internal in self.held.items()
        ]

    def close(self) -> None:
        pass


class FakeWaiter:
    stop_reason = None
    stopping = False


def test_renewal_follows_the_granted_lease_and_losses_are_mapped_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = FakeGateway()
    monkeypatch.setattr(_keep.natfwd, "find_gateway", lambda **_: gateway)
    monkeypatch.setattr(_keep, "default_gateway", lambda: "192.0.2.1")
    out = io.StringIO()
    keeper = _keep.Keeper(
        _keep.parse_specs(["9001", "9002/udp"]),
        _keep.KeepOptions(lease=3600, check_interval=5),
        _keep.StateFile(tmp_path / "state.json"),
        _keep.Events(out),
        FakeWaiter(),
    )

    keeper._connect()
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["event"] for e in events] == ["gateway", "mapped", "mapped"]
    assert gateway.asked == [3600, 3600]
    assert {e["renew_in"] for e in events[1:]} == {20.0}  # half of 40, not 1800

    del gateway.held[(9001, "tcp")]  # the gateway restarted and forgot it
    keeper._tick(time.monotonic() + 6)  # a check is due, no renewal yet
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["event"] for e in events[3:]] == ["lost", "mapped"]
    assert (9001, "tcp") in gateway.held

    assert keeper._shutdown("test") == 0
    assert gateway.held == {}
    assert not (tmp_path / "state.json").exists()


class FakeNATPMPGateway(FakeGateway):
    """A NAT-PMP gateway in memory; ``epoch`` is what its replies carry."""

    method = Method.NATPMP
    epoch = 1000

    def status(self, timeout: float | None = None) -> GatewayStatus:
        return GatewayStatus(
            Method.NATPMP, self.address, "198.51.100.1", False, {"epoch": self.epoch}
        )


def test_an_epoch_gone_back_in_any_reply_maps_the_other_ports_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = FakeNATPMPGateway()
    monkeypatch.setattr(_keep.natfwd, "find_gateway", lambda **_: gateway)
    monkeypatch.setattr(_keep, "default_gateway", lambda: "192.0.2.1")
    out = io.StringIO()
    keeper = _keep.Keeper(
        _keep.parse_specs(["9001", "9002"]),
        _keep.KeepOptions(check_interval=600),
        _keep.StateFile(tmp_path / "state.json"),
        _keep.Events(out),
        FakeWaiter(),
    )
    keeper._connect()

    gateway.epoch = 3  # restarted: the renewal of 9001 is the first to tell
    gateway.held.clear()
    keeper.held[0].renew_at = 0.0
    keeper._tick(time.monotonic())

    events = [json.loads(line) for line in out.getvalue().splitlines()][3:]
    assert [(e["event"], e["internal_port"]) for e in events] == [
        ("renewed", 9001),
        ("lost", 9002),
        ("mapped", 9002),
    ]
    assert set(gateway.held) == {(9001, "tcp"), (9002, "tcp")}
    keeper._shutdown("test")


# -- the command line ---------------------------------------------------------


@pytest.fixture
def no_keeper(monkeypatch: pytest.MonkeyPatch) -> None:
    """A keeper that would start fails the test instead: these command
    lines must be refused first, and nothing may look for a gateway from
    the host's own network."""

    def run(self) -> int:
        pytest.fail("natfwd keep started instead of refusing the command line")

    def find_gateway(**_):
        pytest.fail("natfwd looked for a gateway")

    monkeypatch.setattr(_keep.Keeper, "run", run)
    monkeypatch.setattr(cli.natfwd, "find_gateway", find_gateway)


def _natfwd(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI in this process: (exit status, stdout, stderr)."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("natfwd: "), err
    return lines[0]


@pytest.mark.parametrize(
    "where", ["missing folder", "/proc/version", "a folder", "another file"]
)
def test_an_unusable_state_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str, no_keeper: None
) -> None:
    path = {
        "missing folder": tmp_path / "missing" / "keep.json",
        "/proc/version": Path("/proc/version"),
        "a folder": tmp_path,
        "another file": tmp_path / "notes.txt",
    }[where]
    if where == "/proc/version" and not path.exists():
        pytest.skip("no /proc here")
    if where == "another file":
        path.write_text("not a state file\n")

    code, out, err = _natfwd(capsys, "keep", "9001", "--state-file", str(path))

    assert code == 2, err
    assert out == ""
    assert str(path) in _one_error_line(err)
    assert not (tmp_path / "missing").exists()  # only the default is made
    if where == "another file":
        assert path.read_text() == "not a state file\n"


@pytest.mark.parametrize(
    "argv",
    [
        ["--renew-margin", "0"],
        ["--renew-margin", "-5"],
        ["--renew-margin", "nan"],
        ["--renew-margin", "3600"],  # the default lease
        ["--lease", "10", "--renew-margin", "10"],
        ["--lease", "10", "--renew-margin", "60"],
    ],
)
def test_a_renew_margin_must_be_positive_and_below_the_lease(
    capsys: pytest.CaptureFixture[str], argv: list[str], no_keeper: None
) -> None:
    code, out, err = _natfwd(capsys, "keep", "9001", *argv)
    assert code == 2, err
    assert out == ""
    assert "renew" in _one_error_line(err)


def test_a_margin_beyond_the_granted_lease_renews_half_way(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gateway = FakeGateway()  # grants 40 s, less than the 100 s margin
    monkeypatch.setattr(_keep.natfwd, "find_gateway", lambda **_: gateway)
    monkeypatch.setattr(_keep, "default_gateway", lambda: "192.0.2.1")
    out = io.StringIO()
    keeper = _keep.Keeper(
        _keep.parse_specs(["9001", "9002"]),
        _keep.KeepOptions(lease=3600, renew_margin=100, check_interval=600),
        _keep.StateFile(tmp_path / "state.json"),
        _keep.Events(out),
        FakeWaiter(),
    )

    with caplog.at_level(logging.WARNING, logger="natfwd.keep"):
        keeper._connect()

    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["renew_in"] for e in events if e["event"] == "mapped"] == [20.0, 20.0]
    warnings = [r for r in caplog.records if "--renew-margin" in r.getMessage()]
    assert len(warnings) == 1
    assert keeper._shutdown("test") == 0


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["--check-interval", "0"], "--check-interval"),
        (["--check-interval", "x"], "--check-interval"),
        (["--renew-margin", "soon"], "--renew-margin"),
        (["--lease", "abc"], "--lease"),
        (["--lease", "-1"], "--lease"),
    ],
)
def test_option_errors_name_the_option(
    capsys: pytest.CaptureFixture[str], argv: list[str], option: str, no_keeper: None
) -> None:
    code, out, err = _natfwd(capsys, "keep", "9001", *argv)
    assert code == 2
    assert out == ""
    line = _one_error_line(err)
    assert f"argument {option}: " in line
    assert "timeout" not in line
    assert "invalid" not in line  # argparse's own "invalid int value"


def test_lease_errors_read_as_add_s_do(
    capsys: pytest.CaptureFixture[str], no_keeper: None
) -> None:
    keep = _natfwd(capsys, "keep", "9001", "--lease", "abc")[2]
    add = _natfwd(capsys, "add", "9001", "--lease", "abc")[2]
    assert keep == add


@pytest.mark.parametrize(
    "argv",
    [
        ["keep", "--json", "9001", "--lease", "abc"],
        ["--json", "keep", "9001", "--no-such-option"],
        ["--timeout", "3", "--json", "keep"],  # no ports
        ["keep", "--json", "9001", "--state-file", "{missing}/x.json"],
    ],
)
def test_keep_json_errors_are_helper_protocol_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], no_keeper: None
) -> None:
    missing = tmp_path / "missing"
    argv = [word.format(missing=missing) for word in argv]
    code, out, err = _natfwd(capsys, *argv)

    assert code == 2
    _one_error_line(err)
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 1, out
    assert lines[0]["v"] == _keep.PROTOCOL_VERSION
    assert lines[0]["event"] == "error"
    assert lines[0]["exit_code"] == 2
    assert lines[0]["error"]["message"]
    assert not missing.exists()


def test_other_commands_keep_their_json_error_document(
    capsys: pytest.CaptureFixture[str],
    no_keeper: None,
) -> None:
    code, out, _ = _natfwd(capsys, "--json", "add", "9001", "--lease", "abc")
    assert code == 2
    assert json.loads(out)["ok"] is False


# -- stopping -----------------------------------------------------------------


class FailingGateway(FakeGateway):
    """A FakeGateway that can stop answering, as a frozen router does."""

    frozen = False

    def _answer(self) -> None:
        if self.frozen:
            raise GatewayTimeout("no answer", gateway=self.address)

    def status(self, timeout=None):
        self._answer()
        return super().status(timeout)

    def add(self, *args, **kwargs):
        self._answer()
        return super().add(*args, **kwargs)

    def remove(self, *args, **kwargs):
        self._answer()
        return super().remove(*args, **kwargs)

    def mappings(self, timeout=None):
        self._answer()
        return super().mappings(timeout)


@pytest.mark.parametrize("back", [True, False], ids=["back", "still-lost"])
def test_shutdown_removes_what_a_lost_gateway_still_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, back: bool
) -> None:
    gateway = FailingGateway()

    def find_gateway(**_):
        if gateway.frozen:
            raise _keep.natfwd.GatewayNotFound("nothing answered")
        return gateway

    monkeypatch.setattr(_keep.natfwd, "find_gateway", find_gateway)
    monkeypatch.setattr(_keep, "default_gateway", lambda: "192.0.2.1")
    out = io.StringIO()
    state = tmp_path / "state.json"
    keeper = _keep.Keeper(
        _keep.parse_specs(["9001", "9002/udp"]),
        _keep.KeepOptions(check_interval=1),
        _keep.StateFile(state),
        _keep.Events(out),
        FakeWaiter(),
    )
    keeper._connect()

    gateway.frozen = True  # SIGSTOP
    keeper._tick(time.monotonic() + 2)  # the check fails: the gateway is lost
    assert keeper.gateway is None
    gateway.frozen = not back  # SIGCONT, or not

    code = keeper._shutdown("signal SIGTERM")

    events = [json.loads(line) for line in out.getvalue().splitlines()]
    shutdown = events[-1]
    assert shutdown["event"] == "shutdown"
    if back:
        assert code == 0
        assert (shutdown["removed"], shutdown["failed"]) == (2, 0)
        assert gateway.held == {}
        assert not state.exists()
    else:
        assert code == _keep.EXIT_NOT_REMOVED
        assert (shutdown["removed"], shutdown["failed"]) == (0, 2)
        kept = json.loads(state.read_text())["leftovers"]
        assert {(m["external_port"], m["protocol"]) for m in kept} == {
            (9001, "tcp"),
            (9002, "udp"),
        }


def test_a_mapping_that_cannot_be_removed_is_counted_once_and_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = FailingGateway()
    monkeypatch.setattr(_keep.natfwd, "find_gateway", lambda **_: gateway)
    monkeypatch.setattr(_keep, "default_gateway", lambda: "192.0.2.1")
    out = io.StringIO()
    state = tmp_path / "state.json"
    keeper = _keep.Keeper(
        _keep.parse_specs(["9001", "9002/udp"]),
        _keep.KeepOptions(check_interval=600),
        _keep.StateFile(state),
        _keep.Events(out),
        FakeWaiter(),
    )
    keeper._connect()
    gateway.frozen = True

    assert keeper._shutdown("signal SIGTERM") == _keep.EXIT_NOT_REMOVED

    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["event"] for e in events[3:]] == ["failed", "failed", "shutdown"]
    assert (events[-1]["removed"], events[-1]["failed"]) == (0, 2)
    assert len(json.loads(state.read_text())["leftovers"]) == 2


def test_a_port_renewed_by_another_keeper_is_left_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = FakeGateway()
    monkeypatch.setattr(_keep.natfwd, "find_gateway", lambda **_: gateway)
    monkeypatch.setattr(_keep, "default_gateway", lambda: "192.0.2.1")
    monkeypatch.setattr(
        FakeGateway,
        "status",
        lambda self, timeout=None: GatewayStatus(
            Method.UPNP,
            self.address,
            "198.51.100.1",
            False,
            {"location": None, "lan_address": "192.0.2.10"},
        ),
    )
    outs = {"first": io.StringIO(), "second": io.StringIO()}
    keepers = {
        name: _keep.Keeper(
            _keep.parse_specs(["9001"]),
            _keep.KeepOptions(check_interval=600),
            _keep.StateFile(tmp_path / f"{name}.json"),
            _keep.Events(out),
            FakeWaiter(),
        )
        for name, out in outs.items()
    }

    def events(name: str) -> list[dict]:
        return [json.loads(line) for line in outs[name].getvalue().splitlines()]

    keepers["first"]._connect()
    keepers["second"]._connect()
    assert [e["event"] for e in events("second")] == ["gateway", "shared", "mapped"]

    keepers["first"].held[0].renew_at = 0.0  # the first renews last
    keepers["first"]._tick(time.monotonic())

    assert keepers["second"]._shutdown("test") == 0
    assert events("second")[-1]["left"] == 1
    assert events("second")[-1]["removed"] == 0
    assert (9001, "tcp") in gateway.held

    assert keepers["first"]._shutdown("test") == 0
    assert gateway.held == {}


def _verify_unit(tmp_path: Path, name: str, instance: str | None = None) -> None:
    natfwd = shutil.which("natfwd", path=str(Path(sys.executable).parent))
    if natfwd is None:
        pytest.skip("natfwd is not installed next to this Python")
    text = (UNITS / name).read_text().replace("/usr/bin/natfwd", natfwd)
    (tmp_path / name).write_text(text)
    target = tmp_path / name
    if instance:
        target = tmp_path / name.replace("@", f"@{instance}")
        target.symlink_to(name)

    verify = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr
    # verify only warns about unknown or misplaced keys; any output is a fault
    assert verify.stderr.strip() == ""

    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--threshold=20",
         str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    if "--offline" in security.stderr:
        return  # systemd older than 250 cannot rate a unit file offline
    assert security.returncode == 0, security.stdout[-2000:]


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (Debian package systemd)",
)
@pytest.mark.parametrize(
    ("unit", "instance"),
    [("natfwd-keep@.service", "9001-udp"), ("natfwd-keep.service", None)],
)
def test_systemd_units_verify(tmp_path: Path, unit: str, instance: str | None):
    _verify_unit(tmp_path, unit, instance)


# -- in the lab ---------------------------------------------------------------


@lab_test
def test_natpmp_renews_from_the_granted_lease_and_sigterm_removes(
    lab_natpmp: Lab, tmp_path: Path
) -> None:
    state = tmp_path / "state.json"
    keeper = Keeper(
        lab_natpmp,
        ["7000", "7001/udp", "--via", "natpmp", "--lease", "10",
         "--renew-margin", "8", "--state-file", str(state)],
    )  # fmt: skip
    try:
        mapped = keeper.wait_for("mapped", internal_port=7000)
        assert mapped["mapping"]["lease"] == 10
        assert mapped["renew_in"] == 2.0
        keeper.wait_for("mapped", internal_port=7001)
        assert _ports(lab_natpmp) == {("tcp", 7000), ("udp", 7001)}
        assert json.loads(state.read_text())["mappings"]

        renewed = keeper.wait_for("renewed", timeout=6, internal_port=7000)
        assert renewed["mapping"]["lease"] == 10

        assert keeper.stop(signal.SIGTERM) == 0
    finally:
        keeper.kill()
    events = [e["event"] for e in keeper.seen] + _drain(keeper)
    assert events.count("removed") == 2
    assert events[-1] == "shutdown"
    assert _ports(lab_natpmp) == set()
    assert not state.exists()


def _drain(keeper: Keeper) -> list[str]:
    names = []
    while True:
        try:
            event = keeper.events.get_nowait()
        except queue.Empty:
            return names
        keeper.seen.append(event)
        names.append(event["event"])


@lab_test
@pytest.mark.parametrize("fresh_lab", ["natpmp"], indirect=True)
@pytest.mark.parametrize("via", ["natpmp", "pcp"])
def test_epoch_reset_is_mapped_again(fresh_lab: Lab, tmp_path: Path, via: str):
    keeper = Keeper(
        fresh_lab,
        ["7010", "--via", via, "--lease", "20", "--check-interval", "1",
         "--state-file", str(tmp_path / "state.json")],
    )  # fmt: skip
    try:
        keeper.wait_for("mapped", internal_port=7010)
        # Let the epoch the keeper sees grow past any the restarted gateway
        # gives in its first seconds: a restart is told by the epoch alone.
        time.sleep(4)

        fresh_lab.restart_gateway(keep_leases=False)
        assert _ports(fresh_lab) == set()
        restarted = time.monotonic()

        lost = keeper.wait_for("lost", internal_port=7010)
        # A check that falls while the daemon is down sees a failed gateway
        # rather than its epoch going back; either way the port is lost and
        # mapped again.
        assert "restarted" in lost["reason"] or "failed" in lost["reason"]
        keeper.wait_for("mapped", internal_port=7010)
        # within one renewal period (half the 20 s lease), and in fact within
        # a check interval or two
        assert time.monotonic() - restarted < 10
        assert _ports(fresh_lab) == {("tcp", 7010)}

        assert keeper.stop() == 0
    finally:
        keeper.kill()
    assert _ports(fresh_lab) == set()


@lab_test
@pytest.mark.parametrize("fresh_lab", ["upnp"], indirect=True)
def test_miniupnpd_restart_is_mapped_again_and_traffic_flows(
    fresh_lab: Lab, tmp_path: Path
) -> None:
    keeper = Keeper(
        fresh_lab,
        ["7020", "--via", "upnp", "--lease", "30", "--check-interval", "1",
         "--state-file", str(tmp_path / "state.json")],
    )  # fmt: skip
    try:
        keeper.wait_for("mapped", internal_port=7020)
        fresh_lab.restart_gateway(keep_leases=False)
        restarted = time.monotonic()

        keeper.wait_for("lost", internal_port=7020)
        keeper.wait_for("mapped", internal_port=7020)
        assert time.monotonic() - restarted < 15  # the renewal period
        with fresh_lab.echo_server(7020, max_seconds=20):
            assert fresh_lab.probe(7020)

        assert keeper.stop() == 0
    finally:
        keeper.kill()
    assert _ports(fresh_lab) == set()


@lab_test
@pytest.mark.parametrize("via", ["upnp", "natpmp", "pcp"])
def test_after_sigkill_the_next_start_removes_the_leftovers(
    lab_all: Lab, tmp_path: Path, via: str
) -> None:
    state = tmp_path / "state.json"
    common = ["--via", via, "--lease", "60", "--state-file", str(state)]

    first = Keeper(lab_all, ["7030", "7031/udp", *common])
    try:
        first.wait_for("mapped", internal_port=7030)
        first.wait_for("mapped", internal_port=7031)
    finally:
        first.stop(signal.SIGKILL)
    assert _ports(lab_all) == {("tcp", 7030), ("udp", 7031)}
    assert len(json.loads(state.read_text())["mappings"]) == 2

    second = Keeper(lab_all, ["7031/udp", "7032", *common])
    try:
        second.wait_for("removed", internal_port=7030, leftover=True)
        second.wait_for("mapped", internal_port=7032)
        assert _ports(lab_all) == {("udp", 7031), ("tcp", 7032)}
        assert second.stop() == 0
    finally:
        second.kill()
    assert _ports(lab_all) == set()
    assert not state.exists()


@lab_test
def test_closing_stdin_stops_the_keeper(lab_all: Lab, tmp_path: Path) -> None:
    keeper = Keeper(
        lab_all,
        ["7040", "--via", "upnp", "--state-file", str(tmp_path / "s.json")],
        stdin=subprocess.PIPE,
    )
    try:
        keeper.wait_for("mapped", internal_port=7040)
        keeper.process.stdin.write("anything the host says is ignored\n")
        keeper.process.stdin.flush()
        keeper.process.stdin.close()
        shutdown = keeper.wait_for("shutdown")
        assert shutdown["reason"] == "stdin closed"
        assert shutdown["removed"] == 1
        assert keeper.process.wait(timeout=10) == 0
    finally:
        keeper.kill()
    assert _ports(lab_all) == set()


@lab_test
def test_a_second_keeper_on_the_same_state_file_is_refused(
    lab_all: Lab, tmp_path: Path
) -> None:
    state = str(tmp_path / "state.json")
    first = Keeper(lab_all, ["7050", "--via", "upnp", "--state-file", state])
    try:
        first.wait_for("mapped", internal_port=7050)
        second = lab_all.client_exec(
            [sys.executable, "-m", "natfwd", "keep", "7051", "--state-file", state],
            timeout=30,
        )
        assert second.returncode == 7
        assert "another natfwd keep" in second.stderr
        assert first.stop() == 0
    finally:
        first.kill()
    assert _ports(lab_all) == set()


@lab_test
def test_a_new_default_gateway_is_followed(lab_all: Lab, tmp_path: Path) -> None:
    ns = lab_all.client_ns
    keeper = Keeper(
        lab_all,
        ["7060", "--via", "natpmp", "--timeout", "3", "--check-interval", "1",
         "--state-file", str(tmp_path / "state.json")],
    )  # fmt: skip
    elsewhere = "192.168.50.2"  # on the LAN, but nobody is there
    try:
        keeper.wait_for("mapped", internal_port=7060)

        subprocess.run(
            ["ip", "-n", ns, "route", "replace", "default", "via", elsewhere],
            check=True,
        )
        lost = keeper.wait_for("lost", internal_port=7060)
        assert elsewhere in lost["reason"]
        keeper.wait_for("failed", internal_port=7060)
        # the keeper took its mapping off the old gateway on its way out
        assert _wait_ports(lab_all, set()) == set()

        subprocess.run(
            ["ip", "-n", ns, "route", "replace", "default", "via",
             lab_all.gateway_lan_ip],
            check=True,
        )  # fmt: skip
        keeper.wait_for("mapped", timeout=20, internal_port=7060)
        assert _ports(lab_all) == {("tcp", 7060)}
        assert keeper.stop() == 0
    finally:
        keeper.kill()
        subprocess.run(
            ["ip", "-n", ns, "route", "replace", "default", "via",
             lab_all.gateway_lan_ip],
            check=False,
        )  # fmt: skip
    assert _ports(lab_all) == set()


@lab_test
@pytest.mark.parametrize("fresh_lab", ["upnp"], indirect=True)
def test_an_igd_back_on_another_port_is_found_again(
    fresh_lab: Lab, tmp_path: Path
) -> None:
    keeper = Keeper(
        fresh_lab,
        ["7070", "--via", "upnp", "--lease", "60", "--check-interval", "1",
         "--timeout", "3", "--state-file", str(tmp_path / "state.json")],
    )  # fmt: skip
    try:
        first = keeper.wait_for("gateway")
        assert f":{fresh_lab.http_port}/" in first["location"]
        keeper.wait_for("mapped", internal_port=7070)

        # A router that picks a new HTTP port each time it starts, as
        # miniupnpd does by default.
        config = fresh_lab.config_path.read_text()
        old = f"http_port={fresh_lab.http_port}\n"
        assert old in config
        fresh_lab.http_port += 1
        fresh_lab.config_path.write_text(
            config.replace(old, f"http_port={fresh_lab.http_port}\n")
        )
        fresh_lab.restart_gateway(keep_leases=False)

        keeper.wait_for("lost", internal_port=7070)
        again = keeper.wait_for("gateway")
        assert f":{fresh_lab.http_port}/" in again["location"]
        keeper.wait_for("mapped", internal_port=7070)
        assert _ports(fresh_lab) == {("tcp", 7070)}
        assert keeper.stop() == 0
    finally:
        keeper.kill()
    assert _ports(fresh_lab) == set()


@lab_test
def test_as_the_systemd_units_run_it(
    lab_all: Lab, request: pytest.FixtureRequest
) -> None:
    """An unprivileged user, no HOME or PATH, the state directory and the
    journal's stream from the environment, as under natfwd-keep.service."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed")
    uid = 61_000 + os.getpid() % 1000
    as_user = [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
               "--no-new-privs"]  # fmt: skip
    if lab_all.client_exec(
        [*as_user, sys.executable, "-c", "import natfwd"]
    ).returncode:
        pytest.skip(f"uid {uid} cannot run {sys.executable} from here")
    # pytest's own folders are root's alone; the user needs a way in.
    state = Path(tempfile.mkdtemp(prefix="natfwd-keep-state-"))
    request.addfinalizer(lambda: shutil.rmtree(state, ignore_errors=True))
    os.chown(state, uid, uid)

    env = {"STATE_DIRECTORY": str(state), "JOURNAL_STREAM": "8:12345"}
    process = lab_all.popen(
        "lan",
        [*as_user, sys.executable, "-m", "natfwd", "keep", "7090", "--json"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        for line in process.stdout:
            event = json.loads(line)
            assert "event" in event, event  # else the CLI's error document
            if event["event"] == "mapped":
                break
        assert (state / "keep.json").exists()
        assert _ports(lab_all) == {("tcp", 7090)}
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert json.loads(out.splitlines()[-1])["event"] == "shutdown"
    assert _ports(lab_all) == set()
    assert not (state / "keep.json").exists()
    # the journal's priority prefix, and no timestamps
    lines = err.splitlines()
    assert lines
    assert all(line[:3] in ("<4>", "<6>", "<7>") for line in lines), lines


def _shutdown_event(keeper: Keeper) -> dict:
    _drain(keeper)
    shutdowns = [e for e in keeper.seen if e["event"] == "shutdown"]
    assert len(shutdowns) == 1, keeper.seen
    return shutdowns[0]


def _freeze_until_lost(lab: Lab, keeper: Keeper, port: int) -> int:
    """Stop miniupnpd (SIGSTOP) until *keeper* has lost it and failed to
    find it again; returns miniupnpd's pid, for the SIGCONT."""
    pid = lab._daemon_pid  # the lab's own miniupnpd, in its namespace
    assert pid
    keeper.wait_for("mapped", internal_port=port)
    os.kill(pid, signal.SIGSTOP)
    try:
        keeper.wait_for("lost", internal_port=port)
        keeper.wait_for("failed", internal_port=port)  # now backing off
    except BaseException:
        os.kill(pid, signal.SIGCONT)
        raise
    return pid


@lab_test
@pytest.mark.parametrize("via", ["natpmp", "upnp"])
def test_mappings_of_a_gateway_lost_before_shutdown_are_removed_when_it_is_back(
    lab_all: Lab, tmp_path: Path, via: str
) -> None:
    state = tmp_path / "state.json"
    keeper = Keeper(
        lab_all,
        ["7100", "--via", via, "--check-interval", "1", "--timeout", "2",
         "--state-file", str(state)],
    )  # fmt: skip
    try:
        pid = _freeze_until_lost(lab_all, keeper, 7100)
        keeper.process.send_signal(signal.SIGTERM)
        os.kill(pid, signal.SIGCONT)
        code = keeper.process.wait(timeout=30)
    finally:
        keeper.kill()

    assert code == 0, keeper.stderr
    shutdown = _shutdown_event(keeper)
    assert (shutdown["removed"], shutdown["failed"]) == (1, 0)
    assert _ports(lab_all) == set()
    assert not state.exists()


@lab_test
def test_mappings_of_a_gateway_still_lost_at_shutdown_stay_in_the_state_file(
    lab_natpmp: Lab, tmp_path: Path
) -> None:
    state = tmp_path / "state.json"
    common = ["--via", "natpmp", "--timeout", "2", "--state-file", str(state)]
    keeper = Keeper(lab_natpmp, ["7101", "--check-interval", "1", *common])
    try:
        pid = _freeze_until_lost(lab_natpmp, keeper, 7101)
        try:
            code = keeper.stop(signal.SIGTERM)
        finally:
            os.kill(pid, signal.SIGCONT)
    finally:
        keeper.kill()

    assert code == _keep.EXIT_NOT_REMOVED, keeper.stderr
    shutdown = _shutdown_event(keeper)
    assert (shutdown["removed"], shutdown["failed"]) == (0, 1)
    assert _ports(lab_natpmp) == {("tcp", 7101)}
    assert json.loads(state.read_text())["leftovers"]

    # The next start cleans up.
    again = Keeper(lab_natpmp, ["7102", *common])
    try:
        again.wait_for("removed", internal_port=7101, leftover=True)
        again.wait_for("mapped", internal_port=7102)
        assert again.stop() == 0
    finally:
        again.kill()
    assert _ports(lab_natpmp) == set()


@lab_test
def test_a_second_keeper_of_a_upnp_port_says_so_and_leaves_it_to_the_first(
    lab_upnp: Lab, tmp_path: Path
) -> None:
    # miniupnpd keeps the description of the first add of a mapping, so
    # the gateway lists it as the first keeper's throughout.
    first = Keeper(
        lab_upnp,
        ["7110", "--via", "upnp", "--state-file", str(tmp_path / "first.json")],
    )
    second = None
    try:
        mapped = first.wait_for("mapped", internal_port=7110)
        second = Keeper(
            lab_upnp,
            ["7110", "--via", "upnp", "--state-file", str(tmp_path / "second.json")],
        )
        shared = second.wait_for("shared", internal_port=7110)
        assert shared["description"] == mapped["mapping"]["description"]
        second.wait_for("mapped", internal_port=7110)

        assert second.stop() == 0
        shutdown = _shutdown_event(second)
        assert (shutdown["removed"], shutdown.get("left")) == (0, 1)
        assert _ports(lab_upnp) == {("tcp", 7110)}

        assert first.stop() == 0
        assert _shutdown_event(first)["removed"] == 1
    finally:
        first.kill()
        if second is not None:
            second.kill()
    assert _ports(lab_upnp) == set()
