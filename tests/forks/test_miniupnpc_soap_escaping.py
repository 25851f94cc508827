"""SOAP argument values must reach the gateway as text, and come back as text.

A port mapping description is free text chosen by the user. Sent unescaped,
``Tom & Jerry <x>`` makes the request malformed XML, and a crafted one can
close its element and add arguments of its own. Coming back, a gateway
escapes the same characters, and the caller must see the text it stored.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from miniupnpc_support import CLIENT_SOURCES, SoapResponder, build, run, soap_reply

HOSTILE = [
    "Tom & Jerry <x>",
    "a\"b'c>d",
    "&amp; stays &amp;",
    (
        "x</NewPortMappingDescription>"
        "<NewInternalClient>127.0.0.66</NewInternalClient>"
        "<NewPortMappingDescription>y"
    ),
]


def arguments(body: bytes) -> dict[str, str]:
    root = ET.fromstring(body)
    (action,) = root.find("{http://schemas.xmlsoap.org/soap/envelope/}Body")
    return {child.tag: child.text or "" for child in action}


@pytest.fixture(scope="module")
def soap(cc_module):
    return build(cc_module, "miniupnpc_soap.c", CLIENT_SOURCES)


@pytest.mark.parametrize("desc", HOSTILE)
def test_description_is_escaped_in_request(soap, desc):
    with SoapResponder({"AddPortMapping": soap_reply("AddPortMapping", {})}) as srv:
        proc = run(soap, srv.url, "add", desc)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    (request,) = srv.requests
    try:
        args = arguments(request.body)
    except ET.ParseError as exc:
        pytest.fail(f"request body is not XML ({exc}): {request.body!r}")
    assert args["NewPortMappingDescription"] == desc
    assert args["NewInternalClient"] == "127.0.0.1"
    assert len(args) == 8


def escape(text: str) -> str:
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&apos;")
    )


REPLIES = [
    (escape("Tom & Jerry <x>"), "Tom & Jerry <x>"),
    (escape("a\"b'c>d"), "a\"b'c>d"),
    ("&#65;&#x42;&#x63;&#233;", "ABc\u00e9"),
    ("caf&#xE9; &#8364;5 &#x1F600;", "caf\u00e9 \u20ac5 \U0001f600"),
    # Not references: left as the gateway sent them.
    (
        "&bogus; & &#; &#x; &#0; &#x110000; &amp",
        "&bogus; & &#; &#x; &#0; &#x110000; &amp",
    ),
]


@pytest.mark.parametrize("verb", ["specific", "generic"])
@pytest.mark.parametrize(("sent", "expected"), REPLIES)
def test_description_is_unescaped_in_reply(soap, verb, sent, expected):
    action = {
        "specific": "GetSpecificPortMappingEntry",
        "generic": "GetGenericPortMappingEntry",
    }[verb]
    values = {
        "NewRemoteHost": "",
        "NewExternalPort": "4321",
        "NewProtocol": "TCP",
        "NewInternalPort": "4321",
        "NewInternalClient": "127.0.0.1",
        "NewEnabled": "1",
        "NewPortMappingDescription": sent,
        "NewLeaseDuration": "0",
    }
    with SoapResponder({action: soap_reply(action, values)}) as srv:
        proc = run(soap, srv.url, verb)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"desc={expected}\n" in proc.stdout
    assert "client=127.0.0.1\n" in proc.stdout
