"""natfwd: forward ports on home routers over UPnP IGD and NAT-PMP.

The public interface is this package's root, for most programs::

    import natfwd

    with natfwd.find_gateway(timeout=5) as gateway:
        mapping = gateway.add(9001, lease=3600, description="my relay")
        print(mapping.external_address, mapping.external_port)
    # leaving the block removed the mapping

and one low-level module per protocol: :mod:`natfwd.upnp`,
:mod:`natfwd.natpmp` and :mod:`natfwd.pcp`. :mod:`natfwd.isolated` runs
every call in a child process, so that a crash in C code cannot take the
host application down.
Everything else (modules whose names start with an underscore, and
``natfwd.cli``) is private.
"""

import logging

__version__ = "0.1.0"

from natfwd._exceptions import (
    BackendUnavailable,
    GatewayError,
    GatewayNotFound,
    GatewayTimeout,
    InvalidArgument,
    IsolatedCallCrashed,
    MalformedReply,
    NatfwdError,
    NATPMPError,
    NATPMPResult,
    NotSupported,
    PCPError,
    PCPResult,
    PortInUse,
    UPnPError,
    UPnPErrorCode,
)
from natfwd._gateway import (
    Gateway,
    GatewayStatus,
    Mapping,
    Method,
    find_gateway,
    forward,
)
from natfwd._validate import Protocol

__all__ = [
    "BackendUnavailable",
    "Gateway",
    "GatewayError",
    "GatewayNotFound",
    "GatewayStatus",
    "GatewayTimeout",
    "InvalidArgument",
    "IsolatedCallCrashed",
    "MalformedReply",
    "Mapping",
    "Method",
    "NATPMPError",
    "NATPMPResult",
    "NatfwdError",
    "NotSupported",
    "PCPError",
    "PCPResult",
    "PortInUse",
    "Protocol",
    "UPnPError",
    "UPnPErrorCode",
    "__version__",
    "find_gateway",
    "forward",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
