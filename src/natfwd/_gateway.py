"""The protocol-independent gateway: find it, map ports, remove them.

find_gateway() asks by NAT-PMP and by UPnP at the same time and keeps the
first gateway that answers well. The Gateway it returns maps ports the same
way whatever the protocol, handles what real routers do (leases they will
not grant, ports held by someone else, a WAN address that is itself behind
another NAT), and reports what was granted rather than what was asked.

Used as a context manager, a Gateway removes every mapping it added.
"""

from __future__ import annotations

import contextlib
import enum
import ipaddress
import logging
import random
import socket
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple

from natfwd import _bindings, _ssdp, natpmp, upnp
from natfwd._deadline import Deadline
from natfwd._exceptions import (
    BackendUnavailable,
    GatewayError,
    GatewayNotFound,
    GatewayTimeout,
    InvalidArgument,
    MalformedReply,
    NatfwdError,
    NATPMPError,
    NotSupported,
    PCPError,
    PortInUse,
    UPnPError,
    UPnPErrorCode,
)
from natfwd._validate import (
    Protocol,
    check_address,
    check_description,
    check_lease,
    check_port,
    check_protocol,
)

if TYPE_CHECKING:
    from natfwd import pcp

__all__ = [
    "Gateway",
    "GatewayStatus",
    "Mapping",
    "Method",
    "find_gateway",
    "forward",
]

log = logging.getLogger("natfwd")

DEFAULT_DESCRIPTION = "natfwd"
DEFAULT_LEASE = 3600
#: Seconds a whole operation may take when the caller names no timeout.
DEFAULT_TIMEOUT = 10.0

# NAT-PMP has no permanent mappings (a lifetime of 0 deletes); a request for
# a permanent one asks for a week, and the gateway says what it grants.
NATPMP_LONGEST_LEASE = 7 * 24 * 3600

NATPMP_PORT = 5351

# How long an add keeps back from its deadline, so that a request that ran
# out of time can still be taken back.
CLEANUP_RESERVE = 1.0

# How long after the race began a gateway found by a less preferred
# protocol waits for the preferred one's answer (see _Race).
PREFERENCE_GRACE = 0.25

# How much sooner than the caller's deadline each finder's own ends.
FINDER_MARGIN = 0.1

# Devices with an unusable description a UPnP search passes over, at most.
UNUSABLE_DEVICES_SKIPPED = 4

# Ports tried when an IGD v1 holds the wanted one and another will do.
ALTERNATE_PORT_TRIES = 8


class Method(str, enum.Enum):
    """How natfwd talks to a gateway."""

    NATPMP = "natpmp"
    PCP = "pcp"
    UPNP = "upnp"

    def __str__(self) -> str:
        return self.value


class Mapping(NamedTuple):
    """A port mapping as granted by the gateway.

    ``lease`` is the granted lease in seconds, 0 for permanent. ``notes``
    say where the grant differs from the request, or what else the user
    should know (a double NAT, a permanent lease the gateway insisted on).
    """

    method: Method
    protocol: Protocol
    internal_address: str
    internal_port: int
    external_port: int
    external_address: str
    lease: int
    description: str
    double_nat: bool
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "method": self.method.value,
            "protocol": self.protocol.value,
            "internal_address": self.internal_address,
            "internal_port": self.internal_port,
            "external_address": self.external_address or None,
            "external_port": self.external_port,
            "lease": self.lease,
            "description": self.description,
            "double_nat": self.double_nat,
            "notes": list(self.notes),
        }


class GatewayStatus(NamedTuple):
    """What natfwd knows of the gateway it found."""

    method: Method
    address: str
    external_address: str
    double_nat: bool
    details: dict[str, object]

    def to_json(self) -> dict[str, object]:
        return {
            "method": self.method.value,
            "gateway": self.address,
            "external_address": self.external_address or None,
            "double_nat": self.double_nat,
            **self.details,
        }


