"""The Python API against hostile IGDs: typed errors, codes kept, no leaks."""

from __future__ import annotations

import time

import pytest
from upnp_responder import Hang, fault_body, http

import natfwd
from natfwd import upnp


def _gateway(netns, server, timeout=3.0):
    with netns.entered():
        return natfwd.find_gateway(
            via="upnp", upnp_url=server.location, timeout=timeout
        )


def test_port_in_use_carries_the_holder(netns, igd):
    igd.hold(7000, "udp", "127.0.0.9", 7777, "game server")

    with (
        netns.entered(),
        _gateway(netns, igd) as gateway,
        pytest.raises(natfwd.PortInUse) as info,
    ):
        gateway.add(7000, protocol="udp", internal_address="127.0.0.1")

    error = info.value
    assert error.code is natfwd.UPnPErrorCode.CONFLICT_IN_MAPPING_ENTRY
    assert error.holder == upnp.PortMapping(
        external_port=7000,
        protocol=natfwd.Protocol.UDP,
        internal_client="127.0.0.9",
        internal_port=7777,
        description="game server",
        enabled=True,
        lease=0,
    )
    assert error.gateway == "127.0.0.1"
    assert isinstance(error, natfwd.GatewayError)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (606, natfwd.UPnPErrorCode.ACTION_NOT_AUTHORIZED),
        (728, natfwd.UPnPErrorCode.NO_PORT_MAPS_AVAILABLE),
        (799, 799),
    ],
)
def test_upnp_error_codes_are_kept(netns, igd, code, expected):
    igd.fail("AddPortMapping", code)

    with (
        netns.entered(),
        _gateway(netns, igd) as gateway,
        pytest.raises(natfwd.UPnPError) as info,
    ):
        gateway.add(7000, internal_address="127.0.0.1")

    assert info.value.code == expected
    assert type(info.value.code) is type(expected)
    assert info.value.action == "AddPortMapping"
    assert igd.table == {}


def test_context_removes_what_it_added_even_after_an_error(netns, igd):
    igd.fail("AddPortMapping", 501, times=1)

    def application(gateway):
        with pytest.raises(natfwd.UPnPError):
            gateway.add(7001, internal_address="127.0.0.1")
        gateway.add(7002, internal_address="127.0.0.1")
        gateway.add(7003, protocol="udp", internal_address="127.0.0.1")
        assert set(igd.table) == {(7002, "TCP"), (7003, "UDP")}
        raise RuntimeError("the application failed")

    with (
        netns.entered(),
        pytest.raises(RuntimeError),
        _gateway(netns, igd) as gateway,
    ):
        application(gateway)

    assert igd.table == {}


def test_forward_removes_its_mapping(netns, igd):
    with (
        netns.entered(),
        natfwd.forward(7004, via="upnp", upnp_url=igd.location, timeout=3.0) as m,
    ):
        assert m.external_port == 7004
        assert set(igd.table) == {(7004, "TCP")}

    assert igd.table == {}
    assert igd.events == [("add", 7004, "TCP"), ("delete", 7004, "TCP")]


def test_stalled_add_raises_timeout_within_the_deadline(netns, igd):
    igd.script("AddPortMapping", reply=lambda raw: [Hang()])

    with netns.entered(), _gateway(netns, igd) as gateway:
        start = time.monotonic()
        with pytest.raises(natfwd.GatewayTimeout):
            gateway.add(7005, internal_address="127.0.0.1", timeout=0.8)
        elapsed = time.monotonic() - start

    assert elapsed < 0.8 + 0.5
    assert igd.table == {}
    assert igd.events == [("add", 7005, "TCP"), ("delete", 7005, "TCP")]


def test_low_level_igd_reports_malformed_entries(netns, igd):
    igd.answer(
        "GetSpecificPortMappingEntry",
        http(
            200,
            b'<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap'
            b'.org/soap/envelope/"><s:Body><u:GetSpecificPortMappingEntryResponse>'
            b"<NewInternalPort>99999</NewInternalPort>"
            b"<NewLeaseDuration>-3</NewLeaseDuration>"
            b"</u:GetSpecificPortMappingEntryResponse></s:Body></s:Envelope>",
        ),
    )

    with (
        netns.entered(),
        upnp.IGD(igd.location, timeout=2.0) as device,
        pytest.raises(natfwd.MalformedReply),
    ):
        device.get_port_mapping(7006, "tcp", deadline=None)


def test_nonnumeric_error_code_is_malformed(netns, igd):
    igd.answer("DeletePortMapping", http(500, fault_body("oops")))

    with (
        netns.entered(),
        upnp.IGD(igd.location, timeout=2.0) as device,
        pytest.raises(natfwd.MalformedReply),
    ):
        device.delete_port_mapping(7007, "tcp")


@pytest.mark.parametrize(
    "location",
    ["ftp://127.0.0.1/x", "http://", "http://127.0.0.1:0/x", "http://h/\r\nX: y"],
)
def test_bad_location_is_an_invalid_argument(location):
    with pytest.raises(natfwd.InvalidArgument):
        upnp.IGD(location)


def _add_any_port_answered_unreadably(netns, igd2) -> natfwd.MalformedReply:
    """Port 7008 is someone else's; the IGD maps 127.0.0.1:7008 on a port of
    its choosing, then answers AddAnyPortMapping with what nobody can read."""
    igd2.hold(7008, "tcp", "127.0.0.9", 80)
    igd2.answer("AddAnyPortMapping", http(200, b"garbage"), apply=True)
    with (
        netns.entered(),
        _gateway(netns, igd2) as gateway,
        pytest.raises(natfwd.MalformedReply) as caught,
    ):
        gateway.add(7008, internal_address="127.0.0.1", any_port=True)
    return caught.value


def test_any_port_mapping_with_an_unreadable_reply_leaves_nothing(netns, igd2):
    # natfwd finds the mapping by what it maps, and takes it back.
    _add_any_port_answered_unreadably(netns, igd2)
    assert set(igd2.table) == {(7008, "TCP")}


def test_an_unreadable_any_port_reply_spares_the_clients_earlier_mapping(netns, igd2):
    # The client already had port 7009 mapped to it: only what the IGD made
    # during this add is taken back.
    igd2.hold(7009, "tcp", "127.0.0.1", 7008, description="natfwd")
    _add_any_port_answered_unreadably(netns, igd2)
    assert set(igd2.table) == {(7008, "TCP"), (7009, "TCP")}


def test_an_unreadable_any_port_reply_from_an_unlistable_igd_says_so(netns, igd2):
    igd2.fail("GetGenericPortMappingEntry", 501, times=None)
    error = _add_any_port_answered_unreadably(netns, igd2)
    assert "may be left on the gateway" in str(error)
