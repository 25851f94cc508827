"""Network namespaces and a real miniupnpd: a home router on one machine.

Each :class:`Lab` owns three (or more) Linux network namespaces, named
``nfl-<lab name>-<role>``::

    client (role "lan")       gateway (role "gw")          internet (role "wan")
    eth0 192.168.50.10/24 -- lanp1 ] bridge lan0
    [client "lan2" .11 ... -- lanp2 ] 192.168.50.1/24
                               wan0 203.0.113.10/24 ------ eth0 203.0.113.1/24

The clients' default route is the gateway, so SSDP discovery and NAT-PMP to
"the default gateway" work from a client namespace exactly as on a home
network. The gateway forwards, masquerades LAN traffic going out, and runs
miniupnpd on ``lan0`` with ``wan0`` as its external interface. The internet
namespace stands for any host outside: tests connect from it to
``Lab.wan_ip`` to prove that a mapping really lets traffic in.

Both ranges are reserved ones (192.168.0.0/16 and TEST-NET-3) and never leave
the namespaces: the namespaces have no link to the machine's own network.

Per-lab files (miniupnpd.conf, the lease file, the daemon's log, the lab's
state) live in ``$NATFWD_LAB_RUN/<name>`` (default ``/run/natfwd-lab``).
A lab made by a process that has since died, say a killed test run, is
removed by the next :meth:`Lab.start`, unless it was made *persistent*
(as ``tools/lab up`` does); ``tools/lab down`` removes those.

About daemon restarts (:meth:`Lab.restart_gateway`): like a router's reboot,
a restart stops miniupnpd, empties its three nftables chains and starts it
again. The NAT-PMP epoch starts over. miniupnpd then re-creates every
mapping listed in its lease file, UPnP and NAT-PMP/PCP ones alike, so
mappings survive a restart by default; ``keep_leases=False`` deletes the
lease file first, and then no mapping survives.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import itertools
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from . import gateway
from .gateway import Lease, Mapping
from .peers import peer_path

__all__ = ["Lab", "LabError", "cleanup_stale", "list_labs", "run_root"]

log = logging.getLogger("natfwd.lab")

NAME_PREFIX = "nfl-"
#: Most LAN clients one lab may have (roles "lan", "lan2", ... "lan8").
MAX_CLIENTS = 8
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,23}$")
_NETNS_RE = re.compile(
    rf"^{NAME_PREFIX}(?P<lab>[a-z0-9-]+)-(?P<role>lan[2-{MAX_CLIENTS}]?|gw|wan)$"
)

LAN_NETWORK = ipaddress.IPv4Network("192.168.50.0/24")
WAN_NETWORK = ipaddress.IPv4Network("203.0.113.0/24")
CLIENT_IP = "192.168.50.10"  # client n (1-based) has 192.168.50.(9 + n)
GATEWAY_LAN_IP = "192.168.50.1"
GATEWAY_WAN_IP = "203.0.113.10"
WAN_HOST_IP = "203.0.113.1"
CLIENT_IFNAME = "eth0"
LAN_IFNAME = "lan0"  # a bridge, with one port "lanpN" per client
WAN_IFNAME = "wan0"
WAN_HOST_IFNAME = "eth0"
NATPMP_PORT = 5351
SSDP_PORT = 1900

#: Seconds a command in a namespace may run unless the caller says otherwise.
DEFAULT_TIMEOUT = 30.0
#: Seconds miniupnpd gets to open its sockets after starting.
START_TIMEOUT = 10.0

ECHO_SCRIPT = Path(__file__).resolve().parent / "echo.py"
NATPMP_SCRIPT = Path(__file__).resolve().parent / "natpmp_probe.py"

_serial = itertools.count()


class LabError(Exception):
    """The lab could not be set up, queried or torn down."""


def run_root() -> Path:
    """Return the folder holding one subfolder of files per lab."""
    return Path(os.environ.get("NATFWD_LAB_RUN", "/run/natfwd-lab"))


def _run(
    argv: Sequence[str], *, timeout: float = 10.0, input: str | None = None
) -> str:
    """Run a set-up command that must succeed; return its standard output."""
    try:
        result = subprocess.run(
            list(argv),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabError(f"{' '.join(argv)!r} failed: {exc}") from exc

    if result.returncode != 0:
        raise LabError(
            f"{' '.join(argv)!r} exited {result.returncode}: "
            f"{result.stderr.strip() or result.stdout.strip()}"
        )
    return result.stdout


def _process_start_time(pid: int) -> int | None:
    """Return the kernel's start time of process *pid*, or None if it is gone.

    A zombie (exited, not yet reaped) counts as gone.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields 3 (state) and 22 (start time), counted after the command name,
    # which may hold spaces.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _alive(pid: int, start_time: int | None) -> bool:
    now = _process_start_time(pid)
    if now is None:
        return False
    return start_time is None or now == start_time