class Gateway:
    """A gateway found by :func:`find_gateway`.

    Subclasses speak one protocol; the methods here are the same for all.
    """

    method: Method
    address: str

    def __init__(self) -> None:
        self._added: list[Mapping] = []

    # -- the interface ------------------------------------------------------

    def status(self, *, timeout: float | None = None, deadline=None) -> GatewayStatus:
        raise NotImplementedError

    def external_address(self, *, timeout: float | None = None, deadline=None) -> str:
        raise NotImplementedError

    def add(
        self,
        internal_port: int,
        external_port: int | None = None,
        protocol: Protocol | str = Protocol.TCP,
        *,
        lease: int = DEFAULT_LEASE,
        description: str = DEFAULT_DESCRIPTION,
        internal_address: str | None = None,
        any_port: bool = False,
        timeout: float | None = None,
        deadline: Deadline | None = None,
    ) -> Mapping:
        """Map *external_port* (default: the same number) to *internal_port*.

        With *any_port*, a gateway that holds the external port already may
        give another one; the returned Mapping says which.
        """
        internal_port = check_port(internal_port, "internal port")
        external_port = check_port(
            internal_port if external_port is None else external_port, "external port"
        )
        protocol = check_protocol(protocol)
        lease = check_lease(lease)
        description = check_description(description)
        if internal_address is not None:
            internal_address = check_address(internal_address, "internal address")
        deadline = Deadline.given(deadline, timeout, DEFAULT_TIMEOUT)

        mapping = self._add(
            internal_port,
            external_port,
            protocol,
            lease,
            description,
            internal_address,
            any_port,
            deadline,
        )

        # A renewal replaces the record of the mapping it renews, so a
        # long-lived Gateway does not collect one record per renewal.
        self._added = [
            m
            for m in self._added
            if (m.internal_port, m.external_port, m.protocol)
            != (mapping.internal_port, mapping.external_port, mapping.protocol)
        ]
        self._added.append(mapping)
        log.info(
            "mapped %s:%d/%s to %s:%d via %s (lease %s)",
            mapping.external_address or "?",
            mapping.external_port,
            protocol,
            mapping.internal_address,
            mapping.internal_port,
            self.method,
            mapping.lease or "permanent",
        )
        return mapping

    def remove(
        self,
        internal_port: int,
        external_port: int | None = None,
        protocol: Protocol | str = Protocol.TCP,
        *,
        timeout: float | None = None,
        deadline: Deadline | None = None,
    ) -> None:
        """Remove a mapping made by :meth:`add` (or by anyone, on UPnP)."""
        internal_port = check_port(internal_port, "internal port")
        external_port = check_port(
            internal_port if external_port is None else external_port, "external port"
        )
        protocol = check_protocol(protocol)
        deadline = Deadline.given(deadline, timeout, DEFAULT_TIMEOUT)

        self._remove(internal_port, external_port, protocol, deadline)

        self._added = [
            m
            for m in self._added
            if (m.internal_port, m.external_port, m.protocol)
            != (internal_port, external_port, protocol)
        ]
        log.info(
            "removed the mapping of %d/%s via %s", external_port, protocol, self.method
        )

    def mappings(
        self, *, timeout: float | None = None, deadline=None
    ) -> list[upnp.PortMapping]:
        """Every mapping the gateway holds (UPnP only: NAT-PMP and PCP have
        no way to list them)."""
        name = getattr(self, "protocol_name", self.method.value)
        raise NotSupported(
            f"{name} gateways cannot list their mappings; use UPnP (--via upnp)",
            gateway=self.address,
        )

    def close(self) -> None:
        """Release the connection. Mappings stay; see :meth:`remove_added`."""

    def remove_added(
        self, *, timeout: float | None = DEFAULT_TIMEOUT
    ) -> list[NatfwdError]:
        """Remove every mapping this object added; returns the failures."""
        deadline = Deadline.given(None, timeout, DEFAULT_TIMEOUT)
        failures = []
        for mapping in list(reversed(self._added)):
            try:
                self.remove(
                    mapping.internal_port,
                    mapping.external_port,
                    mapping.protocol,
                    deadline=deadline,
                )
            except NatfwdError as exc:
                log.warning(
                    "could not remove the mapping of %d/%s: %s",
                    mapping.external_port,
                    mapping.protocol,
                    exc,
                )
                failures.append(exc)
        return failures

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.remove_added()
        finally:
            self.close()

    # -- for subclasses -----------------------------------------------------

    def _add(
        self,
        internal_port,
        external_port,
        protocol,
        lease,
        description,
        internal_address,
        any_port,
        deadline,
    ) -> Mapping:
        raise NotImplementedError

    def _remove(self, internal_port, external_port, protocol, deadline) -> None:
        raise NotImplementedError


