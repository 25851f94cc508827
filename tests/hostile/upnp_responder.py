"""An IGD on 127.0.0.1 that can be made to misbehave in every way we know of.

``HostileIGD`` serves a root description by GET and answers SOAP actions by
POST. Left alone it is a small, correct WANIPConnection: it keeps a table of
port mappings and implements AddPortMapping, AddAnyPortMapping,
DeletePortMapping, GetSpecificPortMappingEntry, GetGenericPortMappingEntry,
GetExternalIPAddress and GetStatusInfo on it. A test then bends it:

- ``description`` replaces the root description (bytes, any shape);
- ``holders`` / ``hold()`` put mappings of other hosts in the table;
- ``permanent_only``, ``max_lease``, ``external_ip`` imitate router quirks;
- ``script(action, ...)`` makes the next calls of one action apply or not
  apply their effect, and answer with any bytes, slowly, never, or only in
  part (see :class:`Script`).

Every change the table goes through is recorded in ``events`` as
``("add" | "delete", port, protocol)``, so a test can tell what a refused
or failed request left behind. The server is bounded: each connection is
dropped after ``CONNECTION_LIMIT`` seconds at most, a hanging reply ends
when the server stops, and at most ``MAX_CONNECTIONS`` are served.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import socket
import socketserver
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from xml.sax.saxutils import escape

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
UPNP_CONTROL = "urn:schemas-upnp-org:control-1-0"

#: The longest any one connection is kept open, hanging replies included.
CONNECTION_LIMIT = 30.0
MAX_CONNECTIONS = 2000
MAX_REQUEST = 1 << 16

CONTROL_PATH = "/ctl/IPConn"
DESCRIPTION_PATH = "/rootDesc.xml"


def service_type(version: int, kind: str = "WANIPConnection") -> str:
    return f"urn:schemas-upnp-org:service:{kind}:{version}"


def root_description(
    version: int = 1,
    *,
    control_url: str = CONTROL_PATH,
    url_base: str | None = None,
    kind: str = "WANIPConnection",
    wan_service: bool = True,
) -> bytes:
    """A root description of an IGD with one WAN connection service."""
    base = f"<URLBase>{escape(url_base)}</URLBase>" if url_base is not None else ""
    wan = (
        "<service>"
        f"<serviceType>{service_type(version, kind)}</serviceType>"
        f"<serviceId>urn:upnp-org:serviceId:{kind}1</serviceId>"
        "<SCPDURL>/scpd.xml</SCPDURL>"
        f"<controlURL>{escape(control_url)}</controlURL>"
        "<eventSubURL>/evt/IPConn</eventSubURL>"
        "</service>"
        if wan_service
        else ""
    )
    return (
        '<?xml version="1.0"?>\r\n'
        '<root xmlns="urn:schemas-upnp-org:device-1-0">'
        "<specVersion><major>1</major><minor>0</minor></specVersion>"
        f"{base}"
        "<device>"
        "<deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:"
        f"{version}</deviceType>"
        "<friendlyName>hostile test gateway</friendlyName>"
        "<deviceList><device>"
        f"<deviceType>urn:schemas-upnp-org:device:WANDevice:{version}</deviceType>"
        "<serviceList><service>"
        "<serviceType>urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1"
        "</serviceType>"
        "<serviceId>urn:upnp-org:serviceId:WANCommonIFC1</serviceId>"
        "<SCPDURL>/wancic.xml</SCPDURL>"
        "<controlURL>/ctl/CmnIfCfg</controlURL>"
        "<eventSubURL>/evt/CmnIfCfg</eventSubURL>"
        "</service></serviceList>"
        "<deviceList><device>"
        "<deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:"
        f"{version}</deviceType>"
        f"<serviceList>{wan}</serviceList>"
        "</device></deviceList>"
        "</device></deviceList>"
        "</device></root>\r\n"
    ).encode()


# -- replies -------------------------------------------------------------------


def http(status: int, body: bytes, *, headers: dict[str, str] | None = None) -> bytes:
    """A whole HTTP/1.1 response; ``headers`` replace the default ones."""
    fields = {
        "Content-Type": 'text/xml; charset="utf-8"',
        "Content-Length": str(len(body)),
        "Connection": "close",
        "Server": "hostile/1.0 UPnP/1.1",
    }
    fields.update(headers or {})
    reason = {200: "OK", 500: "Internal Server Error"}.get(status, "Whatever")
    head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in fields.items() if v is not None
    )
    return head.encode() + b"\r\n" + body


def envelope(inner: str) -> bytes:
    return (
        '<?xml version="1.0"?>\r\n'
        f'<s:Envelope xmlns:s="{SOAP_ENV}" '
        's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">'
        f"<s:Body>{inner}</s:Body></s:Envelope>\r\n"
    ).encode()


def success_body(action: str, service: str, values: dict[str, str]) -> bytes:
    args = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in values.items())
    return envelope(
        f'<u:{action}Response xmlns:u="{service}">{args}</u:{action}Response>'
    )


def fault_body(code: int | str, description: str = "Error") -> bytes:
    return envelope(
        "<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError"
        f'</faultstring><detail><UPnPError xmlns="{UPNP_CONTROL}">'
        f"<errorCode>{code}</errorCode>"
        f"<errorDescription>{escape(description)}</errorDescription>"
        "</UPnPError></detail></s:Fault>"
    )


# Steps of a scripted reply: what the connection does, in order.
Send = collections.namedtuple("Send", "data")
Drip = collections.namedtuple("Drip", "data interval")
Hang = collections.namedtuple("Hang", "")
Close = collections.namedtuple("Close", "")


@dataclasses.dataclass
class Script:
    """How the next ``times`` calls of one action go.

    ``apply``: whether the action changes the table (as the gateway would
    have done before its reply went wrong). ``reply`` turns the correct
    reply (whole HTTP bytes) into the steps actually taken on the wire.
    """

    apply: bool
    reply: Callable[[bytes], list]
    times: int | None = 1  # None: every call from now on


@dataclasses.dataclass(frozen=True)
class Entry:
    client: str
    internal_port: int
    description: str
    lease: int
    enabled: str = "1"


@dataclasses.dataclass(frozen=True)
class Call:
    action: str
    arguments: dict[str, str]
    path: str


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(5.0)
        igd = self.server.igd
        try:
            method, path, headers, body = _read_request(sock)
        except (OSError, ValueError):
            return

        if method == "GET":
            steps = igd.get(path)
        elif method == "POST":
            steps = igd.post(path, headers, body)
        else:
            steps = [Send(http(405, b""))]
        self._play(sock, steps)

    def _play(self, sock: socket.socket, steps: list) -> None:
        stop = self.server.stopping
        end = time.monotonic() + CONNECTION_LIMIT
        try:
            for step in steps:
                if isinstance(step, Send):
                    sock.sendall(step.data)
                elif isinstance(step, Drip):
                    for i in range(len(step.data)):
                        if stop.wait(step.interval) or time.monotonic() > end:
                            return
                        sock.sendall(step.data[i : i + 1])
                elif isinstance(step, Hang):
                    stop.wait(max(0.0, end - time.monotonic()))
                    return
                elif isinstance(step, Close):
                    return
        except OSError:
            return
        finally:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _read_request(sock: socket.socket) -> tuple[str, str, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk or len(data) > MAX_REQUEST:
            raise ValueError("incomplete request")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = min(int(headers.get("content-length", "0")), MAX_REQUEST)
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            break
        body += chunk
    return method, path, headers, body


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, igd: HostileIGD) -> None:
        self.igd = igd
        self.stopping = threading.Event()
        self.served = 0
        super().__init__(("127.0.0.1", 0), _Handler)

    def verify_request(self, request, client_address) -> bool:
        self.served += 1
        return self.served <= MAX_CONNECTIONS


class HostileIGD:
    """The server; use it as a context manager."""

    def __init__(self, version: int = 1, *, external_ip: str = "203.0.113.7"):
        self.version = version
        self.service = service_type(version)
        self.external_ip = external_ip
        self.connection_status = "Connected"
        self.permanent_only = False
        self.max_lease: int | None = None
        self.table: dict[tuple[int, str], Entry] = {}
        self.events: list[tuple[str, int, str]] = []
        self.calls: list[Call] = []
        self.gets: list[str] = []
        self.documents: dict[str, bytes] = {}
        self._scripts: dict[str, collections.deque[Script]] = {}
        self._lock = threading.Lock()
        self._server = _Server(self)
        self.description = root_description(version)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="hostile-igd",
            daemon=True,
        )

    def __enter__(self) -> HostileIGD:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- what tests use --------------------------------------------------------

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def location(self) -> str:
        return f"http://127.0.0.1:{self.port}{DESCRIPTION_PATH}"

    @property
    def description(self) -> bytes:
        return self.documents[DESCRIPTION_PATH]

    @description.setter
    def description(self, document: bytes) -> None:
        self.documents[DESCRIPTION_PATH] = document

    def hold(
        self,
        port: int,
        protocol: str,
        client: str,
        internal_port: int,
        description: str = "someone else",
        lease: int = 0,
    ) -> None:
        """Put another host's mapping in the table (not an event)."""
        with self._lock:
            self.table[(port, protocol.upper())] = Entry(
                client, internal_port, description, lease
            )

    def script(
        self,
        action: str,
        *,
        apply: bool = True,
        reply: Callable[[bytes], list] | None = None,
        times: int | None = 1,
    ) -> None:
        """Bend the next ``times`` calls of ``action``."""
        with self._lock:
            self._scripts.setdefault(action, collections.deque()).append(
                Script(apply, reply or (lambda raw: [Send(raw)]), times)
            )

    def answer(
        self, action: str, raw: bytes, *, apply: bool = False, times: int | None = 1
    ) -> None:
        """Answer ``action`` with exactly ``raw`` bytes, then close."""
        self.script(action, apply=apply, reply=lambda _: [Send(raw)], times=times)

    def fail(self, action: str, code: int | str, *, times: int | None = 1) -> None:
        """Refuse ``action`` with UPnP error ``code``, changing nothing."""
        self.answer(action, http(500, fault_body(code)), times=times)

    def actions(self) -> list[str]:
        with self._lock:
            return [c.action for c in self.calls]

    def leaked(self, before: dict | None = None) -> dict:
        """Mappings in the table that were not there at ``before``."""
        with self._lock:
            return {k: v for k, v in self.table.items() if k not in (before or {})}

    # -- HTTP ------------------------------------------------------------------

    def get(self, path: str) -> list:
        with self._lock:
            self.gets.append(path)
            document = self.documents.get(path)
        if document is None:
            return [Send(http(404, b"not found\n", headers={"Content-Type": None}))]
        return [Send(http(200, document))]

    def post(self, path: str, headers: dict[str, str], body: bytes) -> list:
        action = headers.get("soapaction", "").strip('"').rpartition("#")[2]
        try:
            arguments = _arguments(body)
        except ET.ParseError:
            arguments = {}
        with self._lock:
            self.calls.append(Call(action, arguments, path))
            script = self._next_script(action)
            apply = script.apply if script else True
            status, reply_body = self._perform(action, arguments, apply)
            raw = http(status, reply_body)
        if script is None:
            return [Send(raw)]
        return script.reply(raw)

    def _next_script(self, action: str) -> Script | None:
        queue = self._scripts.get(action)
        if not queue:
            return None
        script = queue[0]
        if script.times is not None:
            script.times -= 1
            if script.times <= 0:
                queue.popleft()
        return script

    # -- the WANIPConnection service ------------------------------------------

    def _perform(
        self, action: str, args: dict[str, str], apply: bool
    ) -> tuple[int, bytes]:
        try:
            handler = getattr(self, f"_do_{action}")
        except AttributeError:
            return 500, fault_body(401, "Invalid Action")
        try:
            result = handler(args, apply)
        except _Fault as fault:
            return 500, fault_body(fault.code, fault.text)
        return 200, success_body(action, self.service, result)

    def _key(self, args: dict[str, str]) -> tuple[int, str]:
        try:
            port = int(args.get("NewExternalPort", ""))
        except ValueError:
            raise _Fault(402, "Invalid Args") from None
        protocol = args.get("NewProtocol", "").upper()
        if protocol not in ("TCP", "UDP"):
            raise _Fault(402, "Invalid Args")
        return port, protocol

    def _entry(self, args: dict[str, str]) -> Entry:
        lease = int(args.get("NewLeaseDuration", "0") or 0)
        if self.permanent_only and lease:
            raise _Fault(725, "OnlyPermanentLeasesSupported")
        if self.max_lease is not None and (lease == 0 or lease > self.max_lease):
            lease = self.max_lease
        return Entry(
            args.get("NewInternalClient", ""),
            int(args.get("NewInternalPort", "0")),
            args.get("NewPortMappingDescription", ""),
            lease,
        )

    def _store(self, key: tuple[int, str], entry: Entry, apply: bool) -> None:
        if apply:
            self.table[key] = entry
            self.events.append(("add", *key))

    def _do_AddPortMapping(self, args, apply):
        key = self._key(args)
        entry = self._entry(args)
        held = self.table.get(key)
        if held is not None and (held.client, held.internal_port) != (
            entry.client,
            entry.internal_port,
        ):
            raise _Fault(718, "ConflictInMappingEntry")
        self._store(key, entry, apply)
        return {}

    def _do_AddAnyPortMapping(self, args, apply):
        if self.version < 2:
            raise _Fault(401, "Invalid Action")
        port, protocol = self._key(args)
        entry = self._entry(args)
        while (port, protocol) in self.table and port < 65535:
            port += 1
        self._store((port, protocol), entry, apply)
        return {"NewReservedPort": str(port)}

    def _do_DeletePortMapping(self, args, apply):
        key = self._key(args)
        if key not in self.table:
            raise _Fault(714, "NoSuchEntryInArray")
        if apply:
            del self.table[key]
            self.events.append(("delete", *key))
        return {}

    def _do_GetSpecificPortMappingEntry(self, args, apply):
        entry = self.table.get(self._key(args))
        if entry is None:
            raise _Fault(714, "NoSuchEntryInArray")
        return {
            "NewInternalPort": str(entry.internal_port),
            "NewInternalClient": entry.client,
            "NewEnabled": entry.enabled,
            "NewPortMappingDescription": entry.description,
            "NewLeaseDuration": str(entry.lease),
        }

    def _do_GetGenericPortMappingEntry(self, args, apply):
        try:
            index = int(args.get("NewPortMappingIndex", ""))
        except ValueError:
            raise _Fault(402, "Invalid Args") from None
        items = sorted(self.table.items())
        if not 0 <= index < len(items):
            raise _Fault(713, "SpecifiedArrayIndexInvalid")
        (port, protocol), entry = items[index]
        return {
            "NewRemoteHost": "",
            "NewExternalPort": str(port),
            "NewProtocol": protocol,
            "NewInternalPort": str(entry.internal_port),
            "NewInternalClient": entry.client,
            "NewEnabled": entry.enabled,
            "NewPortMappingDescription": entry.description,
            "NewLeaseDuration": str(entry.lease),
        }

    def _do_GetExternalIPAddress(self, args, apply):
        return {"NewExternalIPAddress": self.external_ip}

    def _do_GetStatusInfo(self, args, apply):
        return {
            "NewConnectionStatus": self.connection_status,
            "NewLastConnectionError": "ERROR_NONE",
            "NewUptime": "1234",
        }


class _Fault(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(code, text)
        self.code = code
        self.text = text


def _arguments(body: bytes) -> dict[str, str]:
    root = ET.fromstring(body)
    soap_body = root.find(f"{{{SOAP_ENV}}}Body")
    if soap_body is None or len(soap_body) != 1:
        return {}
    return {child.tag: child.text or "" for child in soap_body[0]}
