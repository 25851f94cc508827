"""NAT-PMP gateways that refuse, lie, mumble or keep silent.

The responder answers on 127.0.0.1:5351 of the tests' namespace, and the
CLI asks it there (``--via natpmp --gateway 127.0.0.1``). After every failed
add the responder's table must be empty: what it mapped was taken back.
"""

from __future__ import annotations

import json
import struct

import pytest
from hostile_support import STARTUP_MARGIN
from natpmp_responder import Granted

import natfwd
from natfwd import natpmp

ADD = ("add", "8080")
OURS = ("tcp", 8080)


def test_plain_add_as_a_process(natpmp_gateway, natpmp_cli):
    with natpmp_gateway:
        run = natpmp_cli(*ADD, "--json", process=True)

    assert run.code == 0, run.err
    assert run.err == []
    mapping = json.loads(run.out)["mapping"]
    assert mapping["method"] == "natpmp"
    assert (mapping["external_port"], mapping["lease"]) == (8080, 3600)
    assert mapping["external_address"] == "100.128.0.7"
    assert set(natpmp_gateway.table) == {OURS}


def test_remove(natpmp_gateway, natpmp_cli):
    natpmp_gateway.table[OURS] = None  # as if mapped before
    with natpmp_gateway:
        run = natpmp_cli("remove", "8080")

    assert run.code == 0, run.err
    assert natpmp_gateway.table == {}


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (1, "UNSUPPORTED_VERSION"),
        (2, "NOT_AUTHORIZED"),
        (3, "NETWORK_FAILURE"),
        (4, "OUT_OF_RESOURCES"),
        (5, "UNSUPPORTED_OPCODE"),
        (77, "unknown"),
        (65535, "unknown"),
    ],
)
def test_mapping_refused(natpmp_gateway, natpmp_cli, code, name):
    natpmp_gateway.map_result = code
    with natpmp_gateway:
        run = natpmp_cli(*ADD, "--json")

    assert run.code == 4
    assert f"result code {code} ({name})" in run.error
    assert json.loads(run.out)["error"]["code"] == code
    assert natpmp_gateway.table == {}


@pytest.mark.parametrize("code", [2, 3, 200])
def test_public_address_refused(natpmp_gateway, natpmp_cli, code):
    natpmp_gateway.result = code
    with natpmp_gateway:
        run = natpmp_cli("external-ip")

    assert run.code == 4
    assert f"result code {code}" in run.error


def _mapping_replies(change):
    """Apply *change* to mapping replies only (the public address is fine)."""
    return lambda reply: change(reply) if reply[1] != 128 else reply


BROKEN = {
    "too short": _mapping_replies(lambda r: r[:10]),
    "header only": _mapping_replies(lambda r: r[:4]),
    "one byte": _mapping_replies(lambda r: r[:1]),
    "wrong version": _mapping_replies(lambda r: b"\x02" + r[1:]),
    "wrong opcode": _mapping_replies(lambda r: r[:1] + b"\x81" + r[2:]),
    "request echoed": _mapping_replies(lambda r: r[:1] + bytes([r[1] - 128]) + r[2:]),
    "another internal port": _mapping_replies(
        lambda r: r[:8] + struct.pack("!H", 1) + r[10:]
    ),
    "no reply": _mapping_replies(lambda r: None),
}

#: Replies that are fine as NAT-PMP goes: natfwd cannot tell that the
#: gateway made nothing.
BELIEVABLE = {"too long": _mapping_replies(lambda r: r + bytes(1000))}


@pytest.mark.parametrize("applied", [True, False], ids=["made", "not made"])
@pytest.mark.parametrize("reply", [*BROKEN, *BELIEVABLE])
def test_broken_mapping_reply_leaves_nothing(
    natpmp_gateway, natpmp_cli, reply, applied
):
    natpmp_gateway.mangle = {**BROKEN, **BELIEVABLE}[reply]
    natpmp_gateway.apply = applied
    with natpmp_gateway:
        run = natpmp_cli(*ADD, "--json", timeout=0.6)

    assert run.elapsed < 0.6 + STARTUP_MARGIN
    if run.code == 0:
        assert set(natpmp_gateway.table) == ({OURS} if applied else set())
        assert json.loads(run.out)["mapping"]["external_port"] == 8080
    else:
        assert run.code in (4, 5), run.err
        run.error  # noqa: B018 -- exactly one line
        assert natpmp_gateway.table == {}, "failed, but a mapping is left"
    if not applied and reply in BROKEN:
        assert run.code != 0


