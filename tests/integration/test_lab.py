"""The gateway lab proves itself with upstream clients and raw protocol probes.

These tests say what natfwd's own integration tests may take for granted: a
mapping made from the client namespace shows up in the gateway's ruleset, lets
a connection from the internet namespace reach a listener on the client, and
is gone once deleted; each variant speaks only its protocols; restarts behave
as documented in :mod:`lab.topology`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lab import Lab, LabError, Mapping, cleanup_stale, list_labs
from lab.gateway import count_rules, parse_leases, parse_mappings
from lab.topology import _netns_names, _process_start_time

lab_test = pytest.mark.lab

TESTS = Path(__file__).resolve().parents[1]


def _upnpc(lab: Lab, upnpc: Path, *args: str) -> subprocess.CompletedProcess:
    return lab.client_exec([upnpc, *args], timeout=30)


def _assert_empty(lab: Lab) -> None:
    assert lab.mappings() == []
    assert lab.rule_counts() == {
        "miniupnpd": 0,
        "prerouting_miniupnpd": 0,
        "postrouting_miniupnpd": 0,
    }


# The gateway's own view, from recorded nft output (no root needed).

# Recorded from a lab gateway after an upnpc mapping restricted to one remote
# host (TCP 8080) and a NAT-PMP one (UDP 9090): raw payload matches are what
# miniupnpd 2.3.9 writes.
RECORDED_TABLE = json.dumps(
    {
        "nftables": [
            {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
            {"rule": {"family": "inet", "table": "filter", "chain": "miniupnpd",
                      "handle": 9, "expr": [
                {"match": {"op": "==", "left": {"meta": {"key": "iif"}},
                           "right": "wan0"}},
                {"match": {"op": "==", "left": {"payload": {
                    "protocol": "th", "field": "dport"}}, "right": 8080}},
                {"match": {"op": "==", "left": {"payload": {
                    "base": "nh", "offset": 128, "len": 32}},
                           "right": 3232248330}},
                {"match": {"op": "==", "left": {"payload": {
                    "base": "nh", "offset": 96, "len": 32}},
                           "right": 3405803777}},
                {"match": {"op": "==", "left": {"payload": {
                    "base": "nh", "offset": 72, "len": 8}}, "right": 6}},
                {"accept": None},
            ]}},
            {"rule": {"family": "inet", "table": "filter",
                      "chain": "prerouting_miniupnpd", "handle": 13, "expr": [
                {"match": {"op": "==", "left": {"meta": {"key": "iif"}},
                           "right": "wan0"}},
                {"match": {"op": "==", "left": {"payload": {
                    "base": "nh", "offset": 72, "len": 8}}, "right": 6}},
                {"match": {"op": "==", "left": {"payload": {
                    "protocol": "th", "field": "dport"}}, "right": 8080}},
                {"dnat": {"family": "ip", "addr": "192.168.50.10",
                          "port": 8080}},
            ]}},
            {"rule": {"family": "inet", "table": "filter",
                      "chain": "prerouting_miniupnpd", "handle": 15, "expr": [
                {"match": {"op": "==", "left": {"meta": {"key": "iif"}},
                           "right": "wan0"}},
                {"match": {"op": "==", "left": {"payload": {
                    "base": "nh", "offset": 72, "len": 8}}, "right": 17}},
                {"match": {"op": "==", "left": {"payload": {
                    "protocol": "th", "field": "dport"}}, "right": 9090}},
                {"dnat": {"family": "ip", "addr": "192.168.50.10",
                          "port": 19090}},
            ]}},
        ]
    }
)  # fmt: skip


def test_parse_mappings_joins_dnat_and_forward_rules() -> None:
    assert parse_mappings(RECORDED_TABLE) == [
        Mapping("TCP", 8080, "192.168.50.10", 8080, "203.0.113.1", open=True),
        Mapping("UDP", 9090, "192.168.50.10", 19090, None, open=False),
    ]
    assert count_rules(RECORDED_TABLE) == {
        "miniupnpd": 1,
        "prerouting_miniupnpd": 2,
        "postrouting_miniupnpd": 0,
    }


def test_parse_mappings_rejects_what_is_not_json() -> None:
    with pytest.raises(ValueError, match="nft printed no JSON"):
        parse_mappings("table inet filter {")


def test_parse_leases() -> None:
    leases = parse_leases(
        "TCP:8080:192.168.50.10:8080:1797003390:natfwd: demo\n"
        "UDP:9090:192.168.50.10:9090:0:NAT-PMP 9090 UDP\n"
    )
    assert [(x.protocol, x.external_port, x.description) for x in leases] == [
        ("TCP", 8080, "natfwd: demo"),
        ("UDP", 9090, "NAT-PMP 9090 UDP"),
    ]
    with pytest.raises(ValueError, match="line 1 is malformed"):
        parse_leases("TCP:80:not-an-address:80:0:x\n")


def test_lab_arguments_are_checked_before_anything_runs() -> None:
    with pytest.raises(ValueError, match="unknown lab variant 'igdv3'"):
        Lab("igdv3")
    with pytest.raises(ValueError, match="lab name 'Bad_Name'"):
        Lab(name="Bad_Name")
    with pytest.raises(ValueError, match="lifetimes must satisfy"):
        Lab(min_lifetime=60)


def test_probe_refuses_addresses_outside_the_lab() -> None:
    with pytest.raises(ValueError, match="outside the lab's networks"):
        Lab().probe(53, host="192.0.2.1")


# UPnP with the upstream upnpc.


@lab_test
def test_upnpc_mapping_lets_inbound_tcp_reach_the_client(
    lab_all: Lab, upnpc: Path
) -> None:
    with lab_all.echo_server(8080) as server:
        assert not lab_all.probe(8080), "reachable before any mapping"

        added = _upnpc(lab_all, upnpc, "-a", lab_all.client_ip, "8080", "8080", "TCP")
        assert added.returncode == 0, added.stdout + added.stderr
        assert "(duration=604800)" in added.stdout
        assert lab_all.mappings() == [
            Mapping("TCP", 8080, lab_all.client_ip, 8080, None, open=True)
        ]
        [lease] = lab_all.leases()
        assert lease.description == "libminiupnpc"

        assert lab_all.probe(8080)
        assert server.wait_for_peers(1)[0][0] == lab_all.wan_host_ip

        listed = _upnpc(lab_all, upnpc, "-l")
        assert f"8080->{lab_all.client_ip}:8080" in listed.stdout

        deleted = _upnpc(lab_all, upnpc, "-d", "8080", "TCP")
        assert deleted.returncode == 0, deleted.stdout + deleted.stderr
        _assert_empty(lab_all)
        assert not lab_all.probe(8080), "still reachable after deletion"


@lab_test
def test_upnpc_udp_mapping_to_another_port(lab_all: Lab, upnpc: Path) -> None:
    with lab_all.echo_server(5353, proto="udp"):
        added = _upnpc(lab_all, upnpc, "-a", lab_all.client_ip, "5353", "40000", "UDP")
        assert added.returncode == 0, added.stdout + added.stderr
        assert lab_all.mappings() == [
            Mapping("UDP", 40000, lab_all.client_ip, 5353, None, open=True)
        ]
        assert lab_all.probe(40000, proto="udp")

        _upnpc(lab_all, upnpc, "-d", "40000", "UDP")
        _assert_empty(lab_all)


@lab_test
def test_upnp_external_address_is_empty_for_a_reserved_wan(
    lab_all: Lab, upnpc: Path
) -> None:
    status = _upnpc(lab_all, upnpc, "-s")
    assert "GetExternalIPAddress failed. (empty string)" in status.stdout, status.stdout


@lab_test
@pytest.mark.parametrize(
    "fresh_lab", [{"variant": "upnp", "announce_wan_ip": True}], indirect=True
)
def test_announce_wan_ip_makes_upnp_report_the_address(
    fresh_lab: Lab, upnpc: Path
) -> None:
    status = _upnpc(fresh_lab, upnpc, "-s")
    assert f"ExternalIPAddress = {fresh_lab.wan_ip}\n" in status.stdout

    fresh_lab.change_wan_ip("203.0.113.30")
    status = _upnpc(fresh_lab, upnpc, "-s")
    assert "ExternalIPAddress = 203.0.113.30\n" in status.stdout


@lab_test
def test_secure_mode_refuses_a_mapping_for_another_host(
    lab_all: Lab, upnpc: Path
) -> None:
    added = _upnpc(lab_all, upnpc, "-a", "192.168.50.20", "8080", "8080", "TCP")
    assert added.returncode != 0
    assert "718" in added.stdout + added.stderr or "606" in added.stdout
    _assert_empty(lab_all)


@lab_test
def test_privileged_ports_are_refused(lab_all: Lab, upnpc: Path) -> None:
    added = _upnpc(lab_all, upnpc, "-a", lab_all.client_ip, "22", "22", "TCP")
    assert added.returncode != 0
    _assert_empty(lab_all)


# NAT-PMP and PCP.


@lab_test
def test_natpmp_mapping_lets_inbound_tcp_reach_the_client(lab_all: Lab) -> None:
    with lab_all.echo_server(9090):
        reply = lab_all.natpmp_map(9090, 9090, lifetime=600)
        assert reply is not None
        assert (reply["result"], reply["external_port"]) == (0, 9090)
        assert reply["lifetime"] == 600
        assert lab_all.mappings() == [
            Mapping("TCP", 9090, lab_all.client_ip, 9090, None, open=True)
        ]
        assert lab_all.leases()[0].description == "NAT-PMP 9090 TCP"
        assert lab_all.probe(9090)

        removed = lab_all.natpmp_map(9090, 0, lifetime=0)
        assert removed is not None
        assert removed["result"] == 0
        _assert_empty(lab_all)
        assert not lab_all.probe(9090)


@lab_test
def test_natpmp_reports_the_reserved_wan_address(lab_all: Lab) -> None:
    reply = lab_all.natpmp_address()
    assert reply is not None
    assert (reply["result"], reply["address"]) == (0, lab_all.wan_ip)


@lab_test
def test_pcp_map_lets_inbound_udp_reach_the_client(lab_all: Lab) -> None:
    with lab_all.echo_server(7070, proto="udp"):
        reply = lab_all.pcp_map(7070, 7070, proto="udp", lifetime=600)
        assert reply is not None
        assert reply["result"] == 0
        assert (reply["external_address"], reply["external_port"]) == (
            lab_all.wan_ip,
            7070,
        )
        assert lab_all.probe(7070, proto="udp")

        stranger = lab_all.pcp_map(7070, 7070, proto="udp", lifetime=0, nonce="00" * 12)
        assert stranger is not None
        assert stranger["result"] == 2, "deleted with another client's nonce"

        removed = lab_all.pcp_map(7070, 7070, proto="udp", lifetime=0)
        assert removed is not None
        assert removed["result"] == 0
        _assert_empty(lab_all)


@lab_test
def test_upstream_natpmpc_stops_at_the_reserved_address(
    lab_all: Lab, natpmpc: Path
) -> None:
    # natpmpc finds the gateway through the client's default route and gets
    # an answer, but refuses any reserved external address before it sends a
    # mapping request; every lab address is reserved, so it never maps.
    result = lab_all.client_exec([natpmpc, "-a", "8080", "8080", "tcp", "60"])
    assert f"using gateway : {lab_all.gateway_lan_ip}" in result.stdout
    assert "readnatpmpresponseorretry returned 0 (OK)" in result.stdout
    assert f"invalid Public IP address {lab_all.wan_ip}" in result.stderr
    assert result.returncode == 1
    _assert_empty(lab_all)


# Variants.


@lab_test
def test_upnp_variant_does_not_answer_natpmp_or_pcp(lab_upnp: Lab, upnpc: Path) -> None:
    assert lab_upnp.natpmp_address() is None
    assert lab_upnp.pcp_map(9090, 9090) is None

    status = _upnpc(lab_upnp, upnpc, "-s")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "InternetGatewayDevice:2" in lab_upnp.root_description()


@lab_test
def test_natpmp_variant_does_not_answer_upnp(lab_natpmp: Lab, upnpc: Path) -> None:
    status = _upnpc(lab_natpmp, upnpc, "-s")
    assert status.returncode != 0
    assert "No IGD UPnP Device found" in status.stdout + status.stderr

    reply = lab_natpmp.natpmp_address()
    assert reply is not None
    assert reply["address"] == lab_natpmp.wan_ip
    mapped = lab_natpmp.pcp_map(9090, 9090, lifetime=300)
    assert mapped is not None
    assert mapped["result"] == 0
    assert lab_natpmp.pcp_map(9090, 9090, lifetime=0) is not None
    _assert_empty(lab_natpmp)


@lab_test
def test_igdv1_variant_describes_itself_as_igd1(lab_igdv1: Lab, upnpc: Path) -> None:
    description = lab_igdv1.root_description()
    assert "urn:schemas-upnp-org:device:InternetGatewayDevice:1" in description
    assert "InternetGatewayDevice:2" not in description
    assert "WANIPConnection:1" in description
    assert lab_igdv1.natpmp_address() is None

    # IGDv1 keeps a lease of 0 as "no expiry"; IGDv2 turns it into a week.
    added = _upnpc(lab_igdv1, upnpc, "-a", lab_igdv1.client_ip, "8080", "8080", "TCP")
    assert added.returncode == 0, added.stdout + added.stderr
    assert "(duration=0)" in added.stdout
    assert [lease.expires for lease in lab_igdv1.leases()] == [0]
    _upnpc(lab_igdv1, upnpc, "-d", "8080", "TCP")
    _assert_empty(lab_igdv1)


# Restarts.


@lab_test
@pytest.mark.parametrize("fresh_lab", ["all"], indirect=True)
def test_restart_restores_mappings_from_the_lease_file(
    fresh_lab: Lab, upnpc: Path
) -> None:
    lab = fresh_lab
    only_from = lab.wan_host_ip
    _upnpc(lab, upnpc, "-a", lab.client_ip, "8080", "8080", "TCP", "0", only_from)
    assert lab.natpmp_map(9090, 9090, proto="udp") is not None
    time.sleep(2.0)
    epoch_before = lab.natpmp_address()["epoch"]
    assert sorted(lab.mappings(), key=str) == [
        Mapping("TCP", 8080, lab.client_ip, 8080, only_from),
        Mapping("UDP", 9090, lab.client_ip, 9090, None),
    ]

    lab.restart_gateway()

    assert lab.natpmp_address()["epoch"] < epoch_before
    # The lease file has no field for the remote host: it is lost.
    assert sorted(lab.mappings(), key=str) == [
        Mapping("TCP", 8080, lab.client_ip, 8080, None),
        Mapping("UDP", 9090, lab.client_ip, 9090, None),
    ]
    with lab.echo_server(8080):
        assert lab.probe(8080)


@lab_test
@pytest.mark.parametrize("fresh_lab", ["all"], indirect=True)
def test_restart_without_leases_forgets_every_mapping(
    fresh_lab: Lab, upnpc: Path
) -> None:
    lab = fresh_lab
    _upnpc(lab, upnpc, "-a", lab.client_ip, "8080", "8080", "TCP")
    assert lab.natpmp_map(9090, 9090) is not None
    assert len(lab.mappings()) == 2

    lab.restart_gateway(keep_leases=False)

    _assert_empty(lab)
    assert lab.leases() == []
    assert lab.gateway_running()


# Housekeeping.


@lab_test
def test_labs_of_a_killed_process_are_removed(lab_prerequisites: None) -> None:
    name = f"killed{os.getpid()}"
    script = (
        "import sys, time\n"
        f"sys.path.insert(0, {str(TESTS)!r})\n"
        "from lab import Lab\n"
        f"Lab('natpmp', name={name!r}).start()\n"
        "print('up', flush=True)\n"
        "time.sleep(60)\n"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
    )
    try:
        assert owner.stdout.readline().strip() == "up"
        state = list_labs()[name]
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        owner.stdout.close()

    assert state["owner_pid"] == owner.pid
    assert f"nfl-{name}-gw" in _netns_names()
    daemon = state["miniupnpd_pid"]
    assert _process_start_time(daemon) is not None, "miniupnpd died with its owner"

    cleanup_stale()  # another test run may get there first: either will do

    assert name not in list_labs()
    assert not [n for n in _netns_names() if n.startswith(f"nfl-{name}-")]
    assert _process_start_time(daemon) is None, f"miniupnpd {daemon} still runs"


@lab_test
def test_tools_lab_runs_a_persistent_lab(lab_prerequisites: None) -> None:
    name = f"cli{os.getpid()}"

    def tool(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(TESTS.parent / "tools" / "lab"), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    try:
        up = tool("up", "--name", name, "--variant", "natpmp")
        assert up.returncode == 0, up.stderr
        assert f"tools/lab down --name {name}" in up.stdout
        assert tool("up", "--name", name).returncode == 1

        state = json.loads(tool("status", "--json").stdout)[name]
        assert (state["variant"], state["persistent"]) == ("natpmp", True)
        assert name not in cleanup_stale(), "a persistent lab was removed"

        shown = tool("exec", "--name", name, "--", "ip", "-br", "addr", "show", "eth0")
        assert "192.168.50.10/24" in shown.stdout
        found = tool("exec", "--name", name, "--", "sh", "-c", "command -v natpmpc")
        assert found.stdout.strip().endswith("/natpmpc")
        assert tool("exec", "--name", name, "--", "sh", "-c", "exit 3").returncode == 3
        wan = tool("exec", "--name", name, "--on", "wan", "--", "ip", "-br", "addr")
        assert "203.0.113.1/24" in wan.stdout

        lab = Lab.attach(name)
        assert lab.natpmp_map(8080, 8080) is not None
        listed = tool("mappings", "--name", name)
        assert "TCP 203.0.113.10:8080 -> 192.168.50.10:8080 from any" in listed.stdout
        restarted = tool("restart", "--name", name, "--forget")
        assert "0 mapping(s) restored" in restarted.stdout

        moved = tool("wan-ip", "--name", name, "203.0.113.44")
        assert moved.returncode == 0, moved.stderr
        assert json.loads(tool("status", "--json").stdout)[name]["wan_ip"] == (
            "203.0.113.44"
        )
        assert lab.natpmp_address()["address"] == "203.0.113.44"
        assert "Listening for NAT-PMP/PCP" in tool("log", "--name", name).stdout
    finally:
        down = tool("down", "--name", name)

    assert down.returncode == 0, down.stderr
    assert name not in list_labs()
    assert not [n for n in _netns_names() if n.startswith(f"nfl-{name}-")]


@lab_test
def test_labs_coexist_and_a_name_clash_harms_neither(
    lab_natpmp: Lab, lab_upnp: Lab
) -> None:
    assert lab_natpmp.natpmp_address() is not None
    assert lab_upnp.natpmp_address() is None

    clash = Lab("all", name=lab_natpmp.name)
    with pytest.raises(LabError, match="already exists"):
        clash.start()
    clash.close()

    assert lab_natpmp.gateway_running()
    assert lab_natpmp.natpmp_address() is not None


@lab_test
def test_echo_server_reports_a_port_already_taken(lab_all: Lab) -> None:
    with lab_all.echo_server(6000):
        with pytest.raises(LabError, match="echo server on lan tcp/6000"):
            lab_all.echo_server(6000)
        # The internet host has no route to the LAN; the gateway reaches it.
        assert lab_all.probe(6000, role="wan", host=lab_all.client_ip) is False
        assert lab_all.probe(6000, role="gw", host=lab_all.client_ip)


@lab_test
@pytest.mark.parametrize("fresh_lab", [{"variant": "all", "clients": 2}], indirect=True)
def test_two_clients_cannot_take_the_same_external_port(
    fresh_lab: Lab, upnpc: Path
) -> None:
    lab = fresh_lab
    first, second = lab.client_ips
    assert lab.client_roles == ["lan", "lan2"]

    taken = lab.exec("lan", [upnpc, "-a", first, "8080", "8080", "TCP"])
    assert taken.returncode == 0, taken.stdout + taken.stderr
    clash = lab.exec("lan2", [upnpc, "-a", second, "8080", "8080", "TCP"])
    assert clash.returncode != 0
    assert "718" in clash.stdout + clash.stderr  # ConflictInMappingEntry

    # The second client still maps another port, and only to itself.
    with lab.echo_server(8081, role="lan2") as server:
        assert lab.natpmp_map(8081, 8081, role="lan2") is not None
        assert lab.probe(8081)
        assert server.wait_for_peers(1)
    assert sorted(lab.mappings(), key=str) == [
        Mapping("TCP", 8080, first, 8080),
        Mapping("TCP", 8081, second, 8081),
    ]


@lab_test
def test_outbound_traffic_is_masqueraded_to_the_wan_address(lab_all: Lab) -> None:
    with lab_all.echo_server(7000, role="wan") as server:
        assert lab_all.probe(7000, role="lan", host=lab_all.wan_host_ip)
        assert server.wait_for_peers(1)[0][0] == lab_all.wan_ip
    _assert_empty(lab_all)


@lab_test
@pytest.mark.parametrize("fresh_lab", ["all"], indirect=True)
def test_a_new_wan_address_is_announced_and_mappings_follow_it(
    fresh_lab: Lab,
) -> None:
    lab = fresh_lab
    old = lab.wan_ip
    assert lab.natpmp_map(8080, 8080) is not None

    def announced() -> list[bytes]:
        # NAT-PMP's announcements: version 0, opcode 128, then the address.
        return [
            data[8:12]
            for source, _port, data in listener.received()
            if source == lab.gateway_lan_ip and data[:2] == b"\x00\x80"
        ]

    with lab.echo_server(5350, proto="udp", reply=False) as listener:
        lab.change_wan_ip("203.0.113.20")
        # PCP announcements come too, and may come first.
        deadline = time.monotonic() + 5.0
        while not announced() and time.monotonic() < deadline:
            time.sleep(0.05)
    assert bytes([203, 0, 113, 20]) in announced()

    assert lab.wan_ip == "203.0.113.20"
    assert lab.natpmp_address()["address"] == "203.0.113.20"
    with lab.echo_server(8080):
        assert lab.probe(8080)
        assert not lab.probe(8080, host=old)
    with pytest.raises(ValueError, match="other than the internet host"):
        lab.change_wan_ip(lab.wan_host_ip)