class NATPMPGateway(Gateway):
    """A gateway that answered NAT-PMP."""

    method = Method.NATPMP
    protocol_name = "NAT-PMP"
    # What the gateway says when it refuses: it then made nothing.
    refusals: tuple[type[Exception], ...] = (NATPMPError, InvalidArgument)

    def __init__(self, client: natpmp.Client, public: natpmp.PublicAddress) -> None:
        super().__init__()
        self._client = client
        self._public = public
        self.address = client.gateway
        self.epoch = public.epoch

    def close(self) -> None:
        self._client.close()

    def status(self, *, timeout=None, deadline=None) -> GatewayStatus:
        deadline = Deadline.given(deadline, timeout, DEFAULT_TIMEOUT)
        public = self._client.public_address(deadline=deadline)
        self.epoch = public.epoch
        return GatewayStatus(
            method=self.method,
            address=self.address,
            external_address=public.address,
            double_nat=not upnp.is_public(public.address),
            details={"epoch": public.epoch},
        )

    def external_address(self, *, timeout=None, deadline=None) -> str:
        return self.status(timeout=timeout, deadline=deadline).external_address

    def _add(
        self,
        internal_port,
        external_port,
        protocol,
        lease,
        description,
        internal_address,
        any_port,
        deadline,
    ) -> Mapping:
        notes = []
        name = self.protocol_name
        if internal_address is not None and internal_address != self._local_address():
            raise InvalidArgument(
                f"{name} maps ports to the host that asks; internal address "
                f"{internal_address!r} is not this host's"
            )
        if description != DEFAULT_DESCRIPTION:
            notes.append(f"{name} mappings carry no description")
        asked = lease or NATPMP_LONGEST_LEASE
        if not lease:
            notes.append(
                f"{name} has no permanent mappings; asked for the longest lease"
            )

        try:
            granted = self._client.map(
                protocol,
                internal_port,
                external_port,
                lifetime=asked,
                deadline=_work(deadline),
            )
        except self.refusals:
            raise  # refused: the gateway made nothing
        except GatewayError as exc:
            # Timed out, or answered what nobody can read: the mapping may
            # exist all the same.
            if not self._take_back(protocol, internal_port, deadline):
                raise _maybe_left(exc) from exc
            raise

        if granted.external_port != external_port:
            notes.append(
                f"the gateway granted external port {granted.external_port} "
                f"instead of {external_port}"
            )
        if granted.lifetime != asked:
            notes.append(
                f"the gateway granted a lease of {granted.lifetime} s "
                f"instead of {asked} s"
            )
        self._note_epoch(granted.epoch)
        external_address = self._granted_address(granted)
        return Mapping(
            method=self.method,
            protocol=protocol,
            internal_address=self._local_address(),
            internal_port=internal_port,
            external_port=granted.external_port,
            external_address=external_address,
            lease=granted.lifetime,
            description=description,
            double_nat=not upnp.is_public(external_address),
            notes=tuple(notes),
        )

    def _granted_address(self, granted) -> str:
        """The external address of a new mapping: NAT-PMP has one for all."""
        return self._public.address

    def _take_back(self, protocol, internal_port, deadline) -> bool:
        """After a request that failed, make sure no mapping is left."""
        try:
            self._client.unmap(
                protocol, internal_port, deadline=deadline.within(CLEANUP_RESERVE)
            )
        except NatfwdError as exc:
            log.info("could not take back the mapping of %d: %s", internal_port, exc)
            return False
        return True

    def _remove(self, internal_port, external_port, protocol, deadline) -> None:
        self._client.unmap(protocol, internal_port, deadline=deadline)

    def _note_epoch(self, epoch: int) -> None:
        if epoch < self.epoch:
            log.warning(
                "the gateway's %s epoch went back: it has restarted", self.protocol_name
            )
        self.epoch = epoch

    def _local_address(self) -> str:
        """The address this host uses towards the gateway (nothing is sent)."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((self.address, NATPMP_PORT))
            return sock.getsockname()[0]


class PCPGateway(NATPMPGateway):
    """A gateway that answered PCP.

    Mappings work as over NAT-PMP; every reply also carries the external
    address, which PCP has no other way to ask for.
    """

    method = Method.PCP
    protocol_name = "PCP"
    refusals = (PCPError, InvalidArgument)

    def __init__(self, client: pcp.Client, announcement: pcp.Announcement) -> None:
        Gateway.__init__(self)
        self._client = client
        self._external = ""
        self.address = client.gateway
        self.epoch = announcement.epoch

    def status(self, *, timeout=None, deadline=None) -> GatewayStatus:
        deadline = Deadline.given(deadline, timeout, DEFAULT_TIMEOUT)
        announcement = self._client.announce(deadline=deadline)
        self._note_epoch(announcement.epoch)
        return GatewayStatus(
            method=self.method,
            address=self.address,
            external_address=self._external,
            double_nat=not upnp.is_public(self._external),
            details={"epoch": announcement.epoch},
        )

    def _granted_address(self, granted) -> str:
        self._external = granted.external_address
        return granted.external_address


class UPnPGateway(Gateway):
    """An IGD that answered over UPnP."""

    method = Method.UPNP

    def __init__(self, igd: upnp.IGD, igd_status: upnp.IGDStatus) -> None:
        super().__init__()
        self._igd = igd
        self.igd_status = igd_status
        self.address = igd.address

    def close(self) -> None:
        self._igd.close()

    def status(self, *, timeout=None, deadline=None) -> GatewayStatus:
        deadline = Deadline.given(deadline, timeout, DEFAULT_TIMEOUT)
        address = self._igd.external_address(deadline=deadline)
        try:
            state, uptime, _ = self._igd.status_info(deadline=deadline)
        except UPnPError:
            state, uptime = "", 0
        return GatewayStatus(
            method=self.method,
            address=self.address,
            external_address=address,
            double_nat=not upnp.is_public(address),
            details={
                "igd_version": self._igd.version,
                "location": self._igd.location,
                "control_url": self._igd.control_url,
                "lan_address": self._igd.lan_address,
                "connection": state or None,
                "uptime": uptime,
            },
        )

    def external_address(self, *, timeout=None, deadline=None) -> str:
        deadline = Deadline.given(deadline, timeout, DEFAULT_TIMEOUT)
        return self._igd.external_address(deadline=deadline)

    def mappings(self, *, timeout=None, deadline=None) -> list[upnp.PortMapping]:
        deadline = Deadline.given(deadline, timeout, DEFAULT_TIMEOUT)
        return self._igd.port_mappings(deadline=deadline)

    def _add(
        self,
        internal_port,
        external_port,
        protocol,
        lease,
        description,
        internal_address,
        any_port,
        deadline,
    ) -> Mapping:
        client = internal_address or self._igd.lan_address
        notes: list[str] = []
        work = _work(deadline)
        asked = _Asked()

        try:
            external_port, lease = self._add_with_fallbacks(
                internal_port,
                external_port,
                protocol,
                lease,
                description,
                client,
                any_port,
                work,
                notes,
                asked,
            )
        except (UPnPError, InvalidArgument):
            raise  # refused: the gateway made nothing
        except GatewayError as exc:
            # Timed out, or answered what nobody can read: the mapping may
            # exist all the same.
            ports = list(asked.ports)
            known = True
            if asked.gateway_chose:
                made = self._made_since(
                    asked.ours_before, client, internal_port, protocol, deadline
                )
                known = made is not None
                ports += made or []
            taken_back = [
                self._take_back(port, protocol, client, internal_port, deadline)
                for port in ports
            ]
            if not (known and all(taken_back)):
                raise _maybe_left(exc) from exc
            raise

        granted = lease
        try:
            entry = self._igd.get_port_mapping(external_port, protocol, deadline=work)
        except NatfwdError as exc:
            log.debug("could not read back the new mapping: %s", exc)
        else:
            self._check_granted(entry, external_port, protocol, client, internal_port)
        if entry is not None:
            granted = entry.lease
            if not lease and granted:
                notes.append(
                    f"the gateway has no permanent leases; it granted {granted} s"
                )
            elif lease and granted and granted < lease - 5:
                notes.append(
                    f"the gateway granted a lease of {granted} s instead of {lease} s"
                )
            elif lease and not granted:
                notes.append("the gateway made the mapping permanent")

        try:
            address = self._igd.external_address(deadline=work)
        except NatfwdError as exc:
            log.debug("could not read the external address: %s", exc)
            address = ""
        double_nat = not upnp.is_public(address)
        if double_nat:
            notes.append(
                "the gateway's WAN address is "
                + (f"private ({address})" if address else "unknown")
                + ": another NAT may lie beyond it"
            )
        return Mapping(
            method=self.method,
            protocol=protocol,
            internal_address=client,
            internal_port=internal_port,
            external_port=external_port,
            external_address=address,
            lease=granted,
            description=description,
            double_nat=double_nat,
            notes=tuple(notes),
        )

    def _add_with_fallbacks(
        self,
        internal_port,
        external_port,
        protocol,
        lease,
        description,
        client,
        any_port,
        deadline,
        notes,
        asked,
    ):
        """AddPortMapping, with what real routers need; returns (port, lease).

        Every port asked for is entered in *asked*, unless the gateway said
        that someone else holds it.
        """
        igd = self._igd

        def add(port: int, seconds: int) -> None:
            asked.ports[port] = None
            igd.add_port_mapping(
                port,
                internal_port,
                client,
                protocol,
                description,
                seconds,
                deadline=deadline,
            )

        try:
            add(external_port, lease)
            return external_port, lease
        except PortInUse as exc:
            asked.ports.pop(external_port, None)
            holder = exc.holder
            if holder is not None and (
                holder.internal_client,
                holder.internal_port,
            ) == (
                client,
                internal_port,
            ):
                # Ours already (a restart, or a gateway that refuses to
                # update in place): replace it.
                igd.delete_port_mapping(external_port, protocol, deadline=deadline)
                add(external_port, lease)
                notes.append(
                    "replaced an earlier mapping of the same port to this host"
                )
                return external_port, lease
            if not any_port:
                raise
            port = self._another_port(
                internal_port,
                external_port,
                protocol,
                lease,
                description,
                client,
                deadline,
                asked,
            )
            notes.append(
                f"external port {external_port} was taken; the gateway gave {port}"
            )
            return port, lease
        except UPnPError as exc:
            if exc.code == UPnPErrorCode.ACTION_NOT_AUTHORIZED:
                whom = "another host" if client != igd.lan_address else "this host"
                raise UPnPError(
                    exc.action,
                    exc.code,
                    f"the gateway does not allow mapping ports to {whom} "
                    f"({client}): UPnP error 606 (ACTION_NOT_AUTHORIZED)",
                    gateway=self.address,
                ) from exc
            if exc.code != UPnPErrorCode.ONLY_PERMANENT_LEASES_SUPPORTED or lease == 0:
                raise
            add(external_port, 0)
            notes.append(
                "the gateway only grants permanent leases: the mapping is permanent"
            )
            return external_port, 0

    def _another_port(
        self,
        internal_port,
        external_port,
        protocol,
        lease,
        description,
        client,
        deadline,
        asked,
    ) -> int:
        igd = self._igd
        if igd.version >= 2:
            try:
                asked.ours_before = frozenset(
                    self._ours(client, internal_port, protocol, deadline)
                )
            except NatfwdError as exc:
                log.debug("could not list the mappings first: %s", exc)
            asked.gateway_chose = True
            return igd.add_any_port_mapping(
                external_port,
                internal_port,
                client,
                protocol,
                description,
                lease,
                deadline=deadline,
            )
        rng = random.SystemRandom()
        for _ in range(ALTERNATE_PORT_TRIES):
            port = rng.randrange(1024, 65536)
            asked.ports[port] = None
            try:
                igd.add_port_mapping(
                    port,
                    internal_port,
                    client,
                    protocol,
                    description,
                    lease,
                    deadline=deadline,
                )
            except PortInUse:
                asked.ports.pop(port, None)
                continue
            return port
        raise PortInUse(
            "AddPortMapping",
            f"external port {external_port}/{protocol} is mapped already and "
            f"{ALTERNATE_PORT_TRIES} other ports were taken too",
            gateway=self.address,
        )

    def _check_granted(
        self, entry, external_port, protocol, client, internal_port
    ) -> None:
        """Whether the gateway holds the mapping it said it made.

        miniupnpc reports success for any reply to AddPortMapping that
        carries no error code, an empty or unreadable one included; what
        the gateway reads back is the truth.
        """
        if entry is None:
            raise MalformedReply(
                f"AddPortMapping: the gateway acknowledged {external_port}/"
                f"{protocol} but holds no such mapping",
                gateway=self.address,
            )
        if entry.internal_port != internal_port or not _same_host(
            entry.internal_client, client
        ):
            raise PortInUse(
                "AddPortMapping",
                f"external port {external_port}/{protocol} is mapped to "
                f"{entry.internal_client}:{entry.internal_port}, not to "
                f"{client}:{internal_port}",
                holder=entry,
                gateway=self.address,
            )

    def _ours(self, client, internal_port, protocol, deadline) -> list[int]:
        """The external ports the IGD maps to *client*:*internal_port*."""
        return [
            m.external_port
            for m in self._igd.port_mappings(deadline=deadline)
            if m.protocol == protocol
            and m.internal_port == internal_port
            and _same_host(m.internal_client, client)
        ]

    def _made_since(
        self, before, client, internal_port, protocol, deadline
    ) -> list[int] | None:
        """The ports an AddAnyPortMapping with no readable answer may have
        mapped: those that map to the client now and did not *before*.
        None when that cannot be known."""
        if before is None:
            return None
        try:
            now = self._ours(
                client, internal_port, protocol, deadline.within(CLEANUP_RESERVE)
            )
        except NatfwdError as exc:
            log.info("could not look for a mapping the gateway chose: %s", exc)
            return None
        return [port for port in now if port not in before]

    def _take_back(self, port, protocol, client, internal_port, deadline) -> bool:
        """Remove the mapping of *port* an add may have left, if it is ours.

        Returns whether the gateway is known to hold no such mapping now.
        """
        cleanup = deadline.within(CLEANUP_RESERVE)
        try:
            entry = self._igd.get_port_mapping(port, protocol, deadline=cleanup)
            if entry is None:
                return True
            if entry.internal_port != internal_port or not _same_host(
                entry.internal_client, client
            ):
                return True  # someone else's
        except NatfwdError as exc:
            log.debug("could not read back %d/%s: %s", port, protocol, exc)
        try:
            self._igd.delete_port_mapping(port, protocol, deadline=cleanup)
        except UPnPError as exc:
            if exc.code == UPnPErrorCode.NO_SUCH_ENTRY_IN_ARRAY:
                return True
            log.info("could not take back the mapping of %d: %s", port, exc)
            return False
        except NatfwdError as exc:
            log.info("could not take back the mapping of %d: %s", port, exc)
            return False
        return True

    def _remove(self, internal_port, external_port, protocol, deadline) -> None:
        # Some gateways (miniupnpd among them) answer a deletion of a
        # mapping that does not exist with success; look first, so that the
        # caller learns the truth.
        if (
            self._igd.get_port_mapping(external_port, protocol, deadline=deadline)
            is None
        ):
            raise UPnPError(
                "DeletePortMapping",
                UPnPErrorCode.NO_SUCH_ENTRY_IN_ARRAY,
                f"the gateway has no mapping of external port "
                f"{external_port}/{protocol}",
                gateway=self.address,
            )
        self._igd.delete_port_mapping(external_port, protocol, deadline=deadline)

        # miniupnpc takes any reply without an error code for success, an
        # empty or unreadable one included: look again.
        try:
            left = self._igd.get_port_mapping(
                external_port, protocol, deadline=deadline
            )
        except NatfwdError as exc:
            log.debug("could not read back the removed mapping: %s", exc)
            return
        if left is not None:
            raise MalformedReply(
                f"DeletePortMapping: the gateway acknowledged it but still holds "
                f"{external_port}/{protocol}",
                gateway=self.address,
            )


class _Asked:
    """What an add asked an IGD for, so that a failure can take it back.

    ``ports`` are the external ports asked for by number. When the IGD
    was asked to choose one (AddAnyPortMapping), ``ours_before`` holds the
    external ports that mapped to the same client and port before, if they
    could be listed, so that one it made can be told from them should its
    answer never come.
    """

    def __init__(self) -> None:
        self.ports: dict[int, None] = {}
        self.gateway_chose = False
        self.ours_before: frozenset[int] | None = None


def _work(deadline: Deadline) -> Deadline:
    """The part of *deadline* an add may spend on its requests.

    The rest is kept to take back a request that ran out of time: one
    second, or a third of what is left when that is less, so that a short
    deadline still leaves time to ask.
    """
    return deadline.reserve(min(CLEANUP_RESERVE, deadline.remaining() / 3))


def _maybe_left(exc: GatewayError) -> GatewayError:
    """*exc*, saying that a mapping may be left behind."""
    return type(exc)(
        f"{exc}; taking the mapping back failed too, so it may be left on the gateway",
        gateway=exc.gateway,
    )


def _same_host(reported: str, client: str) -> bool:
    """Whether the internal client a gateway reports may be *client*.

    Only an address that differs says no: a gateway that reports the client
    empty, or in some form of its own, gives no reason to think that the
    mapping is someone else's.
    """
    try:
        return ipaddress.ip_address(reported.strip()) == ipaddress.ip_address(client)
    except ValueError:
        return True


# -- finding the gateway -------------------------------------------------------


def _find_pcp(gateway: str | None, deadline: Deadline) -> PCPGateway:
    # Imported here: PCP is asked for only by name, and its hashing modules
    # would slow down every other run of the command line.
    from natfwd import pcp  # noqa: PLC0415

    client = pcp.Client(gateway)
    try:
        announcement = client.announce(deadline=deadline)
    except GatewayTimeout as exc:
        client.close()
        raise GatewayNotFound(f"no PCP answer from {client.gateway}") from exc
    except GatewayError as exc:
        client.close()
        if isinstance(exc.__cause__, ConnectionRefusedError):
            # As NAT-PMP: a closed port is no gateway, not a failing one.
            raise GatewayNotFound(f"no PCP service at {client.gateway}") from exc
        raise
    except BaseException:
        client.close()
        raise
    return PCPGateway(client, announcement)


def _find_natpmp(gateway: str | None, deadline: Deadline) -> NATPMPGateway:
    client = natpmp.Client(gateway)
    try:
        public = client.public_address(deadline=deadline)
    except GatewayTimeout as exc:
        # Silence on port 5351 is what an address without NAT-PMP gives.
        client.close()
        raise GatewayNotFound(f"no NAT-PMP answer from {client.gateway}") from exc
    except BaseException:
        client.close()
        raise
    return NATPMPGateway(client, public)


def _find_upnp(
    upnp_url: str | None,
    gateway: str | None,
    interface: str | None,
    deadline: Deadline,
) -> UPnPGateway:
    if upnp_url is not None:
        igd = upnp.IGD(upnp_url, deadline=deadline)
        return UPnPGateway(igd, igd.status(deadline=deadline))
    # The first answer is taken, but a device that answers first with a
    # description natfwd cannot use must not hide the gateway behind it:
    # search again without it, as long as the deadline allows.
    unusable: list[str] = []
    failure: NatfwdError | None = None
    for _ in range(UNUSABLE_DEVICES_SKIPPED + 1):
        devices = upnp.discover(
            deadline=deadline,
            interface=interface,
            first=True,
            unicast=gateway,
            exclude=unusable,
        )
        if not devices:
            break
        try:
            igd, status = upnp.IGD.select(devices, deadline=deadline)
        except (GatewayNotFound, NotSupported, MalformedReply) as exc:
            unusable += [device.location for device in devices]
            failure = exc
            continue
        return UPnPGateway(igd, status)
    if failure is not None:
        raise failure
    raise GatewayNotFound("no IGD answered the UPnP search")


class _Race:
    """Runs the finders side by side and keeps the best that succeeds.

    Finders are given in order of preference. The first to succeed wins,
    unless one preferred to it is still asking and the race began less
    than PREFERENCE_GRACE ago: it may still answer in that time, so that
    which protocol is used does not hang on a few milliseconds of timing,
    and an ``add`` and a later ``remove`` pick the same one. The grace runs
    from the start, not from the first success: a preferred protocol the
    gateway does not speak (and answers nothing to) then costs a slow
    winner nothing. A gateway found by a finder that
    did not win is closed, even one found after the race was decided, so a
    slow loser never leaks a socket or miniupnpc's memory.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._order: list[str] = []
        self._found: dict[str, Gateway] = {}
        self._errors: dict[str, BaseException] = {}
        self._decided = False

    def run(self, finders: dict[str, object], deadline: Deadline) -> Gateway:
        self._order = list(finders)
        grace_end = time.monotonic() + PREFERENCE_GRACE
        for name, finder in finders.items():
            threading.Thread(
                target=self._attempt,
                args=(name, finder),
                name=f"natfwd: {name}",
                daemon=True,
            ).start()

        with self._lock:
            winner = self._decide(deadline, grace_end)
            self._decided = True
            losers = [g for name, g in self._found.items() if g is not winner]
            errors = dict(self._errors)
        for gateway in losers:
            gateway.close()

        if winner is not None:
            return winner
        raise _no_gateway(errors, timed_out=len(errors) < len(finders))

    def _decide(self, deadline: Deadline, grace_end: float) -> Gateway | None:
        """Wait (holding the lock) until the best gateway is known."""
        while True:
            best = next((n for n in self._order if n in self._found), None)
            if best is not None:
                preferred = self._order[: self._order.index(best)]
                waiting = [n for n in preferred if n not in self._errors]
                if not waiting or time.monotonic() >= grace_end:
                    return self._found[best]
            elif len(self._errors) == len(self._order):
                return None
            if deadline.expired():
                return self._found[best] if best is not None else None
            wait = deadline.remaining()
            if best is not None:
                wait = min(wait, max(0.0, grace_end - time.monotonic()))
            self._changed.wait(wait)

    def _attempt(self, name: str, finder) -> None:
        try:
            found = finder()
        except BaseException as exc:
            with self._lock:
                self._errors[name] = exc
                self._changed.notify_all()
            return
        with self._lock:
            if not self._decided:
                self._found[name] = found
                self._changed.notify_all()
                return
        found.close()


