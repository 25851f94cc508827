"""``natfwd keep``: map ports and keep them mapped until told to stop.

The keeper maps every port it is given, then keeps them alive:

* it renews each mapping before the lease the gateway *granted* runs out
  (half-way through by default, or ``--renew-margin`` seconds before);
* every ``--check-interval`` it asks the gateway whether it restarted: a
  NAT-PMP epoch that went backwards, a UPnP mapping that is gone, or an IGD
  that stopped answering where it was (found again, maybe on another
  address or port). What was lost is mapped again at once;
* it notices when the default route moves to another gateway, and starts
  over there;
* on SIGTERM, SIGINT or SIGHUP (and, when stdin is a pipe, when the pipe
  closes) it removes everything it added and exits.

What is mapped is recorded in a small state file, rewritten atomically after
each change, so that a run killed outright (SIGKILL, a power cut) is cleaned
up by the next one. A lock next to the state file keeps two keepers from
sharing it.

With ``--json`` every change is reported on stdout as one JSON line: the
versioned helper protocol of docs/helper-protocol.md.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import json
import logging
import os
import re
import selectors
import signal
import socket
import stat
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import natfwd
from natfwd._exceptions import (
    GatewayError,
    InvalidArgument,
    NatfwdError,
    NotSupported,
    StateBusy,
    UPnPError,
    UPnPErrorCode,
)
from natfwd._gateway import Gateway, Mapping, Method
from natfwd._keep_args import (
    DEFAULT_CHECK_INTERVAL,
    DEFAULT_DESCRIPTION,
    DEFAULT_LEASE,
    lease_value,
    seconds_value,
)
from natfwd._paths import state_dir
from natfwd._validate import (
    MAX_DESCRIPTION_BYTES,
    Protocol,
    check_description,
    check_port,
    check_protocol,
)

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt

__all__ = ["PROTOCOL_VERSION", "KeepOptions", "Keeper", "PortSpec", "parse_specs"]

log = logging.getLogger("natfwd.keep")

#: The "v" of every line of the helper protocol (docs/helper-protocol.md).
PROTOCOL_VERSION = 1

# Failed ports and lost gateways are retried after 2, 4, 8 ... seconds, up to
# this many.
RETRY_FIRST = 2.0
RETRY_LONGEST = 300.0
# The shortest wait between two renewals of one mapping, however short the
# lease or large the margin.
SHORTEST_RENEWAL = 1.0
# How long removing everything may take when stopping.
SHUTDOWN_TIMEOUT = 10.0

STATE_VERSION = 1

# The CLI's "the gateway failed" status: some mapping could not be removed.
EXIT_NOT_REMOVED = 5


# -- what to map --------------------------------------------------------------


@dataclass(frozen=True)
class PortSpec:
    """One port to keep mapped: PORT[:EXTERNAL][/PROTOCOL]."""

    internal_port: int
    external_port: int
    protocol: Protocol

    def __str__(self) -> str:
        if self.external_port == self.internal_port:
            return f"{self.internal_port}/{self.protocol}"
        return f"{self.internal_port}:{self.external_port}/{self.protocol}"

    def to_json(self) -> dict[str, object]:
        return {
            "protocol": self.protocol.value,
            "internal_port": self.internal_port,
            "external_port": self.external_port,
        }


def parse_specs(texts: Sequence[str]) -> list[PortSpec]:
    """PortSpecs from PORT[:EXTERNAL][/PROTOCOL] words, each maybe a comma list.

    Raises InvalidArgument for a malformed spec, or one port given twice.
    """
    specs: list[PortSpec] = []
    for text in texts:
        for word in str(text).replace(",", " ").split():
            ports, _, protocol = word.partition("/")
            internal, sep, external = ports.partition(":")
            try:
                internal_port = check_port(internal, "port")
                external_port = (
                    check_port(external, "external port") if sep else internal_port
                )
                proto = check_protocol(protocol or "tcp")
            except InvalidArgument as exc:
                raise InvalidArgument(
                    f"{exc} (in {word!r}; expected PORT[:EXTERNAL][/tcp|/udp])"
                ) from None
            specs.append(PortSpec(internal_port, external_port, proto))

    seen: set[tuple[int, Protocol]] = set()
    for spec in specs:
        if (spec.external_port, spec.protocol) in seen:
            raise InvalidArgument(
                f"external port {spec.external_port}/{spec.protocol} is given twice"
            )
        seen.add((spec.external_port, spec.protocol))
    return specs


@dataclass
class KeepOptions:
    """How to find the gateway and how to keep the mappings."""

    via: str = "auto"
    gateway: str | None = None
    upnp_url: str | None = None
    interface: str | None = None
    timeout: float = 10.0
    lease: int = DEFAULT_LEASE
    description: str = DEFAULT_DESCRIPTION
    renew_margin: float | None = None
    check_interval: float = DEFAULT_CHECK_INTERVAL
    retry_longest: float = RETRY_LONGEST


# -- the helper protocol ------------------------------------------------------


class Events:
    """Writes the helper protocol's JSON lines on *stream* (when enabled)."""

    def __init__(self, stream=None, *, enabled: bool = True) -> None:
        self._stream = stream if stream is not None else sys.stdout
        self.enabled = enabled

    def emit(self, event: str, **fields: object) -> None:
        if not self.enabled:
            return
        line = {"v": PROTOCOL_VERSION, "event": event, "time": round(time.time(), 3)}
        line.update(fields)
        try:
            self._stream.write(json.dumps(line, sort_keys=True) + "\n")
            self._stream.flush()
        except (BrokenPipeError, ValueError):
            # The host stopped reading; keep working, say so once.
            if self.enabled:
                log.warning("stdout is closed; no more status lines")
            self.enabled = False


