"""NAT-PMP gateways, over natfwd's libnatpmp.

The low-level NAT-PMP interface (RFC 6886): the gateway's public address,
and port mappings with a lifetime. Each request waits for its reply no longer
than its deadline; libnatpmp's retransmissions happen within it::

    from natfwd import natpmp

    with natpmp.Client() as client:
        mapping = client.map("tcp", 9001, 9001, lifetime=3600)
        print(mapping.external_port, mapping.lifetime, mapping.epoch)

Every reply carries the gateway's epoch (seconds since it started); an epoch
that goes backwards means the gateway restarted and lost its mappings.
"""

from __future__ import annotations

import logging
import selectors
import socket
import struct
from typing import NamedTuple

from natfwd import _bindings
from natfwd._deadline import Deadline
from natfwd._exceptions import (
    GatewayError,
    GatewayNotFound,
    GatewayTimeout,
    MalformedReply,
    NatfwdError,
    NATPMPError,
    NATPMPResult,
)
from natfwd._validate import (
    Protocol,
    check_address,
    check_lease,
    check_port,
    check_protocol,
)

__all__ = ["Client", "Mapping", "PublicAddress"]

log = logging.getLogger(__name__)
wire = logging.getLogger("natfwd.wire")


class PublicAddress(NamedTuple):
    """A public address reply: the gateway's WAN address and its epoch."""

    address: str
    epoch: int


class Mapping(NamedTuple):
    """A mapping reply: what the gateway granted, which may differ from
    what was asked. A lifetime of 0 means the mapping was removed."""

    protocol: Protocol
    internal_port: int
    external_port: int
    lifetime: int
    epoch: int


def _in_addr(address: str) -> int:
    """An IPv4 address as libnatpmp's in_addr_t (network byte order)."""
    return struct.unpack("=I", socket.inet_aton(address))[0]


def _dotted(value: int) -> str:
    return socket.inet_ntoa(struct.pack("=I", value & 0xFFFFFFFF))


