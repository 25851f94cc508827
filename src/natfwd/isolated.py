"""natfwd with its C code in a child process, so a crash cannot kill the host.

The same operations as :mod:`natfwd`, with the same exceptions, but every
call into miniupnpc or libnatpmp runs in a worker process::

    from natfwd import isolated

    with isolated.find_gateway(timeout=5) as gateway:
        mapping = gateway.add(9001, lease=3600)
    # leaving the block removed the mapping

If the worker dies in the middle of a call (a segfault or an abort in C
code, or a kill from outside), the call raises
:class:`natfwd.IsolatedCallCrashed` and the host carries on; so does the
first call after a worker died between calls. The next call starts a new
worker; a gateway found before the crash is found again in it, by the same
protocol, before the call goes on.

One worker serves the whole process (:func:`default_worker`); it runs one
call at a time, so calls from several threads wait their turn. A
:class:`Worker` of one's own gives a separate process, for instance to run
calls side by side, or under a *prefix* such as ``["ip", "netns", "exec",
"NAME"]``. A worker is started by running ``python -m
natfwd._isolated_child`` (not by forking the host), so a host with threads
is safe, and it ends by itself when its host does.

Each call is waited for no longer than its timeout plus GRACE seconds: a
worker that hangs past that is killed and the call raises
:class:`natfwd.GatewayTimeout`.

The module works on POSIX systems; on Windows, starting a worker raises
:class:`natfwd.NatfwdError`.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import pickle
import selectors
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence

from natfwd import _exceptions
from natfwd._deadline import Deadline
from natfwd._exceptions import GatewayTimeout, IsolatedCallCrashed, NatfwdError
from natfwd._gateway import (
    DEFAULT_DESCRIPTION,
    DEFAULT_LEASE,
    DEFAULT_TIMEOUT,
    GatewayStatus,
    Mapping,
    Method,
)
from natfwd._isolated_child import HEADER
from natfwd._validate import Protocol, check_port, check_protocol

__all__ = [
    "GRACE",
    "IsolatedGateway",
    "Worker",
    "default_worker",
    "find_gateway",
    "forward",
]

log = logging.getLogger(__name__)

#: Seconds a call may overrun its own timeout before its worker is killed.
GRACE = 5.0


def _timeout(timeout: float | None, deadline: Deadline | None) -> float:
    """The seconds a call may take, as the worker is told them."""
    return max(0.001, Deadline.given(deadline, timeout, DEFAULT_TIMEOUT).remaining())


def _decode_exception(encoded: tuple) -> BaseException:
    kind = encoded[0]
    if kind == "natfwd":
        _, name, message, attributes = encoded
        cls = getattr(_exceptions, name, None)
        if not (isinstance(cls, type) and issubclass(cls, NatfwdError)):
            cls = NatfwdError
        exc = cls.__new__(cls)
        exc.args = (message,)
        vars(exc).update(attributes)
        return exc
    if kind == "pickle":
        try:
            return pickle.loads(encoded[1])
        except Exception as exc:
            return NatfwdError(f"the isolated call failed, and so did its error: {exc}")
    _, name, message = encoded
    return NatfwdError(f"the isolated call failed: {name}: {message}")


class Worker:
    """One worker process, started on first use and again after a crash.

    *python* is the interpreter to run (default: this one); *prefix* goes
    before it on the command line; *env* replaces the environment.
    """

    def __init__(
        self,
        *,
        python: str | None = None,
        prefix: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self._argv = [*prefix, python or sys.executable, "-m", "natfwd._isolated_child"]
        self._env = env
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self.generation = 0
        self._pid: int | None = None

    @property
    def pid(self) -> int | None:
        """The worker's process id, or None before it started."""
        return self._pid

    def start(self, what: str = "start") -> None:
        """Start the worker now, rather than at the first call.

        Raises IsolatedCallCrashed, naming *what*, if the worker died since
        its last call; the next call starts a new one.
        """
        with self._lock:
            self._ensure_started(what)

    def _ensure_started(self, what: str) -> subprocess.Popen:
        process = self._process
        if process is not None:
            if process.poll() is None:
                return process
            # It died between calls (killed, say). The call at hand hears of
            # it, as it would have had the worker died during the call: a
            # new worker knows none of the old one's gateways.
            raise self._crashed(process, what)
        if sys.platform == "win32":
            raise NatfwdError(
                "natfwd.isolated needs a POSIX system: it waits for its worker "
                "with select(), which takes no pipes on Windows"
            )
        self._process = subprocess.Popen(
            self._argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=self._env,
            close_fds=True,
        )
        self.generation += 1
        self._pid = self._process.pid
        if self._argv[0] == sys.executable:
            log.debug("started the isolated worker, pid %d", self._pid)
        else:
            # Under a prefix, the interpreter's pid is the one to watch.
            self._pid = self._call(self._process, "ping", (), {}, DEFAULT_TIMEOUT)
        return self._process

    def call(self, operation: str, args: tuple, kwargs: dict, timeout: float) -> object:
        """Run one operation in the worker; *timeout* bounds the wait."""
        with self._lock:
            process = self._ensure_started(kwargs.get("_what", operation))
            return self._call(process, operation, args, kwargs, timeout)

    def _call(self, process, operation, args, kwargs, timeout) -> object:
        what = kwargs.pop("_what", operation)
        request = pickle.dumps((operation, args, kwargs))
        try:
            process.stdin.write(HEADER.pack(len(request)) + request)
            process.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._crashed(process, what) from None

        try:
            reply = self._read_reply(process, what, time.monotonic() + timeout + GRACE)
        except NatfwdError:
            raise
        except BaseException:
            # Interrupted (KeyboardInterrupt, say) with the reply still to
            # come: it would be taken for the next call's, so the worker goes.
            self._kill(process)
            raise

        status, value = pickle.loads(reply)
        if status == "ok":
            return value
        raise _decode_exception(value)

    def _read_reply(self, process, what: str, end: float) -> bytes:
        stream = process.stdout
        fd = stream.fileno()
        data = b""
        need = HEADER.size
        size = None
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while len(data) < need:
                left = end - time.monotonic()
                if left <= 0 or not selector.select(left):
                    if time.monotonic() < end:
                        continue
                    self._kill(process)
                    raise GatewayTimeout(
                        f"the isolated process running {what} did not answer "
                        f"in time; it was stopped"
                    )
                chunk = os.read(fd, max(need - len(data), 65536))
                if not chunk:
                    raise self._crashed(process, what)
                data += chunk
                if size is None and len(data) >= HEADER.size:
                    (size,) = HEADER.unpack(data[: HEADER.size])
                    need = HEADER.size + size
        return data[HEADER.size : need]

    def _crashed(self, process: subprocess.Popen, what: str) -> IsolatedCallCrashed:
        try:
            code = process.wait(timeout=GRACE)
        except subprocess.TimeoutExpired:
            self._kill(process)
            code = process.returncode
        self._discard(process)
        if code is not None and code < 0:
            log.warning("the isolated worker died of signal %d in %s", -code, what)
            return IsolatedCallCrashed(what, signal=-code)
        log.warning("the isolated worker exited %s in %s", code, what)
        return IsolatedCallCrashed(what, exitcode=code)

    def _kill(self, process: subprocess.Popen) -> None:
        with contextlib.suppress(OSError):
            process.kill()
        process.wait()
        self._discard(process)

    def _discard(self, process: subprocess.Popen) -> None:
        for stream in (process.stdin, process.stdout):
            with contextlib.suppress(OSError):
                stream.close()
        if self._process is process:
            self._process = None

    def close(self) -> None:
        """Stop the worker (it ends when its stdin does). Idempotent."""
        with self._lock:
            process, self._process = self._process, None
            if process is None:
                return
            with contextlib.suppress(OSError):
                process.stdin.close()
            try:
                process.wait(timeout=GRACE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            with contextlib.suppress(OSError):
                process.stdout.close()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_default: list[Worker] = []
_default_lock = threading.Lock()


def default_worker() -> Worker:
    """The worker shared by every call that names none."""
    with _default_lock:
        if not _default:
            _default.append(Worker())
        return _default[0]


@atexit.register
def _close_default_worker() -> None:
    # The worker would end by itself when the host does, but a host that
    # exits with it still running is told so (ResourceWarning); it ends
    # here instead, when its stdin closes.
    with _default_lock:
        for worker in _default:
            worker.close()


class IsolatedGateway:
    """A gateway found in a worker; the methods of :class:`natfwd.Gateway`."""

    def __init__(self, worker: Worker, find: dict, found: tuple, generation: int):
        self._worker = worker
        self._find = find
        self._handle, self.method, self.address = found
        self._generation = generation
        self._added: list[tuple[int, int, Protocol]] = []
        self._closed = False

    def _call(self, method: str, args: tuple, kwargs: dict, timeout: float):
        if self._closed:
            raise NatfwdError("the gateway was closed")
        what = f"Gateway.{method}"
        self._worker.start(what)
        if self._worker.generation != self._generation:
            self._find_again(timeout)
        return self._worker.call(
            "gateway", (self._handle, method, *args), {**kwargs, "_what": what}, timeout
        )

    def _find_again(self, timeout: float) -> None:
        """After a crash, find the gateway again in the new worker."""
        log.info("finding the %s gateway again in a new worker", self.method)
        find = dict(self._find, via=Method(self.method).value, timeout=timeout)
        handle, method, address = self._worker.call(
            "find_gateway", (), {**find, "_what": "find_gateway"}, timeout
        )
        self._handle, self.method, self.address = handle, method, address
        self._generation = self._worker.generation

    def add(
        self,
        internal_port: int,
        external_port: int | None = None,
        protocol: Protocol | str = Protocol.TCP,
        *,
        lease: int = DEFAULT_LEASE,
        description: str = DEFAULT_DESCRIPTION,
        internal_address: str | None = None,
        any_port: bool = False,
        timeout: float | None = None,
        deadline: Deadline | None = None,
    ) -> Mapping:
        """See :meth:`natfwd.Gateway.add`."""
        seconds = _timeout(timeout, deadline)
        mapping = self._call(
            "add",
            (internal_port, external_port, protocol),
            {
                "lease": lease,
                "description": description,
                "internal_address": internal_address,
                "any_port": any_port,
                "timeout": seconds,
            },
            seconds,
        )
        key = (mapping.internal_port, mapping.external_port, mapping.protocol)
        self._added = [k for k in self._added if k != key] + [key]
        return mapping

    def remove(
        self,
        internal_port: int,
        external_port: int | None = None,
        protocol: Protocol | str = Protocol.TCP,
        *,
        timeout: float | None = None,
        deadline: Deadline | None = None,
    ) -> None:
        """See :meth:`natfwd.Gateway.remove`."""
        seconds = _timeout(timeout, deadline)
        self._call(
            "remove",
            (internal_port, external_port, protocol),
            {"timeout": seconds},
            seconds,
        )
        internal_port = check_port(internal_port, "internal port")
        external = internal_port if external_port is None else check_port(external_port)
        key = (internal_port, external, check_protocol(protocol))
        self._added = [k for k in self._added if k != key]

    def mappings(self, *, timeout: float | None = None, deadline=None) -> list:
        """See :meth:`natfwd.Gateway.mappings`."""
        seconds = _timeout(timeout, deadline)
        return self._call("mappings", (), {"timeout": seconds}, seconds)

    def status(self, *, timeout: float | None = None, deadline=None) -> GatewayStatus:
        """See :meth:`natfwd.Gateway.status`."""
        seconds = _timeout(timeout, deadline)
        return self._call("status", (), {"timeout": seconds}, seconds)

    def external_address(self, *, timeout: float | None = None, deadline=None) -> str:
        """See :meth:`natfwd.Gateway.external_address`."""
        seconds = _timeout(timeout, deadline)
        return self._call("external_address", (), {"timeout": seconds}, seconds)

    def remove_added(self, *, timeout: float | None = 10.0) -> list[NatfwdError]:
        """Remove every mapping added through this object; returns failures.

        The host keeps the list, so mappings added before a crash of the
        worker are removed too.
        """
        end = Deadline(_timeout(timeout, None))
        failures = []
        for internal, external, protocol in reversed(list(self._added)):
            try:
                try:
                    self.remove(internal, external, protocol, deadline=end)
                except IsolatedCallCrashed:
                    # The worker died, before this call or in it: a new one
                    # takes the removal over, so that no mapping is left
                    # behind for want of a worker.
                    self.remove(internal, external, protocol, deadline=end)
            except NatfwdError as exc:
                log.warning("could not remove the mapping of %d: %s", external, exc)
                failures.append(exc)
        return failures

    def close(self) -> None:
        """Release the gateway in the worker. Mappings stay."""
        if self._closed:
            return
        self._closed = True
        if self._worker.generation == self._generation:
            with contextlib.suppress(NatfwdError):
                self._worker.call("close", (self._handle,), {}, DEFAULT_TIMEOUT)

    def __enter__(self) -> IsolatedGateway:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.remove_added()
        finally:
            self.close()


def find_gateway(
    *,
    via: Method | str = "auto",
    gateway: str | None = None,
    upnp_url: str | None = None,
    interface: str | None = None,
    timeout: float | None = None,
    deadline: Deadline | None = None,
    worker: Worker | None = None,
) -> IsolatedGateway:
    """:func:`natfwd.find_gateway`, in *worker* (default: the shared one)."""
    worker = worker or default_worker()
    seconds = _timeout(timeout, deadline)
    find = {
        "via": str(via),
        "gateway": gateway,
        "upnp_url": upnp_url,
        "interface": interface,
    }
    found = worker.call(
        "find_gateway",
        (),
        {**find, "timeout": seconds, "_what": "find_gateway"},
        seconds,
    )
    return IsolatedGateway(worker, find, found, worker.generation)


@contextlib.contextmanager
def forward(
    internal_port: int,
    external_port: int | None = None,
    protocol: Protocol | str = Protocol.TCP,
    *,
    lease: int = DEFAULT_LEASE,
    description: str = DEFAULT_DESCRIPTION,
    timeout: float | None = None,
    **find: object,
) -> Iterator[Mapping]:
    """:func:`natfwd.forward`, isolated: the mapping lasts for the block."""
    with find_gateway(timeout=timeout, **find) as gateway:
        yield gateway.add(
            internal_port,
            external_port,
            protocol,
            lease=lease,
            description=description,
            timeout=timeout,
        )
