"""The lab gateway's configuration, and reading its state back.

This module holds what does not need a namespace: the variants, rendering of
``miniupnpd.conf.in`` and ``gateway.nft.in``, and parsers for the gateway's
nftables ruleset (``nft --json``) and for miniupnpd's lease file. The
:class:`~lab.topology.Lab` runs them in the gateway namespace.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from string import Template

__all__ = [
    "VARIANTS",
    "Lease",
    "Mapping",
    "Variant",
    "count_rules",
    "parse_leases",
    "parse_mappings",
    "render_config",
    "render_ruleset",
    "variant",
]

HERE = Path(__file__).resolve().parent

#: The three regular chains miniupnpd fills; their table is ``inet filter``.
TABLE = "filter"
FORWARD_CHAIN = "miniupnpd"
DNAT_CHAIN = "prerouting_miniupnpd"
SNAT_CHAIN = "postrouting_miniupnpd"


@dataclass(frozen=True)
class Variant:
    """Which protocols one kind of lab gateway speaks."""

    name: str
    upnp: bool
    natpmp: bool
    igd_version: int | None
    summary: str
    #: The peer (see :data:`lab.peers.PEERS`) that runs as the daemon.
    daemon: str = "miniupnpd"


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("all", True, True, 2, "UPnP IGDv2, NAT-PMP and PCP"),
        Variant("upnp", True, False, 2, "UPnP IGDv2 only; no NAT-PMP or PCP"),
        Variant("natpmp", False, True, None, "NAT-PMP and PCP only; no UPnP"),
        Variant("igdv1", True, False, 1, "UPnP IGDv1 only", daemon="miniupnpd-igdv1"),
    )
}


def variant(name: str) -> Variant:
    """Return the :class:`Variant` called *name*, or raise ``ValueError``."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(
            f"unknown lab variant {name!r}; expected one of {', '.join(VARIANTS)}"
        ) from None


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def render_config(
    *,
    name: str,
    variant: Variant,
    lan_ifname: str,
    wan_ifname: str,
    lan_network: str,
    http_port: int,
    lease_file: Path,
    uuid: str,
    min_lifetime: int,
    max_lifetime: int,
    ext_ip: str | None,
) -> str:
    """Return the text of a miniupnpd.conf for one lab gateway."""
    template = Template((HERE / "miniupnpd.conf.in").read_text())
    return template.substitute(
        name=name,
        variant=variant.name,
        lan_ifname=lan_ifname,
        wan_ifname=wan_ifname,
        lan_network=lan_network,
        ext_ip_line=f"ext_ip={ext_ip}" if ext_ip else "",
        enable_upnp=_yes(variant.upnp),
        enable_pcp_pmp=_yes(variant.natpmp),
        # Only an IGDv2 build knows the option; the IGDv1 build is v1 anyway.
        igd_line="" if variant.daemon == "miniupnpd-igdv1" else "force_igd_desc_v1=no",
        http_port=http_port,
        lease_file=lease_file,
        uuid=uuid,
        min_lifetime=min_lifetime,
        max_lifetime=max_lifetime,
    )


def render_ruleset(*, lan_ifname: str, wan_ifname: str) -> str:
    """Return the gateway's nftables ruleset, ready for ``nft -f -``."""
    template = Template((HERE / "gateway.nft.in").read_text())
    return template.substitute(lan_ifname=lan_ifname, wan_ifname=wan_ifname)


@dataclass(frozen=True)
class Mapping:
    """One port forwarding as the gateway's nftables ruleset holds it.

    It is read from the DNAT rule in ``prerouting_miniupnpd``. *remote_host*
    (the only source let in, or ``None`` for any) comes from the matching
    accept rule in the ``miniupnpd`` forward chain; *open* says whether there
    is such a rule, without which inbound traffic is translated but dropped.
    *description* is the rule's comment, where miniupnpd wrote one (2.3.9
    writes none: see :class:`Lease` for descriptions).
    """

    protocol: str
    external_port: int
    internal_ip: str
    internal_port: int
    remote_host: str | None = None
    open: bool = True
    description: str | None = None


#: Raw payload matches miniupnpd writes, by (base, bit offset, bit length).
_RAW_FIELDS = {
    ("nh", 72, 8): "ip.protocol",
    ("nh", 96, 32): "ip.saddr",
    ("nh", 128, 32): "ip.daddr",
    ("th", 0, 16): "th.sport",
    ("th", 16, 16): "th.dport",
}
_IP_PROTOCOLS = {6: "tcp", 17: "udp", "tcp": "tcp", "udp": "udp"}


def _field(left: dict) -> str | None:
    """Name the packet field an nft JSON match's left side reads."""
    if "meta" in left:
        return f"meta.{left['meta']['key']}"
    payload = left.get("payload")
    if payload is None:
        return None
    if "field" in payload:
        return f"{payload['protocol']}.{payload['field']}"
    return _RAW_FIELDS.get((payload["base"], payload["offset"], payload["len"]))