class Client:
    """A NAT-PMP client bound to one gateway.

    *gateway* is the gateway's address; by default libnatpmp asks the OS for
    the default route's gateway.
    """

    def __init__(self, gateway: str | None = None) -> None:
        self._module = _bindings.natpmp()
        ffi, lib = self._module.ffi, self._module.lib
        forced = 0 if gateway is None else 1
        forced_address = (
            0 if gateway is None else _in_addr(check_address(gateway, "gateway"))
        )
        self._p = ffi.new("natpmp_t *")
        self._response = ffi.new("natpmpresp_t *")

        code = lib.initnatpmp(self._p, forced, forced_address)

        if code == lib.NATPMP_ERR_CANNOTGETGATEWAY:
            raise GatewayNotFound("no default gateway to ask over NAT-PMP")
        if code < 0:
            raise GatewayError(f"could not set up NAT-PMP (libnatpmp error {code})")
        self._open = True
        self.gateway = _dotted(self._p.gateway)
        log.debug("NAT-PMP client for gateway %s", self.gateway)

    def close(self) -> None:
        """Close the socket. Safe to call more than once."""
        if self._open:
            self._open = False
            self._module.lib.closenatpmp(self._p)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- requests -----------------------------------------------------------

    def public_address(
        self, *, timeout: float | None = 2.0, deadline: Deadline | None = None
    ) -> PublicAddress:
        """Ask the gateway for its public (WAN) address."""
        deadline = Deadline.given(deadline, timeout, 2.0)
        lib = self._module.lib

        wire.debug("NAT-PMP public address request -> %s", self.gateway)
        self._check("public address request", lib.sendpublicaddressrequest(self._p))
        response = self._wait("public address request", deadline)

        address = _dotted(lib.natfwd_natpmp_public_address(response))
        wire.debug("NAT-PMP public address <- %s epoch %d", address, response.epoch)
        return PublicAddress(address=address, epoch=int(response.epoch))

    def map(
        self,
        protocol: Protocol | str,
        internal_port: int,
        external_port: int = 0,
        *,
        lifetime: int = 3600,
        timeout: float | None = 2.0,
        deadline: Deadline | None = None,
    ) -> Mapping:
        """Ask for a mapping; external_port 0 lets the gateway choose.

        A lifetime of 0 removes the mapping of *internal_port* instead; use
        :meth:`unmap` for that.
        """
        protocol = check_protocol(protocol)
        internal_port = check_port(internal_port, "internal port")
        external_port = check_port(external_port, "external port", allow_zero=True)
        lifetime = check_lease(lifetime)
        deadline = Deadline.given(deadline, timeout, 2.0)
        return self._mapping_request(
            protocol, internal_port, external_port, lifetime, deadline
        )

    def unmap(
        self,
        protocol: Protocol | str,
        internal_port: int,
        *,
        timeout: float | None = 2.0,
        deadline: Deadline | None = None,
    ) -> None:
        """Remove the mapping of *internal_port* (a request with lifetime 0)."""
        protocol = check_protocol(protocol)
        internal_port = check_port(internal_port, "internal port")
        deadline = Deadline.given(deadline, timeout, 2.0)
        self._mapping_request(protocol, internal_port, 0, 0, deadline)

    def _mapping_request(
        self,
        protocol: Protocol,
        internal_port: int,
        external_port: int,
        lifetime: int,
        deadline: Deadline,
    ) -> Mapping:
        ffi, lib = self._module.ffi, self._module.lib
        code = (
            lib.NATPMP_PROTOCOL_TCP
            if protocol is Protocol.TCP
            else lib.NATPMP_PROTOCOL_UDP
        )
        what = "unmap request" if lifetime == 0 else "mapping request"

        wire.debug(
            "NAT-PMP %s %s %d -> %d lifetime %d",
            what,
            protocol,
            internal_port,
            external_port,
            lifetime,
        )
        self._check(
            what,
            lib.sendnewportmappingrequest(
                self._p, code, internal_port, external_port, lifetime
            ),
        )
        response = self._wait(what, deadline)

        private = ffi.new("uint16_t *")
        public = ffi.new("uint16_t *")
        granted = ffi.new("uint32_t *")
        lib.natfwd_natpmp_mapping(response, private, public, granted)
        wire.debug(
            "NAT-PMP %s <- %d -> %d lifetime %d epoch %d",
            what,
            private[0],
            public[0],
            granted[0],
            response.epoch,
        )
        if private[0] != internal_port:
            raise MalformedReply(
                f"NAT-PMP {what} for port {internal_port} was answered for "
                f"port {private[0]}",
                gateway=self.gateway,
            )
        if lifetime and not (public[0] and granted[0]):
            # RFC 6886: a mapping with no lifetime or no port does not exist.
            raise MalformedReply(
                f"NAT-PMP {what} for port {internal_port} was answered with "
                f"success but external port {public[0]} and lifetime "
                f"{granted[0]}: no mapping",
                gateway=self.gateway,
            )
        return Mapping(
            protocol=protocol,
            internal_port=int(private[0]),
            external_port=int(public[0]),
            lifetime=int(granted[0]),
            epoch=int(response.epoch),
        )

    # -- replies ------------------------------------------------------------

    def _wait(self, what: str, deadline: Deadline):
        """Read the reply to the pending request, retransmitting as libnatpmp
        schedules, until *deadline*."""
        ffi, lib = self._module.ffi, self._module.lib
        timeout_ms = ffi.new("long *")

        with selectors.DefaultSelector() as selector:
            selector.register(self._p.s, selectors.EVENT_READ)
            while True:
                code = lib.readnatpmpresponseorretry(self._p, self._response)
                if code >= 0:
                    return self._response
                if code == lib.NATPMP_ERR_WRONGPACKETSOURCE:
                    log.debug("NAT-PMP: ignored a datagram not from %s", self.gateway)
                elif code != lib.NATPMP_TRYAGAIN:
                    self._check(what, code)
                if deadline.expired():
                    raise GatewayTimeout(
                        f"NAT-PMP {what}: no answer from {self.gateway} "
                        "before the deadline",
                        gateway=self.gateway,
                    )
                self._check(what, lib.natfwd_natpmp_timeout_ms(self._p, timeout_ms))
                wait = min(deadline.remaining(), max(0, timeout_ms[0]) / 1000)
                selector.select(wait)

    def _check(self, what: str, code: int) -> None:
        """The one place libnatpmp's return codes become exceptions."""
        if code >= 0:
            return
        lib = self._module.lib
        results = {
            lib.NATPMP_ERR_UNSUPPORTEDVERSION: NATPMPResult.UNSUPPORTED_VERSION,
            lib.NATPMP_ERR_NOTAUTHORIZED: NATPMPResult.NOT_AUTHORIZED,
            lib.NATPMP_ERR_NETWORKFAILURE: NATPMPResult.NETWORK_FAILURE,
            lib.NATPMP_ERR_OUTOFRESOURCES: NATPMPResult.OUT_OF_RESOURCES,
            lib.NATPMP_ERR_UNSUPPORTEDOPCODE: NATPMPResult.UNSUPPORTED_OPCODE,
        }
        if code in results:
            if self._response.resultcode != results[code]:
                # libnatpmp gives a reply whose version is not 0, or whose
                # opcode is not a reply's, the error of the matching result
                # code. It is no refusal, and the request may have worked.
                raise MalformedReply(
                    f"NAT-PMP {what}: the reply from {self.gateway} is not a "
                    "NAT-PMP version 0 reply",
                    gateway=self.gateway,
                )
            raise NATPMPError(what, results[code], gateway=self.gateway)
        if code == lib.NATPMP_ERR_UNDEFINEDERROR:
            raise NATPMPError(
                what, int(self._response.resultcode), gateway=self.gateway
            )
        if code == lib.NATPMP_ERR_NOGATEWAYSUPPORT:
            raise GatewayTimeout(
                f"NAT-PMP {what}: {self.gateway} never answered", gateway=self.gateway
            )
        if code == lib.NATFWD_NATPMP_ERR_MALFORMED:
            raise MalformedReply(
                f"NAT-PMP {what}: the reply from {self.gateway} is malformed",
                gateway=self.gateway,
            )
        if code == lib.NATPMP_ERR_RECVFROM:
            raise GatewayError(
                f"NAT-PMP {what}: {self.gateway} refused it (no NAT-PMP service there)",
                gateway=self.gateway,
            )
        if code == lib.NATPMP_ERR_INVALIDARGS:
            raise NatfwdError(f"NAT-PMP {what}: libnatpmp refused the arguments")
        raise GatewayError(
            f"NAT-PMP {what} failed (libnatpmp error {code})", gateway=self.gateway
        )