def error_json(exc: BaseException) -> dict[str, object]:
    error: dict[str, object] = {"type": type(exc).__name__, "message": str(exc)}
    if getattr(exc, "code", None) is not None:
        error["code"] = int(exc.code)
    return error


# -- the state file -----------------------------------------------------------


def default_state_dir() -> Path:
    """Where the state file goes unless --state-file says otherwise.

    natfwd's state folder (:func:`natfwd._paths.state_dir`); with no home in
    the environment, the one the password database names.
    """
    return state_dir() or Path.home() / ".local" / "state" / "natfwd"


class StateFile:
    """What a keeper has mapped, on disk, for the next run to clean up.

    :meth:`lock` takes an exclusive lock on ``<path>.lock`` for the life of
    the process; :meth:`save` replaces the file atomically (a temporary file
    in the same folder, fsync, rename).

    The lock file stays when the keeper exits. Deleting it would let two
    keepers each lock a file of that name: one the deleted file, opened just
    before, and one a new file made just after.

    Only the default folder is made when missing (*create_folder*): a path
    given by the user in a folder that does not exist is a mistake, refused.
    """

    def __init__(self, path: Path, *, create_folder: bool = False) -> None:
        self.path = Path(path)
        self.create_folder = create_folder
        self._lock_fd: int | None = None

    def lock(self) -> None:
        """Lock the state file; raises StateBusy or StateFileUnusable."""
        folder = self.path.parent
        if self.create_folder:
            try:
                folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            except OSError as exc:
                raise StateFileUnusable(
                    f"cannot make the state folder {str(folder)!r}: {exc.strerror}"
                ) from exc
        elif not folder.is_dir():
            raise StateFileUnusable(
                f"the folder of the state file {str(self.path)!r} does not exist"
            )
        if self.path.is_dir() or (self.path.exists() and not self.path.is_file()):
            raise StateFileUnusable(
                f"the state file {str(self.path)!r} is not a regular file"
            )

        lock_path = self.path.with_name(self.path.name + ".lock")
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(lock_path, flags, 0o600)
        except OSError as exc:
            raise StateFileUnusable(
                f"cannot use the state file {str(self.path)!r}: cannot make its "
                f"lock file {str(lock_path)!r}: {exc.strerror}"
            ) from exc
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise StateBusy(
                    f"another natfwd keep is using the state file {str(self.path)!r}; "
                    "give each keeper its own --state-file"
                ) from None
            raise
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def load(self) -> dict:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise StateFileUnusable(
                f"cannot read the state file {str(self.path)!r}: {exc.strerror}"
            ) from exc
        if not text.strip():
            return {}
        try:
            document = json.loads(text)
        except ValueError:
            document = None
        if not isinstance(document, dict) or "version" not in document:
            # Some other file: replacing it would destroy it.
            raise StateFileUnusable(
                f"{str(self.path)!r} is not a natfwd keep state file; "
                "give another --state-file"
            )
        if document.get("version") != STATE_VERSION:
            log.warning("ignoring the state file %s of another version", self.path)
            return {}
        return document

    def save(self, document: dict) -> None:
        data = json.dumps({"version": STATE_VERSION, **document}, indent=1) + "\n"
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable
            with contextlib.suppress(OSError):
                folder = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(folder)
                finally:
                    os.close(folder)

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class StateFileUnusable(InvalidArgument):
    """The state file cannot be used: a missing folder, another kind of file,
    a folder where no lock file can be made."""


# -- waiting for time, signals and stdin --------------------------------------


class Waiter:
    """Sleeps until a deadline, a stop signal, or the end of stdin.

    Signals are caught in the main thread and written to a wake-up socket,
    so a sleep ends at once. Construct it in the main thread. (On Windows,
    where select() takes only sockets, stdin is not watched.)
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGHUP", None))

    def __init__(self, *, watch_stdin: bool) -> None:
        self.stop_reason: str | None = None
        self._selector = selectors.DefaultSelector()
        self._wakeup, self._wakeup_write = socket.socketpair()
        self._wakeup.setblocking(False)
        self._wakeup_write.setblocking(False)
        self._selector.register(self._wakeup, selectors.EVENT_READ, "signal")
        self._old_wakeup = signal.set_wakeup_fd(
            self._wakeup_write.fileno(), warn_on_full_buffer=False
        )
        self._old_handlers = {}
        for signum in self.SIGNALS:
            if signum is not None:
                self._old_handlers[signum] = signal.signal(signum, self._on_signal)
        self._stdin = None
        if watch_stdin and sys.platform == "win32":
            log.warning("stdin cannot be watched on Windows; stop with a signal")
        elif watch_stdin:
            self._stdin = sys.stdin.fileno()
            self._selector.register(self._stdin, selectors.EVENT_READ, "stdin")

    def _on_signal(self, signum: int, _frame) -> None:
        if self.stop_reason is None:
            self.stop_reason = f"signal {signal.Signals(signum).name}"

    @property
    def stopping(self) -> bool:
        return self.stop_reason is not None

    def sleep(self, seconds: float) -> None:
        """Sleep for *seconds*, or until told to stop."""
        end = time.monotonic() + max(0.0, seconds)
        while not self.stopping:
            left = end - time.monotonic()
            if left <= 0:
                return
            for key, _ in self._selector.select(left):
                if key.data == "signal":
                    with contextlib.suppress(BlockingIOError):
                        self._wakeup.recv(512)
                elif key.data == "stdin":
                    self._read_stdin()

    def _read_stdin(self) -> None:
        try:
            data = os.read(self._stdin, 4096)
        except OSError as exc:
            data = b""
            log.debug("reading stdin failed: %s", exc)
        if not data:
            self._selector.unregister(self._stdin)
            self._stdin = None
            if self.stop_reason is None:
                self.stop_reason = "stdin closed"

    def close(self) -> None:
        signal.set_wakeup_fd(self._old_wakeup)
        for signum, handler in self._old_handlers.items():
            signal.signal(signum, handler)
        self._selector.close()
        self._wakeup.close()
        self._wakeup_write.close()


def stdin_is_pipe() -> bool:
    """Whether stdin is a pipe or a socket (a host holds its other end)."""
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (OSError, ValueError, AttributeError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


# -- the default route --------------------------------------------------------


def default_gateway() -> str | None:
    """The IPv4 default route's gateway, from /proc/net/route (Linux only)."""
    try:
        with open("/proc/net/route", encoding="ascii") as routes:
            lines = routes.read().splitlines()[1:]
    except OSError:
        return None
    best: tuple[int, str] | None = None
    for line in lines:
        fields = line.split()
        if len(fields) < 8 or fields[1] != "00000000" or fields[7] != "00000000":
            continue
        flags, metric = int(fields[3], 16), int(fields[6])
        if not flags & 0x2:  # RTF_GATEWAY
            continue
        address = socket.inet_ntoa(struct.pack("<I", int(fields[2], 16)))
        if best is None or metric < best[0]:
            best = (metric, address)
    return best[1] if best else None