def _stop_pid(pid: int, grace: float = 5.0) -> None:
    """Send SIGTERM to *pid*, then SIGKILL if it is still there after *grace*."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return

    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            waited, _status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            waited = 0
            if _process_start_time(pid) is None:
                return
        if waited == pid:
            return
        time.sleep(0.05)

    log.warning("process %d ignored SIGTERM; killing it", pid)
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return
    except ProcessLookupError:
        return
    except ChildProcessError:
        pass
    # Not ours to reap (started by another run of the lab tool): wait until
    # it is gone, lest a new daemon find it still there and refuse to start.
    deadline = time.monotonic() + grace
    while _process_start_time(pid) is not None and time.monotonic() < deadline:
        time.sleep(0.05)


def _netns_names() -> list[str]:
    out = _run(["ip", "netns", "list"])
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _destroy_netns(netns: str) -> None:
    """Stop every process inside *netns*, then delete it."""
    try:
        pids = _run(["ip", "netns", "pids", netns]).split()
    except LabError:
        pids = []
    for pid in pids:
        _stop_pid(int(pid), grace=2.0)
    try:
        _run(["ip", "netns", "delete", netns])
    except LabError as exc:
        log.warning("%s", exc)


def list_labs() -> dict[str, dict]:
    """Return every lab on this machine: name -> its state (maybe empty).

    A lab is listed when it has namespaces or a folder under :func:`run_root`.
    The state holds the variant, the owner process and whether it is
    persistent; it is empty for a lab whose set-up was cut short.
    """
    labs: dict[str, dict] = {}
    for netns in _netns_names():
        match = _NETNS_RE.match(netns)
        if match:
            labs.setdefault(match["lab"], {})
    root = run_root()
    if root.is_dir():
        for folder in root.iterdir():
            if not folder.name.startswith("."):
                labs.setdefault(folder.name, {})
    for name in labs:
        with contextlib.suppress(OSError, ValueError):
            labs[name] = json.loads((root / name / "state.json").read_text())
    return labs


def _destroy_lab(name: str) -> None:
    state_file = run_root() / name / "state.json"
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        state = {}
    daemon = state.get("miniupnpd_pid")
    if daemon and _alive(daemon, state.get("miniupnpd_start")):
        _stop_pid(daemon)

    for netns in _netns_names():
        match = _NETNS_RE.match(netns)
        if match and match["lab"] == name:
            _destroy_netns(netns)
    shutil.rmtree(run_root() / name, ignore_errors=True)


def cleanup_stale() -> list[str]:
    """Remove labs whose owner process is gone and that are not persistent.

    Returns the names of the labs removed. A lab with namespaces but no state
    (its set-up was killed midway) counts as stale.
    """
    removed = []
    for name, state in list_labs().items():
        if state.get("persistent"):
            continue
        owner = state.get("owner_pid")
        if owner and _alive(owner, state.get("owner_start")):
            continue
        log.info("removing stale lab %r", name)
        _destroy_lab(name)
        removed.append(name)
    return removed


class EchoServer:
    """An echo server running in one of the lab's namespaces.

    Use it as a context manager, or call :meth:`close`. :meth:`peers` and
    :meth:`wait_for_peers` give the (address, port) of each peer served.
    """

    def __init__(self, process: subprocess.Popen, port: int, proto: str) -> None:
        self.process = process
        self.port = port
        self.proto = proto
        self._received: list[tuple[str, int, bytes]] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            words = line.split()
            if len(words) in (3, 4) and words[0] == "peer":
                data = bytes.fromhex(words[3]) if len(words) == 4 else b""
                with self._lock:
                    self._received.append((words[1], int(words[2]), data))

    def peers(self) -> list[tuple[str, int]]:
        """Return the peers the server has answered so far, oldest first."""
        with self._lock:
            return [(address, port) for address, port, _data in self._received]

    def received(self) -> list[tuple[str, int, bytes]]:
        """Return (address, port, data) of each datagram or connection so far."""
        with self._lock:
            return list(self._received)

    def wait_for_peers(
        self, count: int = 1, timeout: float = 5.0
    ) -> list[tuple[str, int]]:
        """Wait until *count* peers were served (or *timeout*); return them."""
        deadline = time.monotonic() + timeout
        while len(self.peers()) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.peers()

    def close(self) -> None:
        """Stop the server. Idempotent."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=5)
        self.process.stdout.close()

    def __enter__(self) -> EchoServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Lab:
    """LAN clients, a gateway running miniupnpd, and a host on the internet.

    ``with Lab(variant="all") as lab:`` sets everything up (building the
    peers first if needed) and tears it all down on the way out, whatever
    happens inside. *variant* is a key of :data:`lab.gateway.VARIANTS`:

    ``all``     UPnP IGDv2, NAT-PMP and PCP
    ``upnp``    UPnP IGDv2 only
    ``natpmp``  NAT-PMP and PCP only
    ``igdv1``   UPnP IGDv1 only (a miniupnpd built without IGDv2)

    *announce_wan_ip* writes the WAN address into miniupnpd's ``ext_ip``. By
    default it is left out, and then, because the address is a reserved one,
    miniupnpd answers UPnP's GetExternalIPAddress with an empty string while
    NAT-PMP and PCP still report the address. With it, UPnP reports the
    address too, as a router with a public address does.

    *clients* is the number of LAN hosts (roles ``lan``, ``lan2``...), on a
    bridge in the gateway. *name* (default: unique per process) names the
    namespaces; *persistent* spares the lab from :func:`cleanup_stale` once
    its creator has exited.

    *min_lifetime* and *max_lifetime* bound PCP lifetimes (miniupnpd clamps
    them to 120..86400 seconds). *http_port* is miniupnpd's fixed HTTP port,
    so ``Lab.root_desc_url`` is known in advance.
    """

    def __init__(
        self,
        variant: str = "all",
        *,
        name: str | None = None,
        persistent: bool = False,
        announce_wan_ip: bool = False,
        http_port: int = 5000,
        min_lifetime: int = 120,
        max_lifetime: int = 86400,
        clients: int = 1,
        offline: bool = False,
    ) -> None:
        self.variant = gateway.variant(variant)

        if name is None:
            name = f"t{os.getpid()}-{next(_serial)}"
        if not _NAME_RE.match(name):
            raise ValueError(
                f"lab name {name!r} must be 1-24 of a-z, 0-9 and '-', "
                "starting with a letter or digit"
            )
        if not 1 <= clients <= MAX_CLIENTS:
            raise ValueError(f"clients must be in 1..{MAX_CLIENTS}, got {clients!r}")
        if not 1024 <= http_port <= 65535:
            raise ValueError(f"http_port must be in 1024..65535, got {http_port!r}")
        if not 120 <= min_lifetime < max_lifetime <= 86400:
            raise ValueError(
                "lifetimes must satisfy 120 <= min_lifetime < max_lifetime "
                f"<= 86400, got {min_lifetime!r} and {max_lifetime!r}"
            )

        self.name = name
        self.persistent = persistent
        self.announce_wan_ip = announce_wan_ip
        self.http_port = http_port
        self.min_lifetime = min_lifetime
        self.max_lifetime = max_lifetime
        self.clients = clients
        self.offline = offline

        #: The LAN clients' roles, first "lan", then "lan2", "lan3"...
        self.client_roles = ["lan"] + [f"lan{n}" for n in range(2, clients + 1)]
        #: Each LAN client's address, in the order of :attr:`client_roles`.
        self.client_ips = [
            str(ipaddress.IPv4Address(CLIENT_IP) + n) for n in range(clients)
        ]
        self.client_namespaces = [
            f"{NAME_PREFIX}{name}-{role}" for role in self.client_roles
        ]
        self.client_ns = self.client_namespaces[0]
        #: The gateway's external address (see :meth:`change_wan_ip`).
        self.wan_ip = GATEWAY_WAN_IP
        self.gateway_ns = f"{NAME_PREFIX}{name}-gw"
        self.wan_ns = f"{NAME_PREFIX}{name}-wan"
        self.rundir = run_root() / name

        self._daemon: subprocess.Popen | None = None
        self._daemon_pid: int | None = None
        self._started = False
        self._closed = False
        # What close() may remove: only what this handle made or attached to,
        # never a same-named lab that another process won the race for.
        self._owned_netns: list[str] = []
        self._owns_rundir = False

    # Addresses (but wan_ip, set in __init__) are the same in every lab: each
    # lab's namespaces are a world of their own.

    client_ip = CLIENT_IP
    gateway_lan_ip = GATEWAY_LAN_IP
    wan_host_ip = WAN_HOST_IP
    lan_network = str(LAN_NETWORK)
    wan_network = str(WAN_NETWORK)
    natpmp_port = NATPMP_PORT

    @property
    def root_desc_url(self) -> str:
        """The URL of miniupnpd's root device description (UPnP variants)."""
        return f"http://{GATEWAY_LAN_IP}:{self.http_port}/rootDesc.xml"

    @property
    def config_path(self) -> Path:
        return self.rundir / "miniupnpd.conf"

    @property
    def lease_path(self) -> Path:
        return self.rundir / "miniupnpd.leases"

    @property
    def log_path(self) -> Path:
        """miniupnpd's output (it runs with -d, so this is its whole log)."""
        return self.rundir / "miniupnpd.log"

    @property
    def uuid(self) -> str:
        """The gateway's fixed UPnP device UUID; the last part is lab-specific."""
        tail = hashlib.sha256(self.name.encode()).hexdigest()[:12]
        return f"6e617466-7764-4c61-8200-{tail}"

    @property
    def pcp_nonce(self) -> str:
        """The PCP mapping nonce :meth:`pcp_map` uses by default (hex)."""
        return hashlib.sha256(f"natfwd-lab {self.name}".encode()).hexdigest()[:24]

    # Set-up and tear-down.

    def __enter__(self) -> Lab:
        if not self._started:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        """Build what is missing, make the namespaces and start miniupnpd."""
        if self._started:
            raise LabError(f"lab {self.name!r} is already started")
        if os.geteuid() != 0:
            raise LabError("the lab needs root (network namespaces, nftables)")
        for tool in ("ip", "nft", "ss"):
            if shutil.which(tool) is None:
                raise LabError(f"the lab needs {tool!r}, which is not on PATH")

        self._miniupnpd = peer_path(self.variant.daemon, offline=self.offline)
        cleanup_stale()
        if self.name in list_labs():
            raise LabError(
                f"a lab named {self.name!r} already exists; "
                f"remove it with 'tools/lab down --name {self.name}'"
            )

        self._started = True
        try:
            self._make_rundir()
            self._make_namespaces()
            self._configure_gateway()
            self._start_daemon()
        except BaseException:
            self.close()
            raise
        log.info("lab %r (%s) is up", self.name, self.variant.name)

    def close(self) -> None:
        """Stop miniupnpd, delete the namespaces and the lab's files.

        Idempotent. Every step runs even if an earlier one failed.
        """
        if self._closed or not self._started:
            return
        self._closed = True

        self._stop_daemon()
        existing = _netns_names()
        for netns in self._owned_netns:
            if netns in existing:
                _destroy_netns(netns)
        if self._owns_rundir:
            shutil.rmtree(self.rundir, ignore_errors=True)
        log.info("lab %r is down", self.name)

    @classmethod
    def attach(cls, name: str) -> Lab:
        """Return a handle on the running lab *name* (say, from ``tools/lab up``).

        Closing the handle tears the lab down.
        """
        try:
            state = json.loads((run_root() / name / "state.json").read_text())
        except (OSError, ValueError) as exc:
            raise LabError(f"no running lab named {name!r}: {exc}") from exc

        lab = cls(state["variant"], name=name, **state["options"])
        lab._started = True
        lab._owned_netns = [*lab.client_namespaces, lab.gateway_ns, lab.wan_ns]
        lab._owns_rundir = True
        lab._daemon_pid = state.get("miniupnpd_pid")
        lab.wan_ip = state.get("wan_ip", GATEWAY_WAN_IP)
        lab._miniupnpd = Path(state["miniupnpd"])
        if not lab._miniupnpd.is_file():
            # The build moved or was cleaned since: a restart needs it again.
            lab._miniupnpd = peer_path(lab.variant.daemon, offline=lab.offline)
        return lab

    def _make_rundir(self) -> None:
        """Create the lab's folder with its state already inside.

        Another process's :func:`cleanup_stale` takes a folder without state
        for the remains of a killed set-up, so the folder is filled under a
        hidden name and then renamed into place in one step.
        """
        self.rundir.parent.mkdir(parents=True, exist_ok=True)
        partial = self.rundir.with_name(f".{self.name}.{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        self._write_state(partial)
        try:
            partial.rename(self.rundir)
        except OSError as exc:
            shutil.rmtree(partial, ignore_errors=True)
            raise LabError(f"a lab named {self.name!r} already exists") from exc
        self._owns_rundir = True

    def _write_state(self, folder: Path | None = None) -> None:
        owner = os.getpid()
        state = {
            "name": self.name,
            "variant": self.variant.name,
            "options": {
                "persistent": self.persistent,
                "announce_wan_ip": self.announce_wan_ip,
                "http_port": self.http_port,
                "min_lifetime": self.min_lifetime,
                "max_lifetime": self.max_lifetime,
                "clients": self.clients,
            },
            "owner_pid": owner,
            "owner_start": _process_start_time(owner),
            "persistent": self.persistent,
            "wan_ip": self.wan_ip,
            "miniupnpd": str(self._miniupnpd),
            "miniupnpd_pid": self._daemon_pid,
            "miniupnpd_start": (
                _process_start_time(self._daemon_pid) if self._daemon_pid else None
            ),
        }
        folder = folder or self.rundir
        partial = folder / "state.json.new"
        partial.write_text(json.dumps(state, indent=2) + "\n")
        partial.replace(folder / "state.json")

    def _make_namespaces(self) -> None:
        for netns in (*self.client_namespaces, self.gateway_ns, self.wan_ns):
            _run(["ip", "netns", "add", netns])
            self._owned_netns.append(netns)
            _run(["ip", "-n", netns, "link", "set", "lo", "up"])

        gw = ["ip", "-n", self.gateway_ns]
        lan_prefix = LAN_NETWORK.prefixlen
        wan_prefix = WAN_NETWORK.prefixlen

        # The LAN: a bridge on the gateway, one port per client. Snooping is
        # off so SSDP multicast reaches miniupnpd without an IGMP querier.
        _run([*gw, "link", "add", LAN_IFNAME, "type", "bridge",
              "mcast_snooping", "0"])  # fmt: skip
        for n, (netns, address) in enumerate(
            zip(self.client_namespaces, self.client_ips), start=1
        ):
            port = f"lanp{n}"
            _run([*gw, "link", "add", port, "type", "veth",
                  "peer", "name", CLIENT_IFNAME, "netns", netns])  # fmt: skip
            _run([*gw, "link", "set", port, "master", LAN_IFNAME, "up"])
            _run(["ip", "-n", netns, "addr", "add", f"{address}/{lan_prefix}",
                  "dev", CLIENT_IFNAME])  # fmt: skip
            _run(["ip", "-n", netns, "link", "set", CLIENT_IFNAME, "up"])
            _run(["ip", "-n", netns, "route", "add", "default", "via",
                  GATEWAY_LAN_IP])  # fmt: skip
        _run([*gw, "addr", "add", f"{GATEWAY_LAN_IP}/{lan_prefix}",
              "dev", LAN_IFNAME])  # fmt: skip
        _run([*gw, "link", "set", LAN_IFNAME, "up"])

        # The WAN: one link to the internet host, the gateway's default route.
        _run([*gw, "link", "add", WAN_IFNAME, "type", "veth",
              "peer", "name", WAN_HOST_IFNAME, "netns", self.wan_ns])  # fmt: skip
        _run([*gw, "addr", "add", f"{self.wan_ip}/{wan_prefix}",
              "dev", WAN_IFNAME])  # fmt: skip
        _run([*gw, "link", "set", WAN_IFNAME, "up"])
        _run(["ip", "-n", self.wan_ns, "addr", "add", f"{WAN_HOST_IP}/{wan_prefix}",
              "dev", WAN_HOST_IFNAME])  # fmt: skip
        _run(["ip", "-n", self.wan_ns, "link", "set", WAN_HOST_IFNAME, "up"])
        _run([*gw, "route", "add", "default", "via", WAN_HOST_IP])

    def _configure_gateway(self) -> None:
        # /proc/sys/net belongs to the namespace of whoever opens it.
        _run(["ip", "netns", "exec", self.gateway_ns, "sh", "-c",
              "echo 1 > /proc/sys/net/ipv4/ip_forward"])  # fmt: skip
        ruleset = gateway.render_ruleset(lan_ifname=LAN_IFNAME, wan_ifname=WAN_IFNAME)
        _run(["ip", "netns", "exec", self.gateway_ns, "nft", "-f", "-"],
             input=ruleset)  # fmt: skip

        self._write_config()

    def _write_config(self) -> None:
        config = gateway.render_config(
            name=self.name,
            variant=self.variant,
            lan_ifname=LAN_IFNAME,
            wan_ifname=WAN_IFNAME,
            lan_network=str(LAN_NETWORK),
            http_port=self.http_port,
            lease_file=self.lease_path,
            uuid=self.uuid,
            min_lifetime=self.min_lifetime,
            max_lifetime=self.max_lifetime,
            ext_ip=self.wan_ip if self.announce_wan_ip else None,
        )
        self.config_path.write_text(config)

    # The gateway daemon.

    def _expected_sockets(self) -> list[tuple[str, int]]:
        sockets = []
        if self.variant.upnp:
            sockets += [("tcp", self.http_port), ("udp", SSDP_PORT)]
        if self.variant.natpmp:
            sockets.append(("udp", NATPMP_PORT))
        return sockets

    def _listening(self, proto: str, port: int) -> bool:
        flag = "-t" if proto == "tcp" else "-u"
        out = _run(["ip", "netns", "exec", self.gateway_ns,
                    "ss", "-Hln", flag, f"sport = :{port}"])  # fmt: skip
        return bool(out.strip())

    def _start_daemon(self) -> None:
        argv = [
            "ip", "netns", "exec", self.gateway_ns, str(self._miniupnpd),
            "-d", "-f", str(self.config_path), "-P", str(self.rundir / "miniupnpd.pid"),
        ]  # fmt: skip
        with open(self.log_path, "ab") as out:
            self._daemon = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._daemon_pid = self._daemon.pid
        self._write_state()

        deadline = time.monotonic() + START_TIMEOUT
        waiting = self._expected_sockets()
        while waiting:
            if self._daemon.poll() is not None:
                raise LabError(
                    f"miniupnpd exited {self._daemon.returncode} at start; "
                    f"log {self.log_path}:\n{self._log_tail()}"
                )
            if time.monotonic() > deadline:
                raise LabError(
                    f"miniupnpd did not open {waiting} within {START_TIMEOUT}s; "
                    f"log {self.log_path}:\n{self._log_tail()}"
                )
            waiting = [s for s in waiting if not self._listening(*s)]
            if waiting:
                time.sleep(0.05)

    def _stop_daemon(self) -> None:
        if self._daemon is not None:
            if self._daemon.poll() is None:
                self._daemon.terminate()
                try:
                    self._daemon.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._daemon.kill()
                    self._daemon.wait()
            self._daemon = None
        elif self._daemon_pid and _process_start_time(self._daemon_pid):
            _stop_pid(self._daemon_pid)
        self._daemon_pid = None
        # A daemon killed outright leaves its pid file, and one that nobody
        # reaps (its parent gone) stays a zombie: a new miniupnpd would take
        # that for itself still running, and refuse to start.
        (self.rundir / "miniupnpd.pid").unlink(missing_ok=True)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def gateway_running(self) -> bool:
        """Tell whether miniupnpd is running."""
        if self._daemon is not None:
            return self._daemon.poll() is None
        return bool(self._daemon_pid and _process_start_time(self._daemon_pid))

    def gateway_log(self) -> str:
        """Return everything miniupnpd has logged in this lab."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def restart_gateway(self, *, keep_leases: bool = True) -> None:
        """Restart miniupnpd as a router reboot would.

        The daemon is stopped and its three nftables chains emptied. With
        *keep_leases* (the default) the restarted daemon re-creates every
        mapping from its lease file; without it the lease file is deleted
        first and the gateway starts with no mappings. Either way the
        NAT-PMP epoch starts again from zero.
        """
        self._require_started()
        self._stop_daemon()

        for chain in (gateway.FORWARD_CHAIN, gateway.DNAT_CHAIN, gateway.SNAT_CHAIN):
            self.gateway_exec(
                ["nft", "flush", "chain", "inet", gateway.TABLE, chain], check=True
            )
        if not keep_leases:
            self.lease_path.unlink(missing_ok=True)

        self._start_daemon()

    def change_wan_ip(self, address: str) -> None:
        """Give the gateway another WAN address, as a new ISP lease does.

        miniupnpd notices by itself: it announces the new address to the LAN
        over NAT-PMP and PCP (UDP to 224.0.0.1 port 5350) and reports it from
        then on. Its mappings stay and are now reached at the new address.
        With *announce_wan_ip* the configured ``ext_ip`` would go stale, so
        the configuration is rewritten and the daemon restarted, keeping its
        mappings through the lease file.
        """
        self._require_started()
        new = ipaddress.IPv4Address(address)
        if (
            new not in WAN_NETWORK
            or str(new) == WAN_HOST_IP
            or new in (WAN_NETWORK.network_address, WAN_NETWORK.broadcast_address)
        ):
            raise ValueError(
                f"WAN address {address!r} must be a host of {WAN_NETWORK} "
                f"other than the internet host {WAN_HOST_IP}"
            )

        prefix = WAN_NETWORK.prefixlen
        self.gateway_exec(["ip", "addr", "flush", "dev", WAN_IFNAME], check=True)
        self.gateway_exec(
            ["ip", "addr", "add", f"{new}/{prefix}", "dev", WAN_IFNAME], check=True
        )
        self.gateway_exec(
            ["ip", "route", "replace", "default", "via", WAN_HOST_IP], check=True
        )
        self.wan_ip = str(new)
        self._write_state()

        if self.announce_wan_ip:
            self._write_config()
            self.restart_gateway()

    # Reading the gateway's state.

    def mappings(self) -> list[Mapping]:
        """Return the port mappings in the gateway's nftables ruleset.

        This is what the kernel will forward, whatever any protocol says.
        """
        return gateway.parse_mappings(self._table_json())

    def rule_counts(self) -> dict[str, int]:
        """Return the number of rules in each of miniupnpd's three chains.

        ``all(n == 0 for n in lab.rule_counts().values())`` proves that
        nothing is left open, whichever protocol opened it.
        """
        return gateway.count_rules(self._table_json())

    def _table_json(self) -> str:
        self._require_started()
        result = self.gateway_exec(
            ["nft", "--json", "list", "table", "inet", gateway.TABLE], check=True
        )
        return result.stdout

    def leases(self) -> list[Lease]:
        """Return the mappings in miniupnpd's lease file, with descriptions."""
        self._require_started()
        try:
            text = self.lease_path.read_text()
        except FileNotFoundError:
            return []
        return gateway.parse_leases(text)

    def root_description(self, *, timeout: float = 5.0) -> str:
        """Fetch miniupnpd's root device description from the client."""
        script = (
            "import sys, urllib.request\n"
            "with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])) "
            "as r:\n"
            "    sys.stdout.write(r.read().decode())\n"
        )
        result = self.client_exec(
            [sys.executable, "-c", script, self.root_desc_url, str(timeout)],
            timeout=timeout + 10.0,
            check=True,
        )
        return result.stdout

    def forward_rules(self) -> str:
        """Return the gateway's whole nftables ruleset as text, for messages."""
        return self.gateway_exec(["nft", "list", "ruleset"], check=True).stdout

    # Running things in the namespaces.

    def _require_started(self) -> None:
        if not self._started or self._closed:
            raise LabError(f"lab {self.name!r} is not running")

    def netns(self, role: str) -> str:
        """Return the namespace of *role*: "lan" (the first client), "lan2"
        and on (the other clients), "gw" (the gateway) or "wan" (the internet
        host)."""
        roles = dict(zip(self.client_roles, self.client_namespaces))
        roles.update(gw=self.gateway_ns, wan=self.wan_ns)
        try:
            return roles[role]
        except KeyError:
            raise ValueError(
                f"unknown role {role!r}; expected one of {', '.join(roles)}"
            ) from None

    def client_ip_of(self, role: str) -> str:
        """Return the address of the LAN client *role* ("lan", "lan2"...)."""
        try:
            return self.client_ips[self.client_roles.index(role)]
        except ValueError:
            raise ValueError(
                f"{role!r} is not a LAN client of this lab; expected one of "
                f"{', '.join(self.client_roles)}"
            ) from None

    def argv(self, role: str, argv: Sequence[str | os.PathLike]) -> list[str]:
        """Return *argv* wrapped to run in *role*'s namespace (for timing it)."""
        return ["ip", "netns", "exec", self.netns(role), *map(str, argv)]

    def exec(
        self,
        role: str,
        argv: Sequence[str | os.PathLike],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        check: bool = False,
        text: bool = True,
        input: str | bytes | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess:
        """Run *argv* in *role*'s namespace; capture and return its output.

        *timeout* bounds the run (``subprocess.TimeoutExpired`` past it). With
        *check*, a non-zero exit raises :class:`LabError` quoting its stderr.
        """
        self._require_started()
        wrapped = self.argv(role, argv)
        result = subprocess.run(
            wrapped,
            input=input,
            capture_output=True,
            text=text,
            timeout=timeout,
            env=env,
            check=False,
        )
        if check and result.returncode != 0:
            raise LabError(
                f"{' '.join(map(str, argv))!r} in {role} exited "
                f"{result.returncode}: {result.stderr!s:.500}"
            )
        return result

    def client_exec(self, argv, **kwargs) -> subprocess.CompletedProcess:
        """Run *argv* on the LAN client; see :meth:`exec`."""
        return self.exec("lan", argv, **kwargs)

    def gateway_exec(self, argv, **kwargs) -> subprocess.CompletedProcess:
        """Run *argv* on the gateway; see :meth:`exec`."""
        return self.exec("gw", argv, **kwargs)

    def wan_exec(self, argv, **kwargs) -> subprocess.CompletedProcess:
        """Run *argv* on the internet host; see :meth:`exec`."""
        return self.exec("wan", argv, **kwargs)

    def popen(
        self, role: str, argv: Sequence[str | os.PathLike], **kwargs
    ) -> subprocess.Popen:
        """Start *argv* in *role*'s namespace; the caller must wait for it."""
        self._require_started()
        return subprocess.Popen(self.argv(role, argv), **kwargs)

    def echo_server(
        self,
        port: int,
        *,
        proto: str = "tcp",
        role: str = "lan",
        max_seconds: float = 60.0,
        reply: bool = True,
    ) -> EchoServer:
        """Start an echo server on *port* in *role*'s namespace (the client's).

        It serves at most 64 peers and stops by itself after *max_seconds*.
        Without *reply* it only listens, for instance for the gateway's
        NAT-PMP announcements on UDP port 5350.
        """
        if proto not in ("tcp", "udp"):
            raise ValueError(f"proto must be 'tcp' or 'udp', got {proto!r}")

        process = self.popen(
            role,
            [sys.executable, ECHO_SCRIPT, "serve", "--proto", proto,
             "--port", str(port), "--max-seconds", str(max_seconds),
             *([] if reply else ["--silent"])],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        # echo.py prints "ready" at once, or exits (closing stdout) on error.
        ready = process.stdout.readline().strip()
        if ready != "ready":
            process.kill()
            process.wait()
            process.stdout.close()
            raise LabError(f"echo server on {role} {proto}/{port} did not start")
        return EchoServer(process=process, port=port, proto=proto)

    def probe(
        self,
        port: int,
        *,
        proto: str = "tcp",
        host: str | None = None,
        role: str = "wan",
        payload: str = "natfwd-lab-probe",
        timeout: float = 2.0,
    ) -> bool:
        """Tell whether *host*:*port* echoes *payload* back, seen from *role*.

        By default this connects from the internet host to the gateway's WAN
        address, which succeeds only through a working mapping to an
        :meth:`echo_server`. *host* must be inside the lab's networks.
        """
        host = host or self.wan_ip
        address = ipaddress.ip_address(host)
        if address not in LAN_NETWORK and address not in WAN_NETWORK:
            raise ValueError(
                f"probe host {host!r} is outside the lab's networks "
                f"{LAN_NETWORK} and {WAN_NETWORK}"
            )
        if proto not in ("tcp", "udp"):
            raise ValueError(f"proto must be 'tcp' or 'udp', got {proto!r}")

        result = self.exec(
            role,
            [sys.executable, ECHO_SCRIPT, "send", "--proto", proto, "--host", host,
             "--port", str(port), "--payload", payload, "--timeout", str(timeout)],
            timeout=timeout + 10.0,
        )  # fmt: skip
        if result.returncode != 0:
            log.debug("probe %s/%s:%d failed: %s", proto, host, port, result.stderr)
        return result.returncode == 0

    def _natpmp_probe(self, argv: list[str], role: str) -> dict | None:
        result = self.exec(
            role,
            [sys.executable, NATPMP_SCRIPT, "--gateway", GATEWAY_LAN_IP, *argv],
            timeout=20.0,
        )
        if result.returncode == 1:
            return None
        if result.returncode != 0:
            raise LabError(f"natpmp_probe.py {argv!r} failed: {result.stderr}")
        return json.loads(result.stdout)

    def natpmp_address(self, *, role: str = "lan") -> dict | None:
        """Ask the gateway for its external address over NAT-PMP.

        Returns ``{"result", "epoch", "address"}`` (result 0 is success), or
        None when the gateway did not answer within about four seconds.
        """
        return self._natpmp_probe(["address"], role)

    def natpmp_map(
        self,
        internal_port: int,
        external_port: int = 0,
        *,
        proto: str = "tcp",
        lifetime: int = 3600,
        role: str = "lan",
    ) -> dict | None:
        """Send one NAT-PMP mapping request from *role* (lifetime 0 deletes).

        Returns ``{"result", "epoch", "internal_port", "external_port",
        "lifetime"}``, or None when the gateway did not answer.
        """
        return self._natpmp_probe(
            ["map", "--proto", proto, "--internal", str(internal_port),
             "--external", str(external_port), "--lifetime", str(lifetime)],
            role,
        )  # fmt: skip

    def pcp_map(
        self,
        internal_port: int,
        external_port: int = 0,
        *,
        proto: str = "tcp",
        lifetime: int = 3600,
        nonce: str | None = None,
        role: str = "lan",
    ) -> dict | None:
        """Send one PCP MAP request from client *role* (lifetime 0 deletes).

        *nonce* (24 hex digits) defaults to :attr:`pcp_nonce`, the same for
        every request of this lab, as one PCP client keeps it; miniupnpd
        refuses to delete or renew a mapping for another nonce (result 2,
        NOT_AUTHORIZED). Returns ``{"result", "epoch", "lifetime", "nonce",
        "internal_port", "external_port", "external_address"}``, or None
        without an answer.
        """
        return self._natpmp_probe(
            ["pcp-map", "--proto", proto, "--internal", str(internal_port),
             "--external", str(external_port), "--lifetime", str(lifetime),
             "--client-ip", self.client_ip_of(role),
             "--nonce", nonce or self.pcp_nonce],
            role,
        )  # fmt: skip

    def describe(self) -> str:
        """Return a few lines saying what this lab is and how to use it."""
        return "\n".join([
            f"lab {self.name!r}: {self.variant.summary}",
            *(f"  client   {netns:<22} {address}"
              for netns, address in zip(self.client_namespaces, self.client_ips)),
            f"  gateway  {self.gateway_ns:<22} LAN {GATEWAY_LAN_IP}, "
            f"WAN {self.wan_ip} (miniupnpd)",
            f"  internet {self.wan_ns:<22} {WAN_HOST_IP}",
            f"  files    {self.rundir}",
        ])  # fmt: skip