def _no_gateway(errors: dict[str, BaseException], *, timed_out: bool) -> NatfwdError:
    unexpected = [e for e in errors.values() if not isinstance(e, NatfwdError)]
    if unexpected:
        return unexpected[0]
    if len(errors) == 1:
        return next(iter(errors.values()))
    reasons = "; ".join(f"{name}: {exc}" for name, exc in errors.items())
    if timed_out:
        reasons = reasons + "; " if reasons else ""
        reasons += "no answer before the deadline"
    return GatewayNotFound(f"no gateway found ({reasons})")


def find_gateway(
    *,
    via: Method | str = "auto",
    gateway: str | None = None,
    upnp_url: str | None = None,
    interface: str | None = None,
    timeout: float | None = None,
    deadline: Deadline | None = None,
) -> Gateway:
    """Find the gateway, by NAT-PMP and UPnP at once unless *via* says one.

    PCP is used when *via* is "pcp"; PCP gateways normally answer NAT-PMP
    too, as RFC 6887 asks of them.

    *gateway* is the gateway's address: NAT-PMP skips the route lookup and
    the UPnP search asks that address alone. *upnp_url* skips the UPnP search
    and uses that description URL; given without *gateway*, it also means
    UPnP. *interface* picks where to search. Raises GatewayNotFound, naming
    what each protocol answered.
    """
    if via not in ("auto", *Method, *(m.value for m in Method)):
        raise InvalidArgument(
            f"via must be 'auto', 'natpmp', 'pcp' or 'upnp', not {via!r}"
        )
    via = str(via)
    if gateway is not None:
        gateway = check_address(gateway, "gateway")
    if via == "auto" and upnp_url is not None and gateway is None:
        via = "upnp"
    if interface is not None:
        # Checked whichever protocol answers first, so that a mistyped
        # interface is an error every time and not only when UPnP wins.
        _ssdp.check_interface(interface)
    deadline = Deadline.given(deadline, timeout, DEFAULT_TIMEOUT)
    # The finders stop a little before the race does, so that a gateway
    # that stopped answering is reported as that, not as no gateway at all.
    inner = deadline.reserve(FINDER_MARGIN)

    finders = {}
    if via in ("auto", "natpmp"):
        finders["NAT-PMP"] = lambda: _find_natpmp(gateway, inner)
    if via == "pcp":
        finders["PCP"] = lambda: _find_pcp(gateway, inner)
    if via in ("auto", "upnp"):
        finders["UPnP"] = lambda: _find_upnp(upnp_url, gateway, interface, inner)
    if via == "auto":
        finders = _available(finders)

    try:
        return _Race().run(finders, deadline)
    finally:
        # What the losers still do is wasted: let them stop at their next
        # look at the deadline.
        inner.cancel()


def _available(finders: dict) -> dict:
    """Leave out backends this build lacks; fail only if none is left."""
    usable = {}
    missing = []
    for name, finder in finders.items():
        try:
            (_bindings.natpmp if name == "NAT-PMP" else _bindings.miniupnpc)()
        except BackendUnavailable as exc:
            missing.append(exc)
            continue
        usable[name] = finder
    if not usable:
        raise missing[0]
    return usable


@contextlib.contextmanager
def forward(
    internal_port: int,
    external_port: int | None = None,
    protocol: Protocol | str = Protocol.TCP,
    *,
    lease: int = DEFAULT_LEASE,
    description: str = DEFAULT_DESCRIPTION,
    timeout: float | None = None,
    **find: object,
) -> Iterator[Mapping]:
    """Map a port for the duration of a ``with`` block, then remove it."""
    with find_gateway(timeout=timeout, **find) as gw:
        yield gw.add(
            internal_port,
            external_port,
            protocol,
            lease=lease,
            description=description,
            timeout=timeout,
        )