# -- the keeper ---------------------------------------------------------------


@dataclass
class _Held:
    """A port the keeper is responsible for, mapped or waiting to be."""

    spec: PortSpec
    mapping: Mapping | None = None
    renew_at: float = 0.0
    retry_at: float = 0.0
    failures: int = 0
    shared: bool = False

    def record(self) -> dict[str, object]:
        assert self.mapping is not None
        return {
            "method": self.mapping.method.value,
            "protocol": self.spec.protocol.value,
            "internal_port": self.spec.internal_port,
            "external_port": self.mapping.external_port,
            "internal_address": self.mapping.internal_address,
            "description": self.mapping.description,
        }


def _has_epoch(gateway: Gateway) -> bool:
    """Whether the gateway's replies carry an epoch (NAT-PMP, and PCP)."""
    return gateway.method is not Method.UPNP and hasattr(gateway, "epoch")


def _is_refusal(exc: Exception) -> bool:
    """A refusal is about one port; anything else is about the gateway.

    The gateway refused when it answered with an error code (UPnP, NAT-PMP
    or any protocol natfwd may learn), or when the request cannot be made.
    """
    if isinstance(exc, (NotSupported, InvalidArgument)):
        return True
    return isinstance(exc, GatewayError) and getattr(exc, "code", None) is not None


def _epoch_says_restart(last: int, elapsed: float, epoch: int) -> bool:
    """Whether a gateway that said *last*, *elapsed* seconds ago, and now
    says *epoch*, lost its mappings in between.

    RFC 6886 (3.6): the epoch must have grown by at least 7/8 of the time
    that passed on the client's clock, less two seconds for rounding. An
    epoch below the last one is a restart whatever the time: a gateway
    restarted within two seconds of its own start would otherwise go
    unnoticed until the next renewal.
    """
    return epoch < last or epoch < last + elapsed * 7 / 8 - 2


@dataclass
class _GatewayInfo:
    method: str
    address: str
    location: str | None
    route: str | None
    epoch: int | None = None
    epoch_seen: float = 0.0
    next_check: float = 0.0
    extra: dict = field(default_factory=dict)


