"""natfwd._miniupnpc against a gateway's HTTP side served on 127.0.0.1.

The root descriptions are the fixtures in tests/fixtures/igd/; the SOAP
replies are canned per test. Each test checks both what the library made of
the reply and what it sent, as the gateway would have read it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
from collections.abc import Iterator

import pytest
from loopback_igd import LoopbackIGD, fault, success

IGD1 = "igd1-rootdesc.xml"
IGD2 = "igd2-rootdesc.xml"
WANIP1 = "urn:schemas-upnp-org:service:WANIPConnection:1"
WANIP2 = "urn:schemas-upnp-org:service:WANIPConnection:2"
WANCIC1 = "urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1"
WANIP6FC1 = "urn:schemas-upnp-org:service:WANIPv6FirewallControl:1"

#: Not in any reserved block miniupnpc knows, so it counts as public.
PUBLIC = "100.128.0.7"
#: RFC 6598 shared address space: what a gateway behind carrier NAT reports.
CARRIER_NAT = "100.64.12.34"


@dataclasses.dataclass
class Igd:
    ffi: object
    lib: object
    urls: object
    data: object
    lanaddr: str

    @property
    def control_url(self) -> bytes:
        return self.ffi.string(self.urls.controlURL)

    @property
    def service_type(self) -> bytes:
        return self.ffi.string(self.data.first.servicetype)


@contextlib.contextmanager
def igd_from_url(miniupnpc, url: str) -> Iterator[Igd]:
    ffi, lib = miniupnpc.ffi, miniupnpc.lib
    urls = ffi.new("struct UPNPUrls *")
    data = ffi.new("struct IGDdatas *")
    lanaddr = ffi.new("char[]", lib.NATFWD_ADDR_LEN)

    found = lib.UPNP_GetIGDFromUrl(url.encode(), urls, data, lanaddr, len(lanaddr))
    try:
        assert found == 1, f"UPNP_GetIGDFromUrl({url!r}) returned {found}"
        yield Igd(ffi, lib, urls, data, ffi.string(lanaddr).decode())
    finally:
        lib.FreeUPNPUrls(urls)


def buffers(ffi, *sizes: int) -> list:
    return [ffi.new("char[]", size) for size in sizes]


def s(ffi, buffer) -> str:
    return ffi.string(buffer).decode()


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound, never listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


# Root descriptions


def test_igd1_description(miniupnpc, igd: LoopbackIGD):
    with igd_from_url(miniupnpc, igd.url(IGD1)) as found:
        ffi, urls, data = found.ffi, found.urls, found.data

        assert found.lanaddr == "127.0.0.1"
        assert found.service_type == WANIP1.encode()
        assert found.control_url == igd.url("/igd/ctl/wanipc").encode()
        assert ffi.string(urls.ipcondescURL) == igd.url("/igd/wanipc.xml").encode()
        assert ffi.string(data.CIF.servicetype) == WANCIC1.encode()
        assert ffi.string(urls.controlURL_CIF) == igd.url("/igd/ctl/wancic").encode()
        assert ffi.string(urls.rootdescURL) == igd.url(IGD1).encode()
        assert ffi.string(data.second.servicetype) == b""
        assert ffi.string(data.IPv6FC.servicetype) == b""
        assert ffi.string(data.urlbase) == b""

    assert igd.requests == []


def test_igd2_description_with_relative_urls(miniupnpc, igd: LoopbackIGD):
    with igd_from_url(miniupnpc, igd.url(IGD2)) as found:
        ffi, urls, data = found.ffi, found.urls, found.data

        assert found.service_type == WANIP2.encode()
        assert found.control_url == igd.url("/ctl/IPConn").encode()
        assert ffi.string(urls.controlURL_CIF) == igd.url("/ctl/CmnIfCfg").encode()
        assert ffi.string(data.IPv6FC.servicetype) == WANIP6FC1.encode()
        assert ffi.string(urls.controlURL_6FC) == igd.url("/ctl/IP6FCtl").encode()


def test_igd_description_unreachable(miniupnpc, refused_port):
    ffi, lib = miniupnpc.ffi, miniupnpc.lib
    urls = ffi.new("struct UPNPUrls *")
    data = ffi.new("struct IGDdatas *")
    lanaddr = ffi.new("char[]", lib.NATFWD_ADDR_LEN)
    url = f"http://127.0.0.1:{refused_port}/{IGD1}".encode()

    found = lib.UPNP_GetIGDFromUrl(url, urls, data, lanaddr, len(lanaddr))

    assert found == 0


# GetExternalIPAddress


def test_external_ip_address(miniupnpc, igd: LoopbackIGD):
    igd.queue(
        "GetExternalIPAddress",
        success("GetExternalIPAddress", WANIP1, {"NewExternalIPAddress": PUBLIC}),
    )
    with igd_from_url(miniupnpc, igd.url(IGD1)) as found:
        (address,) = buffers(found.ffi, found.lib.NATFWD_ADDR_LEN)

        rc = found.lib.UPNP_GetExternalIPAddress(
            found.urls.controlURL, found.data.first.servicetype, address
        )

    assert rc == found.lib.UPNPCOMMAND_SUCCESS
    assert s(found.ffi, address) == PUBLIC
    (request,) = igd.requests
    assert request.path == "/igd/ctl/wanipc"
    assert request.service_type == WANIP1
    assert request.action == "GetExternalIPAddress"
    assert request.arguments() == {}


def test_external_ip_address_upnp_error(miniupnpc, igd: LoopbackIGD):
    igd.queue("GetExternalIPAddress", fault(501, "Action Failed"))
    with igd_from_url(miniupnpc, igd.url(IGD2)) as found:
        (address,) = buffers(found.ffi, found.lib.NATFWD_ADDR_LEN)

        rc = found.lib.UPNP_GetExternalIPAddress(
            found.urls.controlURL, found.data.first.servicetype, address
        )

    assert rc == 501
    assert s(found.ffi, address) == ""


def test_http_error_when_gateway_refuses(miniupnpc, refused_port):
    ffi, lib = miniupnpc.ffi, miniupnpc.lib
    (address,) = buffers(ffi, lib.NATFWD_ADDR_LEN)
    url = f"http://127.0.0.1:{refused_port}/ctl/IPConn".encode()

    rc = lib.UPNP_GetExternalIPAddress(url, WANIP2.encode(), address)

    assert rc == lib.UPNPCOMMAND_HTTP_ERROR


# AddPortMapping


def add_port_mapping(found: Igd, desc: bytes = b"natfwd test") -> int:
    return found.lib.UPNP_AddPortMapping(
        found.urls.controlURL,
        found.data.first.servicetype,
        b"40000",
        b"8080",
        b"127.0.0.1",
        desc,
        b"TCP",
        found.ffi.NULL,
        b"3600",
    )


def test_add_port_mapping(miniupnpc, igd: LoopbackIGD):
    igd.queue("AddPortMapping", success("AddPortMapping", WANIP2, {}))
    with igd_from_url(miniupnpc, igd.url(IGD2)) as found:
        rc = add_port_mapping(found)

    assert rc == found.lib.UPNPCOMMAND_SUCCESS
    (request,) = igd.requests
    assert request.path == "/ctl/IPConn"
    assert request.soap_action == f'"{WANIP2}#AddPortMapping"'
    assert request.arguments() == {
        "NewRemoteHost": "",
        "NewExternalPort": "40000",
        "NewProtocol": "TCP",
        "NewInternalPort": "8080",
        "NewInternalClient": "127.0.0.1",
        "NewEnabled": "1",
        "NewPortMappingDescription": "natfwd test",
        "NewLeaseDuration": "3600",
    }


@pytest.mark.parametrize(
    ("code", "description"),
    [
        (718, "ConflictInMappingEntry"),
        (725, "OnlyPermanentLeasesSupported"),
        (606, "Action not authorized"),
    ],
)
def test_add_port_mapping_upnp_error(miniupnpc, igd: LoopbackIGD, code, description):
    igd.queue("AddPortMapping", fault(code, description))
    with igd_from_url(miniupnpc, igd.url(IGD1)) as found:
        rc = add_port_mapping(found)

    assert rc == code
    assert len(igd.requests) == 1


def test_add_port_mapping_escapes_description(miniupnpc, igd: LoopbackIGD):
    origin = miniupnpc.ffi.string(miniupnpc.lib.natfwd_library_origin())
    if not origin.startswith(b"natfwd fork"):
        pytest.skip(f"escaping is a fix of natfwd's fork; built with {origin!r}")
    igd.queue("AddPortMapping", success("AddPortMapping", WANIP1, {}))
    with igd_from_url(miniupnpc, igd.url(IGD1)) as found:
        rc = add_port_mapping(found, b"Tom & Jerry <games>")

    assert rc == 0
    (request,) = igd.requests
    assert request.arguments()["NewPortMappingDescription"] == "Tom & Jerry <games>"


# GetSpecificPortMappingEntry, through natfwd_get_specific_entry


ENTRY = {
    "NewInternalPort": "8080",
    "NewInternalClient": "192.168.1.20",
    "NewEnabled": "1",
    "NewPortMappingDescription": "natfwd web",
    "NewLeaseDuration": "3542",
}


def get_specific_entry(found: Igd, desclen: int | None = None) -> tuple[int, dict]:
    ffi, lib = found.ffi, found.lib
    client, port, enabled, lease = buffers(
        ffi, lib.NATFWD_ADDR_LEN, lib.NATFWD_PORT_LEN, 4, lib.NATFWD_SHORT_LEN
    )
    (desc,) = buffers(ffi, desclen or lib.NATFWD_DESC_LEN)

    rc = lib.natfwd_get_specific_entry(
        found.urls.controlURL,
        found.data.first.servicetype,
        b"40000",
        b"TCP",
        ffi.NULL,
        client,
        port,
        desc,
        len(desc),
        enabled,
        lease,
    )

    values = {
        "NewInternalPort": s(ffi, port),
        "NewInternalClient": s(ffi, client),
        "NewEnabled": s(ffi, enabled),
        "NewPortMappingDescription": s(ffi, desc),
        "NewLeaseDuration": s(ffi, lease),
    }
    return rc, values


def test_specific_entry(miniupnpc, igd: LoopbackIGD):
    igd.queue(
        "GetSpecificPortMappingEntry",
        success("GetSpecificPortMappingEntry", WANIP1, ENTRY),
    )
    with igd_from_url(miniupnpc, igd.url(IGD1)) as found:
        rc, values = get_specific_entry(found)

    assert rc == 0
    assert values == ENTRY
    (request,) = igd.requests
    assert request.action == "GetSpecificPortMappingEntry"
    assert request.arguments() == {
        "NewRemoteHost": "",
        "NewExternalPort": "40000",
        "NewProtocol": "TCP",
    }


def test_specific_entry_missing(miniupnpc, igd: LoopbackIGD):
    igd.queue("GetSpecificPortMappingEntry", fault(714, "NoSuchEntryInArray"))
    with igd_from_url(miniupnpc, igd.url(IGD2)) as found:
        rc, _ = get_specific_entry(found)

    assert rc == 714


def test_specific_entry_long_description(miniupnpc, igd: LoopbackIGD):
    """API 21 returns the whole description; older ones at most 79 bytes."""
    long_desc = "natfwd " + "x" * 193
    igd.queue(
        "GetSpecificPortMappingEntry",
        success(
            "GetSpecificPortMappingEntry",
            WANIP1,
            {**ENTRY, "NewPortMappingDescription": long_desc},
        ),
    )
    with igd_from_url(miniupnpc, igd.url(IGD1)) as found:
        rc, values = get_specific_entry(found)
        api = found.lib.natfwd_library_api_version()

    assert rc == 0
    expected = long_desc if api >= 21 else long_desc[:79]
    assert values["NewPortMappingDescription"] == expected


def test_specific_entry_description_fits_buffer(miniupnpc, igd: LoopbackIGD):
    igd.queue(
        "GetSpecificPortMappingEntry",
        success(
            "GetSpecificPortMappingEntry",
            WANIP1,
            {**ENTRY, "NewPortMappingDescription": "a description of 40 chars"},
        ),
    )
    with igd_from_url(miniupnpc, igd.url(IGD1)) as found:
        rc, values = get_specific_entry(found, desclen=8)

    assert rc == 0
    assert values["NewPortMappingDescription"] == "a descr"
    assert values["NewInternalClient"] == "192.168.1.20"


# GetGenericPortMappingEntry, through natfwd_get_generic_entry


GENERIC = {
    "NewRemoteHost": "",
    "NewExternalPort": "51413",
    "NewProtocol": "UDP",
    "NewInternalPort": "51413",
    "NewInternalClient": "192.168.1.31",
    "NewEnabled": "1",
    "NewPortMappingDescription": "torrent client",
    "NewLeaseDuration": "0",
}


def get_generic_entry(found: Igd, index: bytes) -> tuple[int, dict]:
    ffi, lib = found.ffi, found.lib
    ext_port, client, int_port, proto, enabled, host, duration = buffers(
        ffi,
        lib.NATFWD_PORT_LEN,
        lib.NATFWD_ADDR_LEN,
        lib.NATFWD_PORT_LEN,
        4,
        4,
        lib.NATFWD_ADDR_LEN,
        lib.NATFWD_SHORT_LEN,
    )
    (desc,) = buffers(ffi, lib.NATFWD_DESC_LEN)

    rc = lib.natfwd_get_generic_entry(
        found.urls.controlURL,
        found.data.first.servicetype,
        index,
        ext_port,
        client,
        int_port,
        proto,
        desc,
        len(desc),
        enabled,
        host,
        len(host),
        duration,
    )

    values = {
        "NewRemoteHost": s(ffi, host),
        "NewExternalPort": s(ffi, ext_port),
        "NewProtocol": s(ffi, proto),
        "NewInternalPort": s(ffi, int_port),
        "NewInternalClient": s(ffi, client),
        "NewEnabled": s(ffi, enabled),
        "NewPortMappingDescription": s(ffi, desc),
        "NewLeaseDuration": s(ffi, duration),
    }
    return rc, values


def test_generic_entry(miniupnpc, igd: LoopbackIGD):
    igd.queue(
        "GetGenericPortMappingEntry",
        success("GetGenericPortMappingEntry", WANIP2, GENERIC),
        fault(713, "SpecifiedArrayIndexInvalid"),
    )
    with igd_from_url(miniupnpc, igd.url(IGD2)) as found:
        first = get_generic_entry(found, b"0")
        second = get_generic_entry(found, b"1")

    assert first == (0, GENERIC)
    assert second[0] == 713
    assert [r.arguments() for r in igd.requests] == [
        {"NewPortMappingIndex": "0"},
        {"NewPortMappingIndex": "1"},
    ]


# natfwd_get_valid_igd, given the device list discovery would have made


def status_info(status: str) -> dict[str, str]:
    return {
        "NewConnectionStatus": status,
        "NewLastConnectionError": "ERROR_NONE",
        "NewUptime": "86400",
    }


def valid_igd(miniupnpc, igd: LoopbackIGD, root: str) -> tuple[int, str, str]:
    ffi, lib = miniupnpc.ffi, miniupnpc.lib
    desc_url = ffi.new("char[]", igd.url(root).encode())
    st = ffi.new("char[]", b"urn:schemas-upnp-org:device:InternetGatewayDevice:1")
    device = ffi.new("struct UPNPDev *")
    device.descURL = desc_url
    device.st = st
    urls = ffi.new("struct UPNPUrls *")
    data = ffi.new("struct IGDdatas *")
    lanaddr, wanaddr = buffers(ffi, lib.NATFWD_ADDR_LEN, lib.NATFWD_ADDR_LEN)

    state = lib.natfwd_get_valid_igd(
        device, urls, data, lanaddr, len(lanaddr), wanaddr, len(wanaddr)
    )
    try:
        return state, s(ffi, lanaddr), s(ffi, wanaddr)
    finally:
        lib.FreeUPNPUrls(urls)


def queue_gateway_state(igd: LoopbackIGD, status: str, address: str) -> None:
    # Library versions differ in how often they ask; enough for all of them.
    igd.queue(
        "GetStatusInfo",
        *[success("GetStatusInfo", WANIP1, status_info(status))] * 4,
    )
    igd.queue(
        "GetExternalIPAddress",
        *[success("GetExternalIPAddress", WANIP1, {"NewExternalIPAddress": address})]
        * 4,
    )


def test_valid_igd_connected(miniupnpc, igd: LoopbackIGD):
    queue_gateway_state(igd, "Connected", PUBLIC)

    state, lanaddr, wanaddr = valid_igd(miniupnpc, igd, IGD1)

    assert state == miniupnpc.lib.NATFWD_IGD_CONNECTED
    assert lanaddr == "127.0.0.1"
    api = miniupnpc.lib.natfwd_library_api_version()
    assert wanaddr == (PUBLIC if api >= 18 else "")


def test_valid_igd_disconnected(miniupnpc, igd: LoopbackIGD):
    queue_gateway_state(igd, "Disconnected", "0.0.0.0")

    state, _, _ = valid_igd(miniupnpc, igd, IGD1)

    assert state == miniupnpc.lib.NATFWD_IGD_DISCONNECTED


def test_valid_igd_behind_carrier_nat(miniupnpc, igd: LoopbackIGD):
    queue_gateway_state(igd, "Connected", CARRIER_NAT)

    state, _, wanaddr = valid_igd(miniupnpc, igd, IGD1)

    if miniupnpc.lib.natfwd_library_api_version() >= 18:
        assert state == miniupnpc.lib.NATFWD_IGD_PRIVATE_WAN
        assert wanaddr == CARRIER_NAT
    else:
        # API 17 cannot tell a reserved WAN address from a disconnected link.
        assert state == miniupnpc.lib.NATFWD_IGD_DISCONNECTED


def test_valid_igd_not_an_igd(miniupnpc, igd: LoopbackIGD):
    """A device that answers, but with no IGD description, is another device."""
    state, lanaddr, _ = valid_igd(miniupnpc, igd, "missing.xml")

    assert state == miniupnpc.lib.NATFWD_IGD_NOT_IGD
    assert lanaddr == "127.0.0.1"
    assert igd.requests == []
