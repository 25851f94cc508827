"""A gateway's HTTP side on 127.0.0.1: root descriptions and a SOAP replayer.

``LoopbackIGD`` serves the root descriptions in ``tests/fixtures/igd/`` by GET
and answers every SOAP POST with the next canned reply queued for its action,
recording each request so a test can read back what the library sent. An
action with nothing queued gets HTTP 500 with UPnP error 401 (invalid action),
as a real gateway would, so an unexpected call shows up as a failed result
rather than a hang.
"""

from __future__ import annotations

import collections
import dataclasses
import http.server
import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from xml.sax.saxutils import escape

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "igd"

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP_ENCODING = "http://schemas.xmlsoap.org/soap/encoding/"
UPNP_CONTROL = "urn:schemas-upnp-org:control-1-0"

#: How long one connection may sit idle before the server drops it.
REQUEST_TIMEOUT = 5.0


@dataclasses.dataclass(frozen=True)
class SoapRequest:
    path: str
    soap_action: str
    body: bytes

    @property
    def action(self) -> str:
        return self.soap_action.strip('"').rpartition("#")[2]

    @property
    def service_type(self) -> str:
        return self.soap_action.strip('"').rpartition("#")[0]

    def arguments(self) -> dict[str, str]:
        """The action's arguments, by name, as the gateway would read them."""
        root = ET.fromstring(self.body)
        body = root.find(f"{{{SOAP_ENV}}}Body")
        if body is None or len(body) != 1:
            raise ValueError(f"no single action in SOAP body {self.body!r}")
        return {child.tag: child.text or "" for child in body[0]}


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    body: bytes


def envelope(inner: str) -> bytes:
    return (
        '<?xml version="1.0"?>\r\n'
        f'<s:Envelope xmlns:s="{SOAP_ENV}" s:encodingStyle="{SOAP_ENCODING}">'
        f"<s:Body>{inner}</s:Body></s:Envelope>\r\n"
    ).encode()


def success(action: str, service_type: str, values: dict[str, str]) -> Reply:
    """A 200 reply to ``action`` carrying ``values`` as output arguments."""
    args = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in values.items())
    inner = f'<u:{action}Response xmlns:u="{service_type}">{args}</u:{action}Response>'
    return Reply(200, envelope(inner))


def fault(code: int, description: str) -> Reply:
    """A 500 reply carrying UPnP error ``code``, shaped like miniupnpd's."""
    inner = (
        "<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError"
        f'</faultstring><detail><UPnPError xmlns="{UPNP_CONTROL}">'
        f"<errorCode>{code}</errorCode>"
        f"<errorDescription>{escape(description)}</errorDescription>"
        "</UPnPError></detail></s:Fault>"
    )
    return Reply(500, envelope(inner))


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    timeout = REQUEST_TIMEOUT
    server_version = "natfwd-test-igd/1.0 UPnP/1.1"

    def do_GET(self) -> None:
        name = self.path.lstrip("/")
        document = self.server.documents.get(name)
        if document is None:
            self._send(404, b"not found\n", "text/plain")
            return
        self._send(200, document, 'text/xml; charset="utf-8"')

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        request = SoapRequest(
            path=self.path,
            soap_action=self.headers.get("SOAPAction", ""),
            body=self.rfile.read(length),
        )
        reply = self.server.take_reply(request)
        self._send(reply.status, reply.body, 'text/xml; charset="utf-8"')

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output clean; requests are recorded instead."""


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.documents = {
            path.name: path.read_bytes() for path in FIXTURES.glob("*.xml")
        }
        self.requests: list[SoapRequest] = []
        self.replies: dict[str, collections.deque[Reply]] = {}
        self.lock = threading.Lock()

    def take_reply(self, request: SoapRequest) -> Reply:
        with self.lock:
            self.requests.append(request)
            queue = self.replies.get(request.action)
            if queue:
                return queue.popleft()
        return fault(401, "Invalid Action")


class LoopbackIGD:
    """Context manager running the server on a thread, on 127.0.0.1."""

    def __init__(self) -> None:
        self._server = _Server()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="loopback-igd",
            daemon=True,
        )

    def __enter__(self) -> LoopbackIGD:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    @property
    def requests(self) -> list[SoapRequest]:
        with self._server.lock:
            return list(self._server.requests)

    def queue(self, action: str, *replies: Reply) -> None:
        """Answer the next calls of ``action`` with ``replies``, in order."""
        with self._server.lock:
            self._server.replies.setdefault(action, collections.deque()).extend(replies)