@pytest.mark.parametrize(
    ("port", "lifetime", "note"),
    [
        (9999, None, "external port 9999 instead of 8080"),
        (None, 60, "lease of 60 s instead of 3600 s"),
        (None, 7 * 86400, "lease of 604800 s instead of 3600 s"),
    ],
)
def test_different_grant_is_reported(natpmp_gateway, natpmp_cli, port, lifetime, note):
    natpmp_gateway.grant_port = port
    natpmp_gateway.grant_lifetime = lifetime
    with natpmp_gateway:
        run = natpmp_cli(*ADD, "--json")

    assert run.code == 0, run.err
    mapping = json.loads(run.out)["mapping"]
    assert any(note in n for n in mapping["notes"]), mapping["notes"]
    assert mapping["external_port"] == (port or 8080)
    assert mapping["lease"] == (lifetime or 3600)


@pytest.mark.parametrize(("port", "lifetime"), [(0, None), (None, 0)])
def test_grant_of_nothing_is_no_mapping(natpmp_gateway, natpmp_cli, port, lifetime):
    natpmp_gateway.grant_port = port
    natpmp_gateway.grant_lifetime = lifetime
    with natpmp_gateway:
        run = natpmp_cli(*ADD)

    assert run.code == 5
    assert "no mapping" in run.error
    assert natpmp_gateway.table == {}


@pytest.mark.parametrize("timeout", [0.5, 1.0])
def test_silence_is_no_gateway_within_the_timeout(natpmp_gateway, natpmp_cli, timeout):
    natpmp_gateway.mangle = lambda reply: None
    with natpmp_gateway:
        run = natpmp_cli(*ADD, timeout=timeout)

    assert run.code == 3
    assert "no NAT-PMP answer from 127.0.0.1" in run.error
    assert run.elapsed < timeout + STARTUP_MARGIN
    assert len(natpmp_gateway.requests) >= 2  # retransmitted meanwhile


def test_silence_as_a_process(natpmp_gateway, natpmp_cli):
    natpmp_gateway.mangle = lambda reply: None
    with natpmp_gateway:
        run = natpmp_cli(*ADD, timeout=1.0, process=True)

    assert run.code == 3
    run.error  # noqa: B018
    assert run.elapsed < 1.0 + STARTUP_MARGIN


def test_replies_from_another_address_are_ignored(natpmp_gateway, natpmp_cli):
    natpmp_gateway.reply_from = "127.0.0.2"
    with natpmp_gateway:
        run = natpmp_cli(*ADD, timeout=0.8)

    assert run.code == 3
    run.error  # noqa: B018


def test_nothing_listens(netns, natpmp_cli):
    run = natpmp_cli(*ADD, timeout=1.0)

    assert run.code in (3, 5)
    run.error  # noqa: B018


# -- the Python API ------------------------------------------------------------------


def test_api_result_codes_are_enums(netns, natpmp_gateway):
    natpmp_gateway.map_result = 2
    with (
        natpmp_gateway,
        netns.entered(),
        natpmp.Client("127.0.0.1") as client,
        pytest.raises(natfwd.NATPMPError) as info,
    ):
        client.map("udp", 5000, 5000, lifetime=60, timeout=1.0)

    assert info.value.code is natfwd.NATPMPResult.NOT_AUTHORIZED
    assert info.value.gateway == "127.0.0.1"


def test_api_gateway_context_removes_what_it_added(netns, natpmp_gateway):
    with natpmp_gateway, netns.entered():
        with natfwd.find_gateway(via="natpmp", gateway="127.0.0.1", timeout=2) as gw:
            mapping = gw.add(5000, protocol="udp", lease=120, timeout=2)
            assert natpmp_gateway.table == {
                ("udp", 5000): Granted(mapping.external_port, mapping.lease)
            }
        assert natpmp_gateway.table == {}


def test_api_malformed_reply(netns, natpmp_gateway):
    natpmp_gateway.mangle = _mapping_replies(lambda r: r[:12])
    with natpmp_gateway, netns.entered():
        gateway = natfwd.find_gateway(via="natpmp", gateway="127.0.0.1", timeout=2)
        with pytest.raises(natfwd.MalformedReply), gateway:
            gateway.add(5000, timeout=1)

    assert natpmp_gateway.table == {}