class Keeper:
    """Keeps *specs* mapped until *waiter* says stop; see the module's doc."""

    def __init__(
        self,
        specs: Sequence[PortSpec],
        options: KeepOptions,
        state: StateFile,
        events: Events,
        waiter: Waiter,
    ) -> None:
        self.options = options
        self.state = state
        self.events = events
        self.waiter = waiter
        self.held = [_Held(spec) for spec in specs]
        self.gateway: Gateway | None = None
        self.info: _GatewayInfo | None = None
        self.leftovers: list[dict] = []
        self._connect_failures = 0
        self._connect_at = 0.0
        self._margin_warned = False
        self.token = new_token()
        self.description = keeper_description(options.description, self.token)

    # -- the loop -----------------------------------------------------------

    def run(self) -> int:
        """Keep the mappings until stopped; returns the exit status."""
        self.leftovers = self._load_leftovers()

        try:
            while not self.waiter.stopping:
                now = time.monotonic()
                if self.gateway is None:
                    if now >= self._connect_at:
                        self._connect()
                else:
                    self._tick(now)
                self.waiter.sleep(self._next_wake() - time.monotonic())
        except Exception as exc:
            # A bug: still take down what was mapped, then let it be seen.
            log.exception("internal error; removing the mappings and stopping")
            self._shutdown(f"internal error: {type(exc).__name__}: {exc}")
            raise

        return self._shutdown(self.waiter.stop_reason or "stopped")

    def _next_wake(self) -> float:
        if self.gateway is None:
            return self._connect_at
        assert self.info is not None
        times = [self.info.next_check]
        for held in self.held:
            if held.mapping is None:
                times.append(held.retry_at)
            elif held.mapping.lease:
                times.append(held.renew_at)
        return min(times)

    def _call_timeout(self, end: float | None = None) -> float:
        """The timeout of one exchange; shorter when *end* is near."""
        if end is None:
            return self.options.timeout
        return max(0.5, min(self.options.timeout, end - time.monotonic()))

    # -- finding the gateway ------------------------------------------------

    def _connect(self) -> None:
        options = self.options
        route = default_gateway()
        try:
            gateway = natfwd.find_gateway(
                via=options.via,
                gateway=options.gateway,
                upnp_url=options.upnp_url,
                interface=options.interface,
                timeout=self._call_timeout(),
            )
            try:
                status = gateway.status(timeout=self._call_timeout())
            except BaseException:
                gateway.close()
                raise
        except (NatfwdError, OSError) as exc:
            self._connect_failures += 1
            delay = self._backoff(self._connect_failures)
            self._connect_at = time.monotonic() + delay
            log.warning("no gateway: %s; trying again in %.0f s", exc, delay)
            for held in self.held:
                self.events.emit(
                    "failed",
                    **held.spec.to_json(),
                    error=error_json(exc),
                    retry_in=round(delay, 3),
                )
            return

        self.gateway = gateway
        self.info = _GatewayInfo(
            method=gateway.method.value,
            address=gateway.address,
            location=status.details.get("location"),
            route=route,
        )
        if _has_epoch(gateway):
            self._saw_epoch(int(status.details["epoch"]))
        self.info.next_check = time.monotonic() + self.options.check_interval
        log.info(
            "gateway %s (%s), external address %s",
            gateway.address,
            gateway.method,
            status.external_address or "unknown",
        )
        self.events.emit(
            "gateway",
            method=gateway.method.value,
            gateway=gateway.address,
            external_address=status.external_address or None,
            location=self.info.location,
        )

        earlier = {
            (e.get("external_port"), e.get("protocol")): e.get("description")
            for e in self.leftovers
        }
        self._remove_leftovers()
        if gateway.method is Method.UPNP:
            self._look_for_others(status.details.get("lan_address"), earlier)
        for held in self.held:
            held.mapping = None
            held.failures = 0
            held.retry_at = 0.0
            if self.gateway is None or self.waiter.stopping:
                break
            self._map(held, renewal=False)

    def _look_for_others(self, address: str | None, earlier: dict) -> None:
        """Say so when a port to map is already mapped to this host by
        someone else: another keeper, most likely, which may remove or
        stop renewing it at any time. (*earlier* holds the descriptions
        of what the state file says this keeper's earlier run mapped.)"""
        assert self.gateway is not None
        try:
            listing = self.gateway.mappings(timeout=self._call_timeout())
        except (NatfwdError, OSError) as exc:
            log.debug("cannot list the mappings: %s", exc)
            return
        for held in self.held:
            key = (held.spec.external_port, held.spec.protocol)
            for m in listing:
                if (m.external_port, m.protocol) != key or m.internal_client != address:
                    continue
                ours = (earlier.get((key[0], key[1].value)), self.description)
                if _someone_elses(m.description, *ours):
                    self._note_shared(held, m.description)

    def _note_shared(self, held: _Held, description: str) -> None:
        """Report, once per port, a mapping of it made by another party."""
        if held.shared:
            return
        held.shared = True
        log.warning(
            "%s is also mapped to this host by someone else (%r): give each "
            "port one keeper, or the mapping goes when either stops",
            held.spec,
            description,
        )
        self.events.emit("shared", **held.spec.to_json(), description=description)

    def _backoff(self, failures: int) -> float:
        return min(RETRY_FIRST * 2 ** (failures - 1), self.options.retry_longest)

    def _lose_gateway(self, reason: str) -> None:
        """Forget the gateway; every mapping is lost until found again."""
        log.warning("%s; looking for the gateway again", reason)
        for held in self.held:
            if held.mapping is not None:
                self._record_leftover(held)
                self.events.emit("lost", **held.spec.to_json(), reason=reason)
            held.mapping = None
        if self.gateway is not None:
            self.gateway.close()
        self.gateway = None
        self.info = None
        # The first time at once (the gateway may have moved to another
        # address or port); then backing off, until a mapping succeeds.
        self._connect_failures += 1
        delay = (
            self._backoff(self._connect_failures - 1)
            if self._connect_failures > 1
            else 0.0
        )
        self._connect_at = time.monotonic() + delay
        self._save()

    # -- mapping ------------------------------------------------------------

    def _map(self, held: _Held, *, renewal: bool) -> None:
        """Map (or renew) one port; on failure, schedule a retry."""
        assert self.gateway is not None
        spec = held.spec
        try:
            mapping = self.gateway.add(
                spec.internal_port,
                spec.external_port,
                spec.protocol,
                lease=self.options.lease,
                description=self.description,
                timeout=self._call_timeout(),
            )
        except (NatfwdError, OSError) as exc:
            self._map_failed(held, exc)
            return

        held.mapping = mapping
        held.failures = 0
        self._connect_failures = 0
        renew_in = self._renewal_delay(mapping.lease)
        held.renew_at = time.monotonic() + (renew_in or 0.0)
        self._save()

        if renewal:
            log.debug(
                "renewed %s: lease %s",
                spec,
                f"{mapping.lease} s" if mapping.lease else "permanent",
            )
        else:
            log.debug(
                "mapped %s as %s:%d (lease %s)",
                spec,
                mapping.external_address or "?",
                mapping.external_port,
                f"{mapping.lease} s" if mapping.lease else "permanent",
            )
            for note in mapping.notes:
                log.info("%s: %s", spec, note)
        self.events.emit(
            "renewed" if renewal else "mapped",
            **spec.to_json(),
            mapping=mapping.to_json(),
            renew_in=None if renew_in is None else round(renew_in, 3),
        )
        self._after_request(held)

    def _map_failed(self, held: _Held, exc: Exception) -> None:
        spec = held.spec
        if held.mapping is not None:
            self.events.emit("lost", **spec.to_json(), reason=f"renewal failed: {exc}")
            held.mapping = None
            self._save()
        if not _is_refusal(exc):
            self.events.emit("failed", **spec.to_json(), error=error_json(exc))
            self._lose_gateway(f"the gateway failed while mapping {spec}: {exc}")
            return
        held.failures += 1
        delay = self._backoff(held.failures)
        held.retry_at = time.monotonic() + delay
        log.warning("could not map %s: %s; trying again in %.0f s", spec, exc, delay)
        self.events.emit(
            "failed",
            **spec.to_json(),
            error=error_json(exc),
            retry_in=round(delay, 3),
        )

    def _renewal_delay(self, lease: int) -> float | None:
        """Seconds until a mapping granted *lease* should be renewed."""
        if not lease:
            return None
        margin = self.options.renew_margin
        if margin is not None and margin >= lease:
            # The gateway granted less than asked: the margin would renew
            # at once, again and again.
            if not self._margin_warned:
                log.warning(
                    "the gateway granted a lease of %d s, no longer than "
                    "--renew-margin %g s; renewing half-way through instead",
                    lease,
                    margin,
                )
                self._margin_warned = True
            margin = None
        delay = lease / 2 if margin is None else lease - margin
        return max(SHORTEST_RENEWAL, min(delay, lease - SHORTEST_RENEWAL))

    # -- keeping ------------------------------------------------------------

    def _tick(self, now: float) -> None:
        assert self.info is not None
        if self._route_changed():
            return
        if now >= self.info.next_check:
            self.info.next_check = now + self.options.check_interval
            if not self._check():
                return

        for held in self.held:
            if self.gateway is None or self.waiter.stopping:
                return
            if held.mapping is None and now >= held.retry_at:
                self._map(held, renewal=False)
            elif (
                held.mapping is not None
                and held.mapping.lease
                and (now >= held.renew_at)
            ):
                self._map(held, renewal=True)

    def _route_changed(self) -> bool:
        assert self.info is not None
        if self.options.gateway or self.options.upnp_url:
            return False
        route = default_gateway()
        if route == self.info.route or route is None:
            return False
        old = self.gateway
        reason = f"the default gateway changed from {self.info.route} to {route}"
        log.warning("%s", reason)
        # The old gateway may still be reachable (two routers on one LAN).
        for held in self.held:
            if held.mapping is not None and old is not None:
                with contextlib.suppress(NatfwdError, OSError):
                    old.remove(
                        held.spec.internal_port,
                        held.mapping.external_port,
                        held.spec.protocol,
                        timeout=min(2.0, self._call_timeout()),
                    )
                    held.mapping = None  # removed: no leftover to record
                    self.events.emit("lost", **held.spec.to_json(), reason=reason)
        self._lose_gateway(reason)
        return True

    def _check(self) -> bool:
        """Ask the gateway whether it still holds our mappings."""
        assert self.gateway is not None
        assert self.info is not None
        try:
            if _has_epoch(self.gateway):
                return self._check_epoch()
            return self._check_upnp()
        except (NatfwdError, OSError) as exc:
            if _is_refusal(exc):
                log.debug("the check was refused: %s", exc)
                return True
            self._lose_gateway(f"the gateway at {self.info.address} failed: {exc}")
            return False

    def _check_epoch(self) -> bool:
        assert self.gateway is not None
        status = self.gateway.status(timeout=self._call_timeout())
        if self._saw_epoch(int(status.details["epoch"])):
            self._remap_all("the gateway restarted (its epoch went back)")
        return True

    def _check_upnp(self) -> bool:
        assert self.gateway is not None
        present = {
            (m.external_port, m.protocol): m
            for m in self.gateway.mappings(timeout=self._call_timeout())
        }
        for held in self.held:
            if held.mapping is None:
                continue
            entry = present.get((held.mapping.external_port, held.spec.protocol))
            if entry is not None and (entry.internal_client, entry.internal_port) == (
                held.mapping.internal_address,
                held.spec.internal_port,
            ):
                if _someone_elses(entry.description, self.description):
                    self._note_shared(held, entry.description)
                continue
            reason = "the gateway no longer holds the mapping"
            if entry is not None:
                reason = (
                    f"the gateway maps the port to {entry.internal_client}:"
                    f"{entry.internal_port} now"
                )
            log.warning("lost %s: %s; mapping it again", held.spec, reason)
            self.events.emit("lost", **held.spec.to_json(), reason=reason)
            held.mapping = None
            self._save()
            self._map(held, renewal=False)
            if self.gateway is None:
                return False
        return True

    def _remap_all(self, reason: str) -> None:
        log.warning("%s: mapping every port again", reason)
        for held in self.held:
            if self.gateway is None:
                return
            if held.mapping is not None:
                self.events.emit("lost", **held.spec.to_json(), reason=reason)
                held.mapping = None
            self._map(held, renewal=False)

    def _after_request(self, current: _Held) -> None:
        """After a NAT-PMP request, look at the epoch its reply carried.

        If it says the gateway restarted, the mapping just made is new but
        every other one is gone: they are mapped again at once.
        """
        gateway = self.gateway
        if gateway is None or not _has_epoch(gateway):
            return
        if not self._saw_epoch(int(gateway.epoch)):
            return
        reason = "the gateway restarted (its epoch went back)"
        for held in self.held:
            if held is not current and held.mapping is not None:
                self.events.emit("lost", **held.spec.to_json(), reason=reason)
                held.mapping = None
                held.retry_at = 0.0
        self._save()

    def _saw_epoch(self, epoch: int) -> bool:
        """Record a NAT-PMP epoch; True if it says the gateway restarted."""
        info = self.info
        assert info is not None
        now = time.monotonic()
        restarted = info.epoch is not None and _epoch_says_restart(
            info.epoch, now - info.epoch_seen, epoch
        )
        if restarted:
            log.warning(
                "the gateway's epoch went from %d to %d: it restarted",
                info.epoch,
                epoch,
            )
        info.epoch = epoch
        info.epoch_seen = now
        return restarted

    # -- leftovers of an earlier run, or of a lost gateway --------------------

    def _load_leftovers(self) -> list[dict]:
        document = self.state.load()
        pid = document.get("pid")
        leftovers = [
            dict(m, gateway=document.get("gateway"))
            for m in document.get("mappings", [])
            if isinstance(m, dict)
        ] + [m for m in document.get("leftovers", []) if isinstance(m, dict)]
        for entry in leftovers:
            entry.pop("own", None)  # an earlier run's, whoever recorded it
        token = document.get("token")
        if isinstance(token, str) and TOKEN_SHAPE.fullmatch(token):
            # The same keeper as before: what it mapped is still its own.
            self.token = token
            self.description = keeper_description(self.options.description, token)
        if leftovers:
            log.warning(
                "an earlier run (pid %s) left %d mapping(s) behind; removing them",
                pid,
                len(leftovers),
            )
        return leftovers

    def _record_leftover(self, held: _Held) -> None:
        assert self.info is not None
        self.leftovers.append(
            dict(held.record(), gateway=self._gateway_record(), own=True)
        )

    def _gateway_record(self) -> dict | None:
        if self.info is None:
            return None
        return {
            "method": self.info.method,
            "address": self.info.address,
            "location": self.info.location,
        }

    def _remove_leftovers(self, *, end: float | None = None) -> tuple[int, int]:
        """Remove what an earlier run (or a lost gateway) left on this one.

        Before *end* (a time.monotonic()), every leftover goes, as the
        keeper stops; otherwise a port mapped again at once is left for the
        add to replace. Returns how many were removed and how many could
        not be.
        """
        if not self.leftovers or self.gateway is None:
            return 0, 0
        gateway = self.gateway
        wanted = set()
        if end is None:
            wanted = {(h.spec.external_port, h.spec.protocol.value) for h in self.held}
        listing = None
        remaining = []
        removed = 0
        for entry in self.leftovers:
            where = entry.get("gateway") or {}
            key = (entry.get("external_port"), entry.get("protocol"))
            if where.get("address") not in (None, gateway.address):
                log.info(
                    "forgetting a leftover mapping of %s/%s on %s, a gateway "
                    "that is no longer ours",
                    *key,
                    where.get("address"),
                )
                continue
            if key in wanted:
                continue  # mapped again right away: the add replaces it
            try:
                timeout = self._call_timeout(end)
                if gateway.method is Method.UPNP:
                    if listing is None:
                        listing = gateway.mappings(timeout=timeout)
                    if not self._ours(entry, listing):
                        log.info(
                            "not removing the leftover mapping of %s/%s: the "
                            "gateway maps it for someone else now",
                            *key,
                        )
                        continue
                gateway.remove(
                    int(entry["internal_port"]),
                    int(entry["external_port"]),
                    entry["protocol"],
                    timeout=timeout,
                )
            except (NatfwdError, OSError, KeyError, ValueError, TypeError) as exc:
                if not (
                    isinstance(exc, UPnPError)
                    and exc.code == UPnPErrorCode.NO_SUCH_ENTRY_IN_ARRAY
                ):
                    log.warning("could not remove a leftover mapping: %s", exc)
                    remaining.append(entry)
                    if end is not None:
                        self._emit_failed_leftover(entry, exc)
                    continue
            removed += 1
            log.info("removed the leftover mapping of %s/%s", *key)
            self.events.emit(
                "removed",
                protocol=entry.get("protocol"),
                internal_port=entry.get("internal_port"),
                external_port=entry.get("external_port"),
                leftover=not entry.get("own", False),
            )
        self.leftovers = remaining
        self._save()
        return removed, len(remaining)

    def _emit_failed_leftover(self, entry: dict, exc: BaseException) -> None:
        self.events.emit(
            "failed",
            protocol=entry.get("protocol"),
            internal_port=entry.get("internal_port"),
            external_port=entry.get("external_port"),
            error=error_json(exc),
        )

    def _ours(self, entry: dict, listing) -> bool:
        """Whether the gateway still maps the leftover as it was made."""
        for m in listing:
            if (m.external_port, m.protocol.value) == (
                entry.get("external_port"),
                entry.get("protocol"),
            ):
                same_place = (m.internal_client, m.internal_port) == (
                    entry.get("internal_address"),
                    entry.get("internal_port"),
                )
                return same_place and not _someone_elses(
                    m.description, entry.get("description"), self.description
                )
        return False

    def _save(self) -> None:
        mapped = [h.record() for h in self.held if h.mapping is not None]
        if not mapped and not self.leftovers:
            self.state.remove()
            return
        try:
            self.state.save(
                {
                    "pid": os.getpid(),
                    "token": self.token,
                    "gateway": self._gateway_record(),
                    "mappings": mapped,
                    "leftovers": self.leftovers,
                }
            )
        except OSError as exc:
            log.warning("could not write the state file %s: %s", self.state.path, exc)

    # -- stopping -----------------------------------------------------------

    def _shutdown(self, reason: str) -> int:
        """Remove every mapping this keeper may still hold; the exit status.

        That includes those it had to leave behind when it lost the gateway:
        if the gateway is lost now, it is looked for once more.
        """
        log.info("stopping (%s): removing the mappings", reason)
        end = time.monotonic() + SHUTDOWN_TIMEOUT
        if self.gateway is None and self.leftovers:
            self._find_again(end)
        gateway = self.gateway
        removed = failed = left = 0

        listing = None
        if gateway is not None and gateway.method is Method.UPNP:
            with contextlib.suppress(NatfwdError, OSError):
                listing = gateway.mappings(timeout=self._call_timeout(end))
        for held in self.held:
            if held.mapping is None or gateway is None:
                continue
            if listing is not None and self._held_by_another(held, listing):
                left += 1
                held.mapping = None
                continue
            try:
                gateway.remove(
                    held.spec.internal_port,
                    held.mapping.external_port,
                    held.spec.protocol,
                    timeout=self._call_timeout(end),
                )
            except (NatfwdError, OSError) as exc:
                if not (
                    isinstance(exc, UPnPError)
                    and exc.code == UPnPErrorCode.NO_SUCH_ENTRY_IN_ARRAY
                ):
                    failed += 1
                    log.warning("could not remove %s: %s", held.spec, exc)
                    self.events.emit(
                        "failed", **held.spec.to_json(), error=error_json(exc)
                    )
                    continue
            removed += 1
            held.mapping = None
            log.debug("removed %s", held.spec)
            self.events.emit("removed", **held.spec.to_json(), leftover=False)
            self._save()

        if gateway is not None:
            done, not_done = self._remove_leftovers(end=end)
            removed += done
            failed += not_done
            gateway.close()
        elif self.leftovers:
            failed += len(self.leftovers)
            log.warning(
                "no gateway to remove %d mapping(s) from; the state file %s "
                "keeps them for the next start",
                len(self.leftovers),
                self.state.path,
            )
        if self.info is not None:
            # What could not be removed stays in the state file, for the
            # next run (after the leftovers: counted and reported once).
            for held in self.held:
                if held.mapping is not None:
                    self._record_leftover(held)
                    held.mapping = None
        self.gateway = None
        self._save()
        fields = {"removed": removed, "failed": failed}
        if left:
            fields["left"] = left
        self.events.emit("shutdown", reason=reason, **fields)
        return 0 if not failed else EXIT_NOT_REMOVED

    def _find_again(self, end: float) -> None:
        """Look for the lost gateway once, before *end*, to clean it up."""
        options = self.options
        try:
            self.gateway = natfwd.find_gateway(
                via=options.via,
                gateway=options.gateway,
                upnp_url=options.upnp_url,
                interface=options.interface,
                timeout=self._call_timeout(end),
            )
        except (NatfwdError, OSError) as exc:
            log.warning("the gateway is still lost: %s", exc)
            for entry in self.leftovers:
                self._emit_failed_leftover(entry, exc)

    def _held_by_another(self, held: _Held, listing) -> bool:
        """Whether the gateway lists *held*'s mapping with another party's
        description: one that made it first (some gateways keep the first
        description of a mapping), or renewed it last (others keep the
        last). That party may rely on it: leave it be."""
        assert held.mapping is not None
        for m in listing:
            if (m.external_port, m.protocol) != (
                held.mapping.external_port,
                held.spec.protocol,
            ):
                continue
            if _someone_elses(m.description, self.description):
                log.warning(
                    "leaving %s on the gateway: it is listed as someone else's (%r)",
                    held.spec,
                    m.description,
                )
                return True
        return False


