"""The errorCode of a SOAP fault is never read as success.

The action functions took the errorCode with sscanf("%d") and returned the
number: a fault with errorCode 0 made UPNP_AddPortMapping() report success,
a negative one came out as one of the library's own codes, and "718abc" as
718. A UPnP error code is a positive number; anything else is
UPNPCOMMAND_UNKNOWN_ERROR, since the gateway says the action failed but not
why.
"""

from __future__ import annotations

import pytest
from miniupnpc_support import (
    http_response,
    reply_code,
    soap_fault,
)

UPNPCOMMAND_UNKNOWN_ERROR = -1


@pytest.mark.parametrize(
    "code", ["0", "00", "-3", "-1", "0x2C6", "718abc", "abc", " ", "+0"]
)
@pytest.mark.parametrize("action", ["add", "delete", "extip", "generic"])
def test_unusable_code_is_an_error(replies, action, code):
    response = http_response(soap_fault(code), "500 Internal Server Error")

    assert reply_code(replies, action, response) == UPNPCOMMAND_UNKNOWN_ERROR


@pytest.mark.parametrize(
    ("code", "expected"),
    [("718", 718), ("402", 402), (" 606 ", 606), ("\n  714\n", 714)],
)
def test_error_code_is_returned(replies, code, expected):
    response = http_response(soap_fault(code), "500 Internal Server Error")

    assert reply_code(replies, "add", response) == expected
