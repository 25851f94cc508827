"""The natfwd command line against a real miniupnpd, in every lab variant.

Each test runs the installed ``natfwd`` on the lab's LAN client, the way a
user would, and checks the gateway's own forwarding rules (not just what
natfwd says) and, where it matters, that a connection from the internet
side really reaches the client.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from xml.etree import ElementTree

import pytest

pytestmark = pytest.mark.lab

NATFWD = [sys.executable, "-m", "natfwd"]

# The lab's miniupnpd (2.3.9) returns descriptions of this many bytes or more
# cut and followed by garbage; 2.3.11 fixed it.
MINIUPNPD_DESCRIPTION_LIMIT = 64


def natfwd(lab, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
    return lab.client_exec([*NATFWD, *args], check=False, timeout=timeout)


def natfwd_json(lab, *args: str) -> dict:
    result = natfwd(lab, "--json", *args)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return json.loads(result.stdout)


def xml_text(wire: str) -> str:
    """The text an XML reader sees in element content written as *wire*."""
    return ElementTree.fromstring(f"<a>{wire}</a>").text or ""


def forwarded(lab) -> set[tuple[str, int, str, int]]:
    """What the gateway's kernel forwards: (protocol, external, client, port)."""
    return {
        (m.protocol.lower(), m.external_port, m.internal_ip, m.internal_port)
        for m in lab.mappings()
    }


# -- the main path -------------------------------------------------------------


@pytest.mark.parametrize("via", ["upnp", "natpmp", "pcp"])
def test_add_then_remove_opens_and_closes_the_port(lab_all, via):
    lab = lab_all

    with lab.echo_server(9001):
        added = natfwd_json(lab, "add", "9001", "--via", via)
        mapping = added["mapping"]
        assert (mapping["method"], mapping["external_port"]) == (via, 9001)
        assert mapping["internal_address"] == lab.client_ip
        assert ("tcp", 9001, lab.client_ip, 9001) in forwarded(lab)
        assert lab.probe(9001), "no connection reached the client through the mapping"

        removed = natfwd_json(lab, "remove", "9001", "--via", via)

    assert removed["mapping"]["removed"] is True
    assert forwarded(lab) == set()


def test_udp_mapping_carries_datagrams(lab_all):
    lab = lab_all

    with lab.echo_server(9002, proto="udp"):
        added = natfwd_json(lab, "add", "9002/udp")
        method = added["mapping"]["method"]
        assert ("udp", 9002, lab.client_ip, 9002) in forwarded(lab)
        assert lab.probe(9002, proto="udp")
        natfwd_json(lab, "remove", "9002/udp", "--via", method)

    assert forwarded(lab) == set()


def test_different_external_port(lab_all):
    lab = lab_all

    natfwd_json(lab, "add", "9003:19003", "--via", "upnp")
    assert ("tcp", 19003, lab.client_ip, 9003) in forwarded(lab)

    natfwd_json(lab, "remove", "9003:19003", "--via", "upnp")
    assert forwarded(lab) == set()


