"""A SOAP action succeeds only when the gateway sends that action's response.

simpleUPnPcommand() dropped the HTTP status, and the action functions
looked for nothing but an errorCode in the body: AddPortMapping,
DeletePortMapping and the other actions without a return value reported
success for an HTML error page with status 500, for a body that is not XML,
for a truncated envelope and for the response of another action. A reply
is now the action's response (success), a SOAP fault (its error code), or
invalid.
"""

from __future__ import annotations

import pytest
from miniupnpc_support import (
    http_response,
    reply_code,
    soap_fault,
    soap_reply,
)

UPNPCOMMAND_SUCCESS = 0
UPNPCOMMAND_UNKNOWN_ERROR = -1
UPNPCOMMAND_HTTP_ERROR = -3
UPNPCOMMAND_INVALID_RESPONSE = -4

ERROR_500 = "500 Internal Server Error"
HTML = b"<html><head><title>500</title></head><body>Oops</body></html>"
ENVELOPE = b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">'


# Each names the action it answers as "Action", which the test replaces.
NOT_THE_RESPONSE = {
    # name: (status, body, expected code)
    "500-html": (ERROR_500, HTML, UPNPCOMMAND_HTTP_ERROR),
    "404-empty": ("404 Not Found", b"", UPNPCOMMAND_HTTP_ERROR),
    "500-response": (
        ERROR_500,
        soap_reply("Action", {}),
        UPNPCOMMAND_HTTP_ERROR,
    ),
    "200-hello": ("200 OK", b"hello", UPNPCOMMAND_INVALID_RESPONSE),
    "200-html": ("200 OK", HTML, UPNPCOMMAND_INVALID_RESPONSE),
    "200-other-action": (
        "200 OK",
        soap_reply("OtherAction", {}),
        UPNPCOMMAND_INVALID_RESPONSE,
    ),
    "200-truncated": (
        "200 OK",
        soap_reply("Action", {})[:-30],
        UPNPCOMMAND_INVALID_RESPONSE,
    ),
    "200-empty-body": (
        "200 OK",
        ENVELOPE + b"<s:Body></s:Body></s:Envelope>",
        UPNPCOMMAND_INVALID_RESPONSE,
    ),
    "200-no-envelope": (
        "200 OK",
        b"<u:ActionResponse></u:ActionResponse>",
        UPNPCOMMAND_INVALID_RESPONSE,
    ),
    "500-fault-without-code": (
        ERROR_500,
        soap_fault(None),
        UPNPCOMMAND_UNKNOWN_ERROR,
    ),
}

ACTIONS = {
    "add": "AddPortMapping",
    "delete": "DeletePortMapping",
    "delrange": "DeletePortMappingRange",
}


@pytest.mark.parametrize("name", sorted(NOT_THE_RESPONSE))
@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_reply_that_is_not_the_response(replies, action, name):
    status, body, expected = NOT_THE_RESPONSE[name]
    body = body.replace(b"Action", ACTIONS[action].encode())

    assert reply_code(replies, action, http_response(body, status)) == expected


GOOD = {
    "add": soap_reply("AddPortMapping", {}),
    "delete": soap_reply("DeletePortMapping", {}),
    "delrange": soap_reply("DeletePortMappingRange", {}),
    "anyadd": soap_reply("AddAnyPortMapping", {"NewReservedPort": "4321"}),
    "extip": soap_reply("GetExternalIPAddress", {"NewExternalIPAddress": "192.0.2.7"}),
    "count": soap_reply(
        "GetPortMappingNumberOfEntries", {"NewPortMappingNumberOfEntries": "3"}
    ),
}


@pytest.mark.parametrize("action", sorted(GOOD))
def test_response_is_success(replies, action):
    assert reply_code(replies, action, http_response(GOOD[action])) == 0


FORMS = {
    "other-prefixes": (
        b'<?xml version="1.0"?>\r\n<SOAP-ENV:Envelope xmlns:SOAP-ENV="x">'
        b'<SOAP-ENV:Body><m:AddPortMappingResponse xmlns:m="y">'
        b"</m:AddPortMappingResponse></SOAP-ENV:Body></SOAP-ENV:Envelope>"
    ),
    "no-prefix-self-closing": (
        b'<Envelope xmlns="x"><Body><AddPortMappingResponse/></Body></Envelope>'
    ),
    "header-and-spaces": (
        b'<s:Envelope xmlns:s="x" ><s:Header></s:Header><s:Body >'
        b'<u:AddPortMappingResponse xmlns:u="y" /></s:Body ></s:Envelope >\r\n'
    ),
}


@pytest.mark.parametrize("name", sorted(FORMS))
def test_response_forms_are_success(replies, name):
    response = http_response(FORMS[name])

    assert reply_code(replies, "add", response) == UPNPCOMMAND_SUCCESS


@pytest.mark.parametrize("status", [ERROR_500, "200 OK"])
@pytest.mark.parametrize("action", ["add", "delete", "extip", "specific"])
def test_fault_gives_its_code(replies, action, status):
    response = http_response(soap_fault("718"), status)

    assert reply_code(replies, action, response) == 718
