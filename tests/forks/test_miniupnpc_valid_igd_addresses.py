"""UPNP_GetValidIGD() must leave NUL-terminated addresses in the caller's buffers.

It copied the LAN and WAN addresses out with strncpy(), which does not
terminate a string that fills the buffer. A caller that sized its buffer
for an IPv4 address and met a gateway on IPv6 (a longer, scoped address)
then read past the buffer when using it.
"""

from __future__ import annotations

import pytest
from miniupnpc_support import CLIENT_SOURCES, RawResponder, build, run

# A root description without WANCommonInterfaceConfig: not an IGD, so the
# device is taken as a last resort without any SOAP call.
DESCRIPTION = b"""<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0"><device>
<deviceType>urn:schemas-upnp-org:device:Basic:1</deviceType>
<serviceList><service>
<serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType>
<controlURL>/ctl/IPConn</controlURL>
</service></serviceList></device></root>
"""
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (
    len(DESCRIPTION),
    DESCRIPTION,
)
UPNP_UNKNOWN_DEVICE = 4


@pytest.fixture(scope="module")
def harness(cc_module):
    return build(cc_module, "miniupnpc_validigd.c", CLIENT_SOURCES)


@pytest.mark.parametrize(
    ("size", "lanaddr"),
    [(64, "127.0.0.1"), (10, "127.0.0.1"), (9, "127.0.0."), (4, "127")],
)
def test_lan_address_is_terminated(harness, size, lanaddr):
    with RawResponder(RESPONSE) as srv:
        proc = run(harness, srv.url, str(size))

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [
        f"ret={UPNP_UNKNOWN_DEVICE}",
        f"lanaddr={lanaddr}",
        "wanaddr=",
    ]