def new_token() -> str:
    """A keeper's token: six hex digits, kept in its state file."""
    return os.urandom(3).hex()


TOKEN_SHAPE = re.compile(r"[0-9a-f]{6}")


def keeper_description(description: str, token: str) -> str:
    """*description* followed by ``#`` and the keeper's *token*.

    The token tells a keeper's UPnP mappings from those another keeper (or
    program) made of the same port for the same host, which the gateway
    shows as one mapping: a keeper removes only a mapping listed with its
    own token. It stays the same from run to run of one state file.
    """
    suffix = f" #{token}"
    room = MAX_DESCRIPTION_BYTES - len(suffix)
    text = description.encode("utf-8")[:room].decode("utf-8", "ignore")
    return text + suffix


def _someone_elses(listed: str | None, *ours: str | None) -> bool:
    """Whether a mapping listed with the description *listed* was made by
    another party than the one that set any of *ours*.

    An empty description proves nothing (some routers keep none), nor does
    one cut short (some keep a few dozen bytes): that may be ours.
    """
    ours = tuple(d for d in ours if d)
    if not listed or not ours:
        return False
    for mine in ours:
        if mine.startswith(listed):
            return False
        if " #" in mine and listed.endswith(" #" + mine.rpartition(" #")[2]):
            return False
    return True


