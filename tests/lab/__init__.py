"""natfwd's gateway lab: a real miniupnpd between network namespaces.

Public API::

    from lab import Lab, peer_path

    with Lab(variant="all") as lab:           # needs root, ip, nft, ss
        upnpc = peer_path("upnpc")            # upstream client, built on demand
        lab.client_exec([upnpc, "-a", lab.client_ip, "8080", "8080", "TCP"])
        with lab.echo_server(8080):           # listener on the LAN client
            assert lab.probe(8080)            # from the internet, via wan_ip
        assert lab.mappings()                 # what the gateway really forwards

Modules: :mod:`lab.topology` (the :class:`Lab` itself, namespaces, daemon),
:mod:`lab.gateway` (variants, miniupnpd configuration, reading mappings back),
:mod:`lab.peers` (building miniupnpd, upnpc and natpmpc from pinned sources),
``echo.py`` (the echo server and client run inside namespaces).
``tools/lab`` drives the same API from a shell.
"""

import logging

from .gateway import VARIANTS, Lease, Mapping, Variant
from .peers import PEERS, PeerBuildError, peer_bin_dir, peer_path
from .topology import EchoServer, Lab, LabError, cleanup_stale, list_labs

__all__ = [
    "PEERS",
    "VARIANTS",
    "EchoServer",
    "Lab",
    "LabError",
    "Lease",
    "Mapping",
    "PeerBuildError",
    "Variant",
    "cleanup_stale",
    "list_labs",
    "peer_bin_dir",
    "peer_path",
]

logging.getLogger("natfwd.lab").addHandler(logging.NullHandler())
