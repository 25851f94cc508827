"""The parsers must stop at the end of their buffer, wherever a document ends.

Replies come from the network, so a document may end anywhere: in a tag
name, after ``=``, inside a comment or CDATA section. The harness copies each
input into a heap block of exactly its size and runs every parser over it
under AddressSanitizer, which aborts on the first byte read past the end.
"""

from __future__ import annotations

import re

import pytest
from miniupnpc_support import CLIENT_SOURCES, build, run, tree

# Documents that end at the awkward places, beside the real ones from the
# release. Every prefix of each is tried too.
HOSTILE_XML = {
    "attribute-equals": b"<a b=",
    "attribute-equals-space": b"<a b= ",
    "attribute-open-quote": b"<a b='x",
    "attribute-no-value": b"<a b",
    "namespace-colon": b"<s:",
    "namespace-colon-nested": b"<s:Envelope><u:",
    "space-then-lt": b"<a> <",
    "text-then-lt": b"<a>text<",
    "comment": b"<!-- x -",
    "cdata": b"<a><![CDATA[xx]]",
    "cdata-open": b"<a><![CDATA[",
    "end-tag": b"<a></",
    "unquoted-value": b"<a b=c",
    "entity": b"<NewPortMappingDescription>a&#x4",
    "deep": b"<a>" * 64 + b"<b c='1' d=\"2\">x</b",
}

# A GetListOfPortMappings reply carrying its listing as escaped text.
LISTING = (
    b'<?xml version="1.0"?><s:Envelope><s:Body><u:GetListOfPortMappingsResponse>'
    b"<NewPortListing>&lt;p:PortMappingList&gt;&lt;p:PortMappingEntry&gt;"
    b"&lt;p:NewDescription&gt;a &amp;amp; b &amp;#233;&lt;/p:NewDescription&gt;"
    b"&lt;p:NewExternalPort&gt;5&lt;/p:NewExternalPort&gt;"
    b"&lt;/p:PortMappingEntry&gt;&lt;/p:PortMappingList&gt;</NewPortListing>"
    b"</u:GetListOfPortMappingsResponse></s:Body></s:Envelope>"
)
HOSTILE_XML["escaped-port-listing"] = LISTING

HTTP = {
    "chunked": (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        b'1a\r\n<a><b x="1">text</b></a>\r\n\r\n5;ext=1\r\nhello\r\n0\r\n\r\n'
    ),
    "content-length": (
        b"HTTP/1.0 200 OK\nContent-Length: 12\nServer: x\n\n<a>body</a>\nignored"
    ),
    "no-length": b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n<a>b</a>",
}


def minissdpd_reply(devices: list[tuple[bytes, bytes, bytes]]) -> bytes:
    """minissdpd's answer: a count, then each string after its length."""

    def field(value: bytes) -> bytes:
        assert len(value) < 128
        return bytes([len(value)]) + value

    body = b"".join(field(u) + field(s) + field(n) for u, s, n in devices)
    return bytes([len(devices)]) + body


SSDPD = {
    "two-devices": minissdpd_reply(
        [
            (
                b"http://127.0.0.1:1900/rootDesc.xml",
                b"urn:schemas-upnp-org:device:InternetGatewayDevice:1",
                b"uuid:1234::upnp:rootdevice",
            ),
            (b"http://127.0.0.1:5000/d.xml", b"ssdp:all", b""),
        ]
    ),
    "two-byte-length": b"\x01\x81\x48" + b"x" * 200 + b"\x02st\x03usn",
}


@pytest.fixture(scope="module")
def harness(cc_module):
    # At -O1 GCC folds away the very read that overruns "<a b=", hiding it
    # from ASan; without optimisation every access is checked.
    return build(cc_module, "miniupnpc_truncate.c", CLIENT_SOURCES, extra=["-O0"])


def release_documents() -> dict[str, bytes]:
    paths = sorted(tree().glob("testdesc/*.xml"))
    paths += sorted(tree().glob("testreplyparse/*.xml"))
    return {p.name: p.read_bytes() for p in paths}


def check(proc, expected_inputs: int | None = None) -> None:
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert "runtime error" not in output, output[-4000:]
    match = re.search(r"^ok (\d+) inputs$", proc.stdout, re.MULTILINE)
    assert match, output[-4000:]
    if expected_inputs is not None:
        assert int(match.group(1)) == expected_inputs


def run_prefixes(harness, tmp_path, mode: str, name: str, doc: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(doc)
    check(run(harness, mode, str(path)), expected_inputs=len(doc) + 1)


@pytest.mark.parametrize("name", sorted(HOSTILE_XML))
def test_xml_prefixes_hostile(harness, tmp_path, name):
    run_prefixes(harness, tmp_path, "xml", name, HOSTILE_XML[name])


def test_xml_prefixes_release_documents(harness, tmp_path):
    docs = release_documents()
    assert len(docs) >= 5, f"expected the release's test documents in {tree()}"

    for name, doc in docs.items():
        run_prefixes(harness, tmp_path, "xml", name, doc)


@pytest.mark.parametrize("name", sorted(HTTP))
def test_http_prefixes(harness, tmp_path, name):
    run_prefixes(harness, tmp_path, "http", name, HTTP[name])


@pytest.mark.parametrize("name", sorted(SSDPD))
def test_minissdpd_prefixes(harness, tmp_path, name):
    run_prefixes(harness, tmp_path, "ssdpd", name, SSDPD[name])


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_damage(harness, tmp_path, seed):
    paths = []
    docs = {**release_documents(), **HTTP, "listing.xml": LISTING}
    for name, doc in docs.items():
        path = tmp_path / name
        path.write_bytes(doc)
        paths.append(str(path))

    check(run(harness, "mutate", str(seed), "20000", *paths), 40000)