# -- the command --------------------------------------------------------------


CONFIG_KEYS = {
    "ports": "specs",
    "lease": "lease",
    "description": "description",
    "renew_margin": "renew_margin",
    "check_interval": "check_interval",
    "state_file": "state_file",
    "via": "via",
    "gateway": "gateway",
    "upnp_url": "upnp_url",
    "interface": "interface",
    "timeout": "timeout",
}


def _toml_module():
    """tomllib, or tomli before Python 3.11, or None; imported when needed
    (it is slow to import, and most runs read no TOML)."""
    for name in ("tomllib", "tomli"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def load_config(path: str) -> dict[str, object]:
    """Options from a TOML file, or an INI file with a ``[keep]`` section.

    The keys are those of CONFIG_KEYS; ``ports`` is a list in TOML and a
    space- or comma-separated string in INI.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidArgument(f"cannot read the config file {path!r}: {exc}") from exc

    if path.endswith(".toml"):
        tomllib = _toml_module()
        if tomllib is None:
            raise InvalidArgument(
                f"reading {path!r} needs Python 3.11 or the tomli package; "
                "an INI file works everywhere"
            )
        try:
            document = tomllib.loads(text)
        except ValueError as exc:
            raise InvalidArgument(f"{path}: {exc}") from exc
        document = document.get("keep", document)
    else:
        configparser = importlib.import_module("configparser")
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read_string(text, source=path)
        except configparser.Error as exc:
            raise InvalidArgument(f"{path}: {exc}") from exc
        if not parser.has_section("keep"):
            raise InvalidArgument(f"{path}: no [keep] section")
        document = dict(parser.items("keep"))

    unknown = sorted(set(document) - set(CONFIG_KEYS))
    if unknown:
        raise InvalidArgument(
            f"{path}: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"expected some of {', '.join(CONFIG_KEYS)}"
        )
    config = {}
    for key, value in document.items():
        if key == "ports" and isinstance(value, str):
            config["specs"] = value.replace(",", " ").split()
        elif key == "ports" and not isinstance(value, list):
            raise InvalidArgument(f"{path}: ports must be a list, not {value!r}")
        else:
            config[CONFIG_KEYS[key]] = value
    return config


def check_renew_margin(margin: float, lease: int) -> float:
    """The renew margin, which must leave some of the lease asked for."""
    if lease and margin >= lease:
        raise InvalidArgument(
            f"--renew-margin must be shorter than the lease of {lease} s, "
            f"not {margin:g} s (or leave it out: half-way through the lease)"
        )
    return margin


def options_from_args(args: argparse.Namespace, defaults: dict) -> tuple:
    """(specs, KeepOptions, state path, stop on stdin EOF) from the command line
    and the config file; the command line wins."""
    config = load_config(args.config) if args.config else {}

    def pick(name: str, default: object = None) -> object:
        given = getattr(args, name, None)
        if given is not None and given != defaults.get(name):
            return given
        return config.get(name, default if given is None else given)

    specs = parse_specs(list(args.specs) or list(config.get("specs", [])))
    if not specs:
        raise InvalidArgument(
            "no ports to keep: give PORT[:EXTERNAL][/PROTO] or --config"
        )

    lease = lease_value(pick("lease", DEFAULT_LEASE))
    renew_margin = pick("renew_margin")
    if renew_margin is not None:
        renew_margin = check_renew_margin(
            seconds_value(renew_margin, "renew margin"), lease
        )
    check_interval = seconds_value(
        pick("check_interval", DEFAULT_CHECK_INTERVAL), "check interval"
    )
    options = KeepOptions(
        via=str(pick("via", "auto")),
        gateway=pick("gateway"),
        upnp_url=pick("upnp_url"),
        interface=pick("interface"),
        timeout=seconds_value(pick("timeout", 10.0), "timeout"),
        lease=lease,
        description=check_description(pick("description", DEFAULT_DESCRIPTION)),
        renew_margin=renew_margin,
        check_interval=check_interval,
    )
    if options.via not in ("auto", "natpmp", "pcp", "upnp"):
        raise InvalidArgument(
            f"via must be 'auto', 'natpmp', 'pcp' or 'upnp', not {options.via!r}"
        )
    state_path = pick("state_file")
    state_path = (
        Path(str(state_path)) if state_path else default_state_dir() / "keep.json"
    )
    stop_on_eof = args.stop_on_stdin_eof
    if stop_on_eof is None:
        stop_on_eof = stdin_is_pipe()
    return specs, options, state_path, stop_on_eof


class _JournalFormatter(logging.Formatter):
    """journald's priority prefix (<3> error ... <7> debug), no timestamp."""

    PRIORITIES: ClassVar[dict[int, int]] = {
        logging.CRITICAL: 2,
        logging.ERROR: 3,
        logging.WARNING: 4,
        logging.INFO: 6,
        logging.DEBUG: 7,
    }

    def format(self, record: logging.LogRecord) -> str:
        priority = self.PRIORITIES.get(record.levelno, 6)
        return f"<{priority}>{record.getMessage()}"


def setup_logging(verbosity: int) -> None:
    """Log at INFO (DEBUG with -v) to stderr; journald's way under systemd."""
    if os.environ.get("JOURNAL_STREAM"):
        formatter: logging.Formatter = _JournalFormatter()
    else:
        formatter = logging.Formatter(
            "%(asctime)s natfwd keep: %(levelname)s: %(message)s",
            "%Y-%m-%dT%H:%M:%S%z",
        )
    root = logging.getLogger("natfwd")
    if not root.handlers or all(
        isinstance(h, logging.NullHandler) for h in root.handlers
    ):
        root.addHandler(logging.StreamHandler(sys.stderr))
    for handler in root.handlers:
        handler.setFormatter(formatter)
    root.setLevel(logging.DEBUG if verbosity >= 1 else logging.INFO)


def run(args: argparse.Namespace, defaults: dict) -> int:
    """``natfwd keep``: returns the exit status. Raises NatfwdError on bad
    options (the CLI turns them into exit status 2)."""
    setup_logging(args.verbose)
    specs, options, state_path, stop_on_eof = options_from_args(args, defaults)

    default_state = default_state_dir() / "keep.json"
    state = StateFile(state_path, create_folder=state_path == default_state)
    state.lock()
    try:
        state.load()  # refuse a file that is no state file before anything else
    except BaseException:
        state.unlock()
        raise
    waiter = Waiter(watch_stdin=stop_on_eof)
    events = Events(enabled=args.json)
    try:
        log.info(
            "keeping %s mapped (state in %s%s)",
            ", ".join(map(str, specs)),
            state_path,
            "; stops when stdin closes" if stop_on_eof else "",
        )
        return Keeper(specs, options, state, events, waiter).run()
    finally:
        waiter.close()
        state.unlock()