@pytest.mark.parametrize(
    "description",
    [
        "Tom & Jerry <x>",
        "quotes \" and ' and ]]> and &amp;",
        "</NewPortMappingDescription><NewInternalClient>1.2.3.4",
        "ünïcödé ✓ relay",
        "x" * 255,
    ],
)
def test_description_reaches_the_gateway_exactly(lab_upnp, description):
    lab = lab_upnp

    natfwd_json(lab, "add", "9004", "--description", description)

    # miniupnpd keeps the argument as it came on the wire, without decoding
    # XML's character references; read as XML, that is the description.
    stored = [lease.description for lease in lab.leases()]
    assert [xml_text(s) for s in stored] == [description]
    listed = natfwd_json(lab, "list")["mappings"]
    # miniupnpd before 2.3.11 answers only the first 63 bytes of what it
    # stored, followed by whatever lies in its memory.
    if len(stored[0].encode()) < MINIUPNPD_DESCRIPTION_LIMIT:
        assert [m["description"] for m in listed] == [description]
    else:
        head = [m["description"][: MINIUPNPD_DESCRIPTION_LIMIT // 2] for m in listed]
        assert head == [xml_text(stored[0])[: MINIUPNPD_DESCRIPTION_LIMIT // 2]]
    # An injected argument must not have redirected the mapping.
    assert forwarded(lab) == {("tcp", 9004, lab.client_ip, 9004)}
    natfwd_json(lab, "remove", "9004")


def test_status_reports_the_gateway_and_the_double_nat(lab_all):
    lab = lab_all

    status = natfwd_json(lab, "status", "--via", "natpmp")["status"]
    assert status["method"] == "natpmp"
    assert status["gateway"] == lab.gateway_lan_ip
    assert status["external_address"] == lab.wan_ip
    assert status["double_nat"] is True

    status = natfwd_json(lab, "status", "--via", "upnp")["status"]
    assert status["method"] == "upnp"
    assert status["igd_version"] == 2
    assert status["double_nat"] is True


def test_upnp_mapping_on_a_private_wan_address_is_made_and_flagged(lab_upnp):
    lab = lab_upnp

    mapping = natfwd_json(lab, "add", "9005")["mapping"]

    assert mapping["method"] == "upnp"
    assert mapping["double_nat"] is True
    assert any("another NAT" in note for note in mapping["notes"])
    assert ("tcp", 9005, lab.client_ip, 9005) in forwarded(lab)
    natfwd_json(lab, "remove", "9005")


def test_auto_finds_whichever_protocol_the_gateway_speaks(lab_upnp, lab_natpmp):
    assert natfwd_json(lab_upnp, "status")["status"]["method"] == "upnp"
    assert natfwd_json(lab_natpmp, "status")["status"]["method"] == "natpmp"


def test_natpmp_only_gateway(lab_natpmp):
    lab = lab_natpmp

    mapping = natfwd_json(lab, "add", "9006", "--lease", "120")["mapping"]
    assert mapping["method"] == "natpmp"
    assert mapping["external_address"] == lab.wan_ip
    assert 0 < mapping["lease"] <= 120
    assert ("tcp", 9006, lab.client_ip, 9006) in forwarded(lab)

    listing = natfwd(lab, "list")
    assert listing.returncode == 3
    assert listing.stderr.count("\n") == 1

    natfwd_json(lab, "remove", "9006")
    assert forwarded(lab) == set()


def test_igdv1_gateway(lab_igdv1):
    lab = lab_igdv1

    status = natfwd_json(lab, "status")["status"]
    assert status["igd_version"] == 1

    # miniupnpd grants no permanent leases even as IGD v1; natfwd must say
    # what it got.
    mapping = natfwd_json(lab, "add", "9007", "--lease", "0")["mapping"]
    assert mapping["lease"] == 0 or any(
        f"granted {mapping['lease']} s" in note for note in mapping["notes"]
    )
    assert ("tcp", 9007, lab.client_ip, 9007) in forwarded(lab)
    natfwd_json(lab, "remove", "9007")


def test_pcp_mapping_is_renewed_and_removed_by_later_processes(lab_natpmp):
    lab = lab_natpmp

    first = natfwd_json(lab, "add", "9014/udp", "--via", "pcp", "--lease", "60")
    again = natfwd_json(lab, "add", "9014/udp", "--via", "pcp", "--lease", "120")

    assert first["mapping"]["external_address"] == lab.wan_ip
    assert again["mapping"]["external_port"] == first["mapping"]["external_port"]
    assert len(forwarded(lab)) == 1
    natfwd_json(lab, "remove", "9014/udp", "--via", "pcp")
    assert forwarded(lab) == set()


def test_auto_remove_also_removes_what_upnp_made(lab_all):
    lab = lab_all
    natfwd_json(lab, "add", "9015", "--via", "upnp")

    removed = natfwd_json(lab, "remove", "9015")["mapping"]

    assert removed["method"] == "natpmp"
    assert removed["also_removed_via"] == ["upnp"]
    assert forwarded(lab) == set()


def test_external_ip(lab_all):
    result = natfwd(lab_all, "external-ip", "--via", "natpmp")
    assert (result.returncode, result.stdout.strip()) == (0, lab_all.wan_ip)


def test_list_shows_mappings_made_by_either_protocol(lab_all):
    lab = lab_all
    natfwd_json(lab, "add", "9008", "--via", "upnp", "--description", "by upnp")
    natfwd_json(lab, "add", "9009/udp", "--via", "natpmp")

    listed = natfwd_json(lab, "list")["mappings"]

    assert {(m["protocol"], m["external_port"]) for m in listed} == {
        ("tcp", 9008),
        ("udp", 9009),
    }
    natfwd_json(lab, "remove", "9008", "--via", "upnp")
    natfwd_json(lab, "remove", "9009/udp", "--via", "natpmp")


# -- refusals and failures -----------------------------------------------------


def test_removing_a_mapping_that_does_not_exist(lab_upnp):
    missing = natfwd(lab_upnp, "remove", "9100")
    assert missing.returncode == 4
    assert "no mapping" in missing.stderr
    assert missing.stderr.count("\n") == 1

    assert natfwd(lab_upnp, "remove", "9100", "--missing-ok").returncode == 0


def test_mapping_for_another_host_is_refused_cleanly(lab_upnp):
    lab = lab_upnp

    result = natfwd(lab, "add", "9011", "--internal-address", "192.0.2.77")

    assert result.returncode == 4
    assert "606" in result.stderr
    assert result.stderr.count("\n") == 1
    assert forwarded(lab) == set()


def test_auto_asks_upnp_alone_for_another_hosts_mapping(lab_all):
    # NAT-PMP would win the race and refuse (it maps to the host that asks);
    # UPnP is the protocol that can map to another host, and this gateway
    # says why it does not.
    result = natfwd(lab_all, "add", "9012", "--internal-address", "192.168.50.77")

    assert result.returncode == 4, result.stderr
    assert "606" in result.stderr
    assert forwarded(lab_all) == set()


@pytest.mark.parametrize(
    "args",
    [
        ["add", "0"],
        ["add", "65536"],
        ["add", "abc"],
        ["add", "80/sctp"],
        ["add", "80:"],
        ["add", "80", "--description", "x" * 256],
        ["add", "80", "--description", "bell\a"],
        ["add", "80", "--lease", "-1"],
        ["add", "80", "--timeout", "0"],
        ["add", "80", "--internal-address", "not-an-address"],
        ["remove", "99999"],
        ["--via", "carrier-pigeon", "status"],
    ],
)
def test_bad_input_is_refused_before_anything_is_sent(lab_all, args):
    result = natfwd(lab_all, *args)

    assert result.returncode == 2, result
    assert result.stderr.startswith("natfwd: ")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    assert forwarded(lab_all) == set()


def test_protocol_the_gateway_does_not_speak(lab_upnp, lab_natpmp):
    start = time.monotonic()
    result = natfwd(lab_upnp, "status", "--via", "natpmp", "--timeout", "5")
    assert result.returncode in (3, 5)
    assert time.monotonic() - start < 5 + 1.5

    result = natfwd(lab_natpmp, "status", "--via", "upnp", "--timeout", "2")
    assert result.returncode == 3
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "args",
    [
        # An address on the LAN that nobody holds: ARP never resolves it.
        ["--via", "natpmp", "--gateway", "{silent}"],
        ["--upnp-url", "http://{silent}:5000/rootDesc.xml"],
        ["--via", "upnp", "--upnp-url", "http://{gateway}:1/rootDesc.xml"],
    ],
)
def test_unreachable_gateway_fails_within_the_timeout(lab_all, args):
    lab = lab_all
    silent = lab.lan_network.rsplit(".", 1)[0] + ".99"
    args = [a.format(silent=silent, gateway=lab.gateway_lan_ip) for a in args]

    start = time.monotonic()
    result = natfwd(lab, "add", "9012", "--timeout", "1.5", *args)
    elapsed = time.monotonic() - start

    assert result.returncode in (3, 5), result
    assert result.stderr.count("\n") == 1
    # The interpreter's start-up and the namespace switch come on top of
    # the deadline itself.
    assert elapsed < 1.5 + 1.5
    assert forwarded(lab) == set()


def test_mappings_vanish_with_a_gateway_that_forgets(fresh_lab):
    lab = fresh_lab
    natfwd_json(lab, "add", "9013", "--via", "upnp")

    lab.restart_gateway(keep_leases=False)

    assert natfwd_json(lab, "list")["mappings"] == []
    assert natfwd(lab, "remove", "9013", "--via", "upnp").returncode == 4
