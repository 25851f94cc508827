"""The *Ext getters refuse a zero buffer length.

UPNP_GetSpecificPortMappingEntryExt() and UPNP_GetGenericPortMappingEntryExt()
terminate the description and remote host at desc[desclen - 1] and
rHost[rHostlen - 1]: with a length of 0 they wrote one byte before the
caller's buffer whenever the gateway sent the value. A zero length given
with a buffer is now UPNPCOMMAND_INVALID_ARGS, and nothing is sent.
"""

from __future__ import annotations

import pytest
from miniupnpc_support import (
    SoapResponder,
    run,
    soap_reply,
)

UPNPCOMMAND_INVALID_ARGS = -2

ENTRY = {
    "NewRemoteHost": "192.0.2.9",
    "NewExternalPort": "4321",
    "NewProtocol": "TCP",
    "NewInternalPort": "4321",
    "NewInternalClient": "127.0.0.1",
    "NewEnabled": "1",
    "NewPortMappingDescription": "natfwd",
    "NewLeaseDuration": "0",
}


@pytest.mark.parametrize("how", ["specific-desc0", "generic-desc0", "generic-rhost0"])
def test_zero_length_is_refused(replies, how):
    answers = {
        action: soap_reply(action, ENTRY)
        for action in ("GetSpecificPortMappingEntry", "GetGenericPortMappingEntry")
    }
    with SoapResponder(answers) as srv:
        proc = run(replies, srv.url, how)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == f"ret={UPNPCOMMAND_INVALID_ARGS}\n"
    assert srv.requests == []