def _ipv4(value: object) -> str:
    """Return an address nft printed as dotted text, a number or hex text."""
    if isinstance(value, str) and value.startswith("0x"):
        value = int(value, 16)
    return str(ipaddress.IPv4Address(value))


def _rule_fields(rule: dict) -> tuple[dict[str, object], dict | None, bool]:
    """Return a rule's equality matches by field, its DNAT target, and
    whether it ends in accept."""
    fields: dict[str, object] = {}
    target: dict | None = None
    accept = False
    for expr in rule.get("expr", ()):
        if "match" in expr and expr["match"].get("op", "==") == "==":
            field = _field(expr["match"]["left"])
            if field:
                fields[field] = expr["match"]["right"]
        elif "dnat" in expr:
            target = expr["dnat"]
        elif "accept" in expr:
            accept = True
    return fields, target, accept


def _protocol_and_port(rule: dict, fields: dict[str, object]) -> tuple[str, int]:
    number = fields.get("ip.protocol", fields.get("meta.l4proto"))
    protocol = _IP_PROTOCOLS.get(number)  # type: ignore[arg-type]
    for name in ("tcp", "udp"):
        if f"{name}.dport" in fields:
            protocol = name
    port = fields.get("th.dport", fields.get("tcp.dport", fields.get("udp.dport")))
    if protocol is None or not isinstance(port, int):
        raise ValueError(f"cannot read protocol and port from nft rule {rule!r}")
    return protocol.upper(), port


def _rules(nft_json: str, chain: str) -> list[dict]:
    try:
        document = json.loads(nft_json)
    except json.JSONDecodeError as exc:
        raise ValueError(f"nft printed no JSON: {nft_json[:200]!r}") from exc

    return [
        item["rule"]
        for item in document.get("nftables", ())
        if "rule" in item and item["rule"].get("chain") == chain
    ]


def count_rules(nft_json: str) -> dict[str, int]:
    """Return how many rules each of miniupnpd's three chains holds.

    *nft_json* is ``nft --json list table inet filter`` output. All zero
    means the gateway forwards nothing on any client's behalf.
    """
    return {
        chain: len(_rules(nft_json, chain))
        for chain in (FORWARD_CHAIN, DNAT_CHAIN, SNAT_CHAIN)
    }


def parse_mappings(nft_json: str) -> list[Mapping]:
    """Return the port mappings in ``nft --json list table inet filter``.

    Each DNAT rule of ``prerouting_miniupnpd`` is one mapping, joined with
    the accept rule of the ``miniupnpd`` chain that lets its traffic through.
    """
    accepted: dict[tuple[str, str, int], str | None] = {}
    for rule in _rules(nft_json, FORWARD_CHAIN):
        fields, _target, accept = _rule_fields(rule)
        if not accept or "ip.daddr" not in fields:
            continue
        protocol, port = _protocol_and_port(rule, fields)
        remote = fields.get("ip.saddr")
        key = (protocol, _ipv4(fields["ip.daddr"]), port)
        accepted[key] = None if remote is None else _ipv4(remote)

    mappings = []
    for rule in _rules(nft_json, DNAT_CHAIN):
        fields, target, _accept = _rule_fields(rule)
        if target is None:
            continue
        protocol, external_port = _protocol_and_port(rule, fields)
        internal_ip = _ipv4(target["addr"])
        internal_port = int(target.get("port", external_port))
        key = (protocol, internal_ip, internal_port)
        mappings.append(
            Mapping(
                protocol=protocol,
                external_port=external_port,
                internal_ip=internal_ip,
                internal_port=internal_port,
                remote_host=accepted.get(key),
                open=key in accepted,
                description=rule.get("comment"),
            )
        )
    return mappings


@dataclass(frozen=True)
class Lease:
    """One line of miniupnpd's lease file.

    *expires* is a Unix time (0: no expiry); *description* is what the client
    asked for, for example ``libminiupnpc`` or ``NAT-PMP 8080 tcp``.
    """

    protocol: str
    external_port: int
    internal_ip: str
    internal_port: int
    expires: int
    description: str


def parse_leases(text: str) -> list[Lease]:
    """Parse miniupnpd's lease file: ``PROTO:EPORT:IADDR:IPORT:EXPIRES:DESC``."""
    leases = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(":", 5)
        if len(parts) != 6:
            raise ValueError(f"lease file line {number} is malformed: {line!r}")

        protocol, eport, iaddr, iport, expires, description = parts
        try:
            ipaddress.IPv4Address(iaddr)
            lease = Lease(
                protocol=protocol,
                external_port=int(eport),
                internal_ip=iaddr,
                internal_port=int(iport),
                expires=int(expires),
                description=description,
            )
        except ValueError as exc:
            raise ValueError(
                f"lease file line {number} is malformed: {line!r}"
            ) from exc
        leases.append(lease)
    return leases
