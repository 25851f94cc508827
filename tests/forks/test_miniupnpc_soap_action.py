"""The SOAPAction header must name the action called, or nothing is sent.

simpleUPnPcommand() formats "<service type>#<action>" into a 128-byte buffer
and did not check for truncation. The service type comes from the gateway's
description (up to 127 bytes), so a long one cut the action name short:
with a 109-byte service type, DeletePortMappingRange went out as
DeletePortMapping, with the arguments of the other action.
"""

from __future__ import annotations

import pytest
from miniupnpc_support import CLIENT_SOURCES, SoapResponder, build, run, soap_reply

UPNPCOMMAND_HTTP_ERROR = -3
PREFIX = "urn:schemas-upnp-org:service:WANIPConnection:"


def service_type(length: int) -> str:
    return PREFIX + "2" * (length - len(PREFIX))


@pytest.fixture(scope="module")
def soap(cc_module):
    return build(cc_module, "miniupnpc_soap.c", CLIENT_SOURCES)


@pytest.mark.parametrize("length", [46, 100, 104])
def test_action_is_named_in_full(soap, length):
    service = service_type(length)
    reply = soap_reply("DeletePortMappingRange", {})
    with SoapResponder({"DeletePortMappingRange": reply}) as srv:
        proc = run(soap, srv.url, "delrange", service)

    assert proc.stdout == "ret=0\n", proc.stdout + proc.stderr
    (request,) = srv.requests
    assert request.headers["SOAPAction"] == f'"{service}#DeletePortMappingRange"'


@pytest.mark.parametrize("length", [105, 109, 127])
def test_overlong_action_is_not_sent(soap, length):
    service = service_type(length)
    replies = {
        name: soap_reply(name, {})
        for name in ("DeletePortMappingRange", "DeletePortMapping", "")
    }
    with SoapResponder(replies) as srv:
        proc = run(soap, srv.url, "delrange", service)

    assert proc.stdout == f"ret={UPNPCOMMAND_HTTP_ERROR}\n", proc.stderr
    assert [r.headers["SOAPAction"] for r in srv.requests] == []
