"""GetListOfPortMappings must return the descriptions the gateway stored.

NewPortListing is an XML document carried inside the SOAP reply. Gateways
send it either in a CDATA section or as escaped text; in both, the values
inside the document are escaped once more. The library passed the escaped
text to the listing parser as it was, finding no entries at all, and never
decoded the values, so "Tom & Jerry" came back as "Tom &amp; Jerry".
"""

from __future__ import annotations

from xml.sax.saxutils import escape

import pytest
from miniupnpc_support import CLIENT_SOURCES, SoapResponder, build, run, soap_reply

ENTRIES = [
    ("TCP", 4321, "127.0.0.1", 4321, "", "Tom & Jerry <x>"),
    ("TCP", 4322, "127.0.0.1", 22, "", "caf\u00e9 \"quoted\" 'single'"),
]


def listing() -> str:
    """The PortMappingList document of the IGD:2 specification."""
    entries = "".join(
        "<p:PortMappingEntry>"
        f"<p:NewRemoteHost>{escape(host)}</p:NewRemoteHost>"
        f"<p:NewExternalPort>{ext}</p:NewExternalPort>"
        f"<p:NewProtocol>{proto}</p:NewProtocol>"
        f"<p:NewInternalPort>{port}</p:NewInternalPort>"
        f"<p:NewInternalClient>{client}</p:NewInternalClient>"
        "<p:NewEnabled>1</p:NewEnabled>"
        f"<p:NewDescription>{escape(desc)}</p:NewDescription>"
        "<p:NewLeaseTime>0</p:NewLeaseTime>"
        "</p:PortMappingEntry>"
        for proto, ext, client, port, host, desc in ENTRIES
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<p:PortMappingList xmlns:p="urn:schemas-upnp-org:gw:WANIPConnection">'
        f"{entries}</p:PortMappingList>"
    )


CARRIERS = {
    "cdata": f"<![CDATA[{listing()}]]>",
    "escaped": escape(listing()),
    "escaped-after-blank": "\n  " + escape(listing()),
}


@pytest.fixture(scope="module")
def soap(cc_module):
    return build(cc_module, "miniupnpc_soap.c", CLIENT_SOURCES)


@pytest.mark.parametrize("carrier", sorted(CARRIERS))
def test_listing_round_trip(soap, carrier):
    action = "GetListOfPortMappings"
    reply = soap_reply(action, {"NewPortListing": CARRIERS[carrier]})
    with SoapResponder({action: reply}) as srv:
        proc = run(soap, srv.url, "list")

    assert proc.returncode == 0, proc.stdout + proc.stderr
    entries = sorted(
        tuple(line.removeprefix("entry=").split("|"))
        for line in proc.stdout.splitlines()
        if line.startswith("entry=")
    )
    assert entries == sorted(tuple(str(v) for v in entry) for entry in ENTRIES), (
        proc.stdout
    )
