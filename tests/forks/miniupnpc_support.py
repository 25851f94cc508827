"""Shared pieces of the miniupnpc fork tests.

Builds harnesses against the library sources and plays a small UPnP control
point's peer on 127.0.0.1: an HTTP server that records each SOAP request and
answers with a prepared body. Nothing here talks to any other address.
"""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

LIB = "miniupnpc"
ROOT = Path(__file__).resolve().parents[2]

# The library sources a client harness links, as laid out in the release.
CLIENT_SOURCES = [
    "src/addr_is_reserved.c",
    "src/connecthostport.c",
    "src/igd_desc_parse.c",
    "src/minisoap.c",
    "src/minissdpc.c",
    "src/miniupnpc.c",
    "src/miniwget.c",
    "src/minixml.c",
    "src/portlistingparse.c",
    "src/receivedata.c",
    "src/upnpcommands.c",
    "src/upnpdev.c",
    "src/upnperrors.c",
    "src/upnpreplyparse.c",
]

# The macros upstream's own Makefile and CMakeLists.txt build with.
DEFINES = ["MINIUPNPC_SET_SOCKET_TIMEOUT", "MINIUPNPC_GET_SRC_ADDR"]

# The release generates this header at build time; the harnesses need one.
STRINGS_H = """\
#ifndef MINIUPNPCSTRINGS_H_INCLUDED
#define MINIUPNPCSTRINGS_H_INCLUDED
#define OS_STRING "Linux"
#define MINIUPNPC_VERSION_STRING "2.3.3"
#define UPNP_VERSION_STRING "UPnP/1.1"
#endif
"""

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SERVICE = "urn:schemas-upnp-org:service:WANIPConnection:1"

TIMEOUT = 60


def tree() -> Path:
    """The tree the harnesses are built from (see conftest.py)."""
    override = os.environ.get("NATFWD_FORK_TREE_MINIUPNPC")
    return Path(override) if override else ROOT / "vendor" / LIB / "tree"


def build(cc, harness: str, sources=(), **kwargs) -> Path:
    """Compile ``harness`` with the given library sources of the fork."""
    gen = cc.workdir / "gen"
    gen.mkdir(exist_ok=True)
    (gen / "miniupnpcstrings.h").write_text(STRINGS_H)

    extra = [f"-I{gen}", *kwargs.pop("extra", ())]
    defines = [*DEFINES, *kwargs.pop("defines", ())]
    return cc.build(
        LIB,
        harness,
        list(sources),
        include_dirs=["include", "src"],
        defines=defines,
        extra=extra,
        **kwargs,
    )


def run(exe: Path, *args: str, timeout: float = TIMEOUT):
    return subprocess.run(
        [str(exe), *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="backslashreplace",
        timeout=timeout,
        check=False,
    )


def soap_reply(action: str, values: dict[str, str]) -> bytes:
    """A SOAP response body; ``values`` must already be escaped XML text."""
    args = "".join(f"<{k}>{v}</{k}>" for k, v in values.items())
    return (
        f'<?xml version="1.0"?>\r\n'
        f'<s:Envelope xmlns:s="{SOAP_ENV}" '
        f's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">'
        f"<s:Body><u:{action}Response "
        f'xmlns:u="{SERVICE}">{args}</u:{action}Response>'
        f"</s:Body></s:Envelope>\r\n"
    ).encode()


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class SoapResponder:
    """An HTTP server on 127.0.0.1 answering each SOAP action it knows."""

    replies: dict[str, bytes] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    def __enter__(self) -> SoapResponder:
        responder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 10

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                responder.requests.append(
                    Request(self.path, dict(self.headers.items()), body)
                )
                action = self.headers.get("SOAPAction", "").strip('"')
                reply = responder.replies.get(action.rpartition("#")[2])
                if reply is None:
                    self.send_error(500)
                    return
                self.send_response(200)
                self.send_header("Content-Type", 'text/xml; charset="utf-8"')
                self.send_header("Content-Length", str(len(reply)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}
        )
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/ctl/IPConn"

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


class RawResponder:
    """A server on 127.0.0.1 that answers each request with fixed bytes.

    For HTTP framing tests: the bytes go out exactly as given, then the
    connection is closed. Serves at most ``count`` connections.
    """

    def __init__(self, response: bytes, count: int = 1) -> None:
        self.response = response
        self.count = count
        self.requests: list[bytes] = []

    def __enter__(self) -> RawResponder:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(30)
        self._thread = threading.Thread(target=self._serve)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        host, port = self._sock.getsockname()[:2]
        return f"http://{host}:{port}/desc.xml"

    def _serve(self) -> None:
        for _ in range(self.count):
            try:
                conn, _addr = self._sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                request = b""
                try:
                    while b"\r\n\r\n" not in request:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        request += chunk
                    conn.sendall(self.response)
                except OSError:
                    pass  # the client gave up: the test sees what it printed
                self.requests.append(request)

    def __exit__(self, *exc) -> None:
        self._sock.close()
        self._thread.join(timeout=40)


def soap_fault(code: str | None) -> bytes:
    """A SOAP fault as UPnP sends it; ``code`` None leaves out errorCode."""
    error = "" if code is None else f"<errorCode>{code}</errorCode>"
    return (
        f'<?xml version="1.0"?>\r\n'
        f'<s:Envelope xmlns:s="{SOAP_ENV}" '
        f's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">'
        f"<s:Body><s:Fault><faultcode>s:Client</faultcode>"
        f"<faultstring>UPnPError</faultstring><detail>"
        f'<UPnPError xmlns="urn:schemas-upnp-org:control-1-0">{error}'
        f"<errorDescription>Refused</errorDescription></UPnPError>"
        f"</detail></s:Fault></s:Body></s:Envelope>\r\n"
    ).encode()


def http_response(body: bytes, status: str = "200 OK") -> bytes:
    """A whole HTTP/1.1 response with ``body``, for RawResponder."""
    return (
        b'HTTP/1.1 %s\r\nContent-Type: text/xml; charset="utf-8"\r\n'
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
        % (status.encode(), len(body), body)
    )


def reply_code(exe: Path, action: str, response: bytes) -> int:
    """What the replies harness's *action* returns when the gateway
    answers it with the raw HTTP *response*."""
    with RawResponder(response) as srv:
        proc = run(exe, srv.url, action)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return int(proc.stdout.splitlines()[-1].removeprefix("ret="))
