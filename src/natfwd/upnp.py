"""UPnP Internet Gateway Devices, over natfwd's miniupnpc.

The low-level UPnP interface: find IGDs, connect to one, and run its port
mapping actions. Each call takes a deadline (or a timeout in seconds) that it
never overruns. Failures raise the exceptions of :mod:`natfwd`; a failed IGD
action raises :class:`~natfwd.UPnPError` with the UPnP error code::

    from natfwd import upnp

    devices = upnp.discover(timeout=2.0)
    with upnp.IGD(devices[0].location) as igd:
        igd.add_port_mapping(9001, 9001, igd.lan_address, "tcp", "relay", 3600)

Most programs want the protocol-independent :func:`natfwd.find_gateway`.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import threading
from collections.abc import Collection
from typing import Callable, NamedTuple, TypeVar

from natfwd import _bindings, _ssdp
from natfwd._deadline import Deadline, run_bounded
from natfwd._exceptions import (
    GatewayError,
    GatewayNotFound,
    MalformedReply,
    NatfwdError,
    NotSupported,
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
    check_url,
)

__all__ = [
    "IGD",
    "Device",
    "IGDStatus",
    "PortMapping",
    "discover",
]

log = logging.getLogger(__name__)
wire = logging.getLogger("natfwd.wire")

T = TypeVar("T")

# How many entries port_mappings() reads at most, so a gateway that never
# says "no more" cannot keep it looping.
MAX_LISTED_MAPPINGS = 1024


class Device(NamedTuple):
    """An IGD that answered a search."""

    location: str
    search_target: str
    usn: str
    address: str


class IGDStatus(enum.Enum):
    """What natfwd found behind a description URL."""

    CONNECTED = "connected"
    PRIVATE_WAN = "connected, private WAN address"
    DISCONNECTED = "not connected"
    NOT_IGD = "not an IGD"


class PortMapping(NamedTuple):
    """One port mapping as the IGD reports it.

    ``lease`` is the remaining lease in seconds; 0 means permanent.
    """

    external_port: int
    protocol: Protocol
    internal_client: str
    internal_port: int
    description: str
    enabled: bool
    lease: int
    remote_host: str = ""


def discover(
    timeout: float | None = 2.0,
    *,
    interface: str | None = None,
    first: bool = False,
    unicast: str | None = None,
    exclude: Collection[str] = (),
    deadline: Deadline | None = None,
) -> list[Device]:
    """Search the LAN for IGDs for *timeout* seconds.

    With *first*, return as soon as one IGD has answered. *interface* is the
    address or name of the interface to search on. *unicast* asks only the
    device at that address (a unicast search, UPnP Device Architecture 1.1)
    instead of the whole LAN. Devices whose location is in *exclude* are
    left out.
    """
    deadline = Deadline.given(deadline, timeout, 2.0)
    if unicast is not None:
        unicast = check_address(unicast, "gateway")

    responses = _ssdp.search(
        deadline, interface=interface, first=first, unicast=unicast, exclude=exclude
    )

    return [
        Device(
            location=r.location,
            search_target=r.st,
            usn=r.usn,
            address=r.source,
        )
        for r in responses
    ]


def _text(ffi, buffer) -> str:
    """A C string written by miniupnpc, decoded as the gateway sent it."""
    return ffi.string(buffer).decode("utf-8", errors="replace")


class IGD:
    """A connection to one IGD's WAN connection service.

    Fetches and parses the device description at *location*. Close it (or
    use it as a context manager) to free what miniupnpc allocated.
    """

    def __init__(
        self,
        location: str,
        *,
        timeout: float | None = 5.0,
        deadline: Deadline | None = None,
    ) -> None:
        self._module = _bindings.miniupnpc()
        ffi, lib = self._module.ffi, self._module.lib
        deadline = Deadline.given(deadline, timeout, 5.0)
        location = check_url(location, "an IGD location")

        self.location = location
        self._lock = threading.Lock()
        self._busy = 0
        self._closed = False
        self._urls = ffi.gc(ffi.new("struct UPNPUrls *"), lib.FreeUPNPUrls)
        self._data = ffi.new("struct IGDdatas *")
        lanaddr = ffi.new("char[]", lib.NATFWD_ADDR_LEN)
        url = location.encode()

        found = self._call(
            "fetching the device description",
            lambda: lib.UPNP_GetIGDFromUrl(
                url, self._urls, self._data, lanaddr, lib.NATFWD_ADDR_LEN
            ),
            deadline,
        )

        if not found:
            self.close()
            raise GatewayNotFound(f"no usable IGD description at {location!r}")
        self.lan_address = _text(ffi, lanaddr)
        self.service_type = _text(ffi, self._data.first.servicetype)
        self._control_url = ffi.string(self._urls.controlURL)
        self._service = ffi.string(self._data.first.servicetype)
        if not self._control_url or b":service:WAN" not in self._service:
            self.close()
            raise NotSupported(
                f"the device at {location!r} has no WAN connection service",
                gateway=self.address,
            )
        log.debug("IGD %s: %s at %s", location, self.service_type, self.control_url)

    @classmethod
    def select(
        cls,
        devices: list[Device],
        *,
        timeout: float | None = 5.0,
        deadline: Deadline | None = None,
    ) -> tuple[IGD, IGDStatus]:
        """Connect to the best of *devices*: a connected IGD before others."""
        deadline = Deadline.given(deadline, timeout, 5.0)
        if not devices:
            raise GatewayNotFound("no IGD answered the search")

        best: tuple[IGD, IGDStatus] | None = None
        errors = []
        for device in devices:
            try:
                igd = cls(device.location, deadline=deadline)
            except NatfwdError as exc:
                errors.append(exc)
                continue
            status = igd.status(deadline=deadline)
            if status in (IGDStatus.CONNECTED, IGDStatus.PRIVATE_WAN):
                if best is not None:
                    best[0].close()
                return igd, status
            if best is None:
                best = (igd, status)
            else:
                igd.close()
        if best is None:
            raise GatewayNotFound(
                f"no usable IGD among {len(devices)} found: {errors[0]}"
            )
        return best

    # -- properties ---------------------------------------------------------

    @property
    def control_url(self) -> str:
        return self._control_url.decode("utf-8", errors="replace")

    @property
    def version(self) -> int:
        """The WAN connection service version: 1 or 2."""
        return 2 if self._service.endswith(b":2") else 1

    @property
    def address(self) -> str:
        """The host part of the description URL: the gateway's LAN address."""
        host = self.location.split("//", 1)[1].split("/", 1)[0]
        return host.rsplit(":", 1)[0].strip("[]")

    # -- lifetime -----------------------------------------------------------

    def close(self) -> None:
        """Free miniupnpc's memory. Safe to call more than once.

        A call that outlived its deadline may still be running in a worker
        thread; the memory is then freed when that call ends.
        """
        with self._lock:
            self._closed = True
            busy = self._busy
        if not busy:
            self._release()

    def _release(self) -> None:
        urls, self._urls = self._urls, None
        if urls is not None:
            self._module.ffi.release(urls)

    def __enter__(self) -> IGD:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, what: str, call: Callable[[], T], deadline: Deadline) -> T:
        """Run one C call bounded by *deadline*, never racing close()."""
        with self._lock:
            if self._closed:
                raise NatfwdError(f"{what}: the IGD connection is closed")
            self._busy += 1

        def guarded() -> T:
            try:
                return call()
            finally:
                with self._lock:
                    self._busy -= 1
                    release = self._closed and not self._busy
                if release:
                    self._release()

        return run_bounded(guarded, deadline, what, gateway=self.location)

    def _check(self, action: str, code: int) -> None:
        """The one place miniupnpc's return codes become exceptions."""
        lib = self._module.lib
        if code == lib.UPNPCOMMAND_SUCCESS:
            return
        if code > 0:
            raise UPnPError(action, code, gateway=self.address)
        if code == lib.UPNPCOMMAND_INVALID_RESPONSE:
            raise MalformedReply(
                f"{action}: the gateway's reply is not a valid SOAP response",
                gateway=self.address,
            )
        if code == lib.UPNPCOMMAND_HTTP_ERROR:
            raise GatewayError(
                f"{action}: no usable HTTP answer from {self.control_url} "
                "(refused, closed early, or empty)",
                gateway=self.address,
            )
        if code == lib.UPNPCOMMAND_UNKNOWN_ERROR:
            # miniupnpc's word for an errorCode that is not a number.
            raise MalformedReply(
                f"{action}: the gateway's error reply carries no usable code",
                gateway=self.address,
            )
        if code == lib.UPNPCOMMAND_MEM_ALLOC_ERROR:
            raise MemoryError(f"{action}: miniupnpc ran out of memory")
        if code == lib.UPNPCOMMAND_INVALID_ARGS:
            raise NatfwdError(f"{action}: miniupnpc refused the arguments")
        raise GatewayError(
            f"{action} failed (miniupnpc error {code})", gateway=self.address
        )

    def _action(self, action: str, deadline: Deadline | None, call) -> None:
        deadline = deadline or Deadline(5.0)
        wire.debug("UPnP %s -> %s", action, self.control_url)
        code = self._call(action, call, deadline)
        wire.debug("UPnP %s <- %d", action, code)
        self._check(action, code)

    # -- actions ------------------------------------------------------------

    def status(self, *, deadline: Deadline | None = None) -> IGDStatus:
        """Whether the WAN connection is up, and whether its address is public."""
        try:
            state, _uptime, _error = self.status_info(deadline=deadline)
        except UPnPError:
            state = ""
        if state and state != "Connected":
            return IGDStatus.DISCONNECTED
        try:
            address = self.external_address(deadline=deadline)
        except (UPnPError, MalformedReply):
            # Unknown is not unusable: mappings may work all the same.
            return IGDStatus.CONNECTED if state else IGDStatus.DISCONNECTED
        return IGDStatus.CONNECTED if is_public(address) else IGDStatus.PRIVATE_WAN

    def status_info(self, *, deadline: Deadline | None = None) -> tuple[str, int, str]:
        """GetStatusInfo: (connection status, uptime in seconds, last error)."""
        ffi, lib = self._module.ffi, self._module.lib
        status = ffi.new("char[]", lib.NATFWD_SHORT_LEN)
        uptime = ffi.new("unsigned int *")
        last_error = ffi.new("char[]", lib.NATFWD_SHORT_LEN)

        self._action(
            "GetStatusInfo",
            deadline,
            lambda: lib.UPNP_GetStatusInfo(
                self._control_url, self._service, status, uptime, last_error
            ),
        )

        return _text(ffi, status), int(uptime[0]), _text(ffi, last_error)

    def external_address(self, *, deadline: Deadline | None = None) -> str:
        """GetExternalIPAddress. An empty string when the IGD does not know."""
        ffi, lib = self._module.ffi, self._module.lib
        address = ffi.new("char[]", lib.NATFWD_ADDR_LEN)

        self._action(
            "GetExternalIPAddress",
            deadline,
            lambda: lib.UPNP_GetExternalIPAddress(
                self._control_url, self._service, address
            ),
        )

        text = _text(ffi, address)
        if text:
            try:
                ipaddress.ip_address(text)
            except ValueError as exc:
                raise MalformedReply(
                    f"GetExternalIPAddress returned {text!r}, not an IP address",
                    gateway=self.address,
                ) from exc
        return text

    def add_port_mapping(
        self,
        external_port: int,
        internal_port: int,
        internal_client: str,
        protocol: Protocol | str,
        description: str,
        lease: int,
        *,
        remote_host: str = "",
        deadline: Deadline | None = None,
    ) -> None:
        """AddPortMapping. Error 718 raises PortInUse naming the holder."""
        external_port = check_port(external_port, "external port")
        internal_port = check_port(internal_port, "internal port")
        internal_client = check_address(internal_client, "internal client")
        protocol = check_protocol(protocol)
        description = check_description(description)
        lease = check_lease(lease)
        lib = self._module.lib
        args = [
            str(external_port).encode(),
            str(internal_port).encode(),
            internal_client.encode(),
            description.encode(),
            protocol.value.upper().encode(),
            remote_host.encode() or self._module.ffi.NULL,
            str(lease).encode(),
        ]

        try:
            self._action(
                "AddPortMapping",
                deadline,
                lambda: lib.UPNP_AddPortMapping(
                    self._control_url, self._service, *args
                ),
            )
        except UPnPError as exc:
            if exc.code != UPnPErrorCode.CONFLICT_IN_MAPPING_ENTRY:
                raise
            raise self._conflict(external_port, protocol, deadline) from exc

    def _conflict(self, external_port: int, protocol: Protocol, deadline) -> PortInUse:
        holder = None
        try:
            holder = self.get_port_mapping(external_port, protocol, deadline=deadline)
        except NatfwdError as exc:
            log.debug(
                "could not learn who holds %s/%s: %s", external_port, protocol, exc
            )
        message = f"external port {external_port}/{protocol} is mapped already"
        if holder is not None:
            message += f" to {holder.internal_client}:{holder.internal_port}"
            if holder.description:
                message += f" ({holder.description!r})"
        return PortInUse("AddPortMapping", message, holder=holder, gateway=self.address)

    def add_any_port_mapping(
        self,
        external_port: int,
        internal_port: int,
        internal_client: str,
        protocol: Protocol | str,
        description: str,
        lease: int,
        *,
        deadline: Deadline | None = None,
    ) -> int:
        """AddAnyPortMapping (IGD v2): the gateway picks a free external port.

        Returns the external port it reserved, *external_port* if it was free.
        """
        if self.version < 2:
            raise NotSupported(
                "AddAnyPortMapping needs an IGD v2 gateway; this one is v1",
                gateway=self.address,
            )
        external_port = check_port(external_port, "external port")
        internal_port = check_port(internal_port, "internal port")
        internal_client = check_address(internal_client, "internal client")
        protocol = check_protocol(protocol)
        description = check_description(description)
        lease = check_lease(lease)
        ffi, lib = self._module.ffi, self._module.lib
        reserved = ffi.new("char[]", lib.NATFWD_PORT_LEN)
        args = [
            str(external_port).encode(),
            str(internal_port).encode(),
            internal_client.encode(),
            description.encode(),
            protocol.value.upper().encode(),
            ffi.NULL,
            str(lease).encode(),
        ]

        self._action(
            "AddAnyPortMapping",
            deadline,
            lambda: lib.UPNP_AddAnyPortMapping(
                self._control_url, self._service, *args, reserved
            ),
        )

        text = _text(ffi, reserved)
        try:
            return check_port(text, "reserved port")
        except NatfwdError as exc:
            raise MalformedReply(
                f"AddAnyPortMapping reserved {text!r}, not a port", gateway=self.address
            ) from exc

    def delete_port_mapping(
        self,
        external_port: int,
        protocol: Protocol | str,
        *,
        remote_host: str = "",
        deadline: Deadline | None = None,
    ) -> None:
        """DeletePortMapping. A mapping that does not exist raises UPnPError 714."""
        external_port = check_port(external_port, "external port")
        protocol = check_protocol(protocol)
        lib = self._module.lib
        port = str(external_port).encode()
        proto = protocol.value.upper().encode()
        host = remote_host.encode() or self._module.ffi.NULL

        self._action(
            "DeletePortMapping",
            deadline,
            lambda: lib.UPNP_DeletePortMapping(
                self._control_url, self._service, port, proto, host
            ),
        )

    def get_port_mapping(
        self,
        external_port: int,
        protocol: Protocol | str,
        *,
        remote_host: str = "",
        deadline: Deadline | None = None,
    ) -> PortMapping | None:
        """GetSpecificPortMappingEntry, or None if there is no such mapping."""
        external_port = check_port(external_port, "external port")
        protocol = check_protocol(protocol)
        ffi, lib = self._module.ffi, self._module.lib
        client = ffi.new("char[]", lib.NATFWD_ADDR_LEN)
        port = ffi.new("char[]", lib.NATFWD_PORT_LEN)
        desc = ffi.new("char[]", lib.NATFWD_DESC_LEN)
        enabled = ffi.new("char[]", lib.NATFWD_PORT_LEN)
        lease = ffi.new("char[]", lib.NATFWD_SHORT_LEN)
        args = (
            str(external_port).encode(),
            protocol.value.upper().encode(),
            remote_host.encode() or ffi.NULL,
        )

        try:
            self._action(
                "GetSpecificPortMappingEntry",
                deadline,
                lambda: lib.natfwd_get_specific_entry(
                    self._control_url,
                    self._service,
                    *args,
                    client,
                    port,
                    desc,
                    lib.NATFWD_DESC_LEN,
                    enabled,
                    lease,
                ),
            )
        except UPnPError as exc:
            if exc.code in (
                UPnPErrorCode.NO_SUCH_ENTRY_IN_ARRAY,
                UPnPErrorCode.SPECIFIED_ARRAY_INDEX_INVALID,
            ):
                return None
            raise

        return self._mapping(
            "GetSpecificPortMappingEntry",
            external=str(external_port),
            protocol=protocol.value,
            client=_text(ffi, client),
            port=_text(ffi, port),
            desc=_text(ffi, desc),
            enabled=_text(ffi, enabled),
            lease=_text(ffi, lease),
            remote_host=remote_host,
        )

    def port_mappings(self, *, deadline: Deadline | None = None) -> list[PortMapping]:
        """Every mapping, read with GetGenericPortMappingEntry from index 0."""
        deadline = deadline or Deadline(10.0)
        mappings = []

        for index in range(MAX_LISTED_MAPPINGS):
            try:
                mappings.append(self._generic_entry(index, deadline))
            except UPnPError as exc:
                # The end of the table: 713 by the standard, 714 or 402 by
                # some gateways.
                if exc.code in (
                    UPnPErrorCode.SPECIFIED_ARRAY_INDEX_INVALID,
                    UPnPErrorCode.NO_SUCH_ENTRY_IN_ARRAY,
                    UPnPErrorCode.INVALID_ARGS,
                ):
                    break
                raise
        return mappings

    def _generic_entry(self, index: int, deadline: Deadline) -> PortMapping:
        ffi, lib = self._module.ffi, self._module.lib
        ext = ffi.new("char[]", lib.NATFWD_PORT_LEN)
        client = ffi.new("char[]", lib.NATFWD_ADDR_LEN)
        port = ffi.new("char[]", lib.NATFWD_PORT_LEN)
        proto = ffi.new("char[]", lib.NATFWD_PORT_LEN)
        desc = ffi.new("char[]", lib.NATFWD_DESC_LEN)
        enabled = ffi.new("char[]", lib.NATFWD_PORT_LEN)
        host = ffi.new("char[]", lib.NATFWD_ADDR_LEN)
        lease = ffi.new("char[]", lib.NATFWD_SHORT_LEN)
        position = str(index).encode()

        self._action(
            "GetGenericPortMappingEntry",
            deadline,
            lambda: lib.natfwd_get_generic_entry(
                self._control_url,
                self._service,
                position,
                ext,
                client,
                port,
                proto,
                desc,
                lib.NATFWD_DESC_LEN,
                enabled,
                host,
                lib.NATFWD_ADDR_LEN,
                lease,
            ),
        )

        return self._mapping(
            "GetGenericPortMappingEntry",
            external=_text(ffi, ext),
            protocol=_text(ffi, proto),
            client=_text(ffi, client),
            port=_text(ffi, port),
            desc=_text(ffi, desc),
            enabled=_text(ffi, enabled),
            lease=_text(ffi, lease),
            remote_host=_text(ffi, host),
        )

    def _mapping(self, action: str, **fields: str) -> PortMapping:
        try:
            return PortMapping(
                external_port=check_port(fields["external"]),
                protocol=check_protocol(fields["protocol"]),
                internal_client=fields["client"],
                internal_port=check_port(fields["port"]),
                description=fields["desc"],
                enabled=fields["enabled"].strip() not in ("0", "false"),
                lease=check_lease(int(fields["lease"] or 0)),
                remote_host=fields["remote_host"],
            )
        except (NatfwdError, ValueError) as exc:
            raise MalformedReply(
                f"{action} returned an unusable entry: {exc}", gateway=self.address
            ) from exc


def is_public(address: str) -> bool:
    """Whether *address* is a globally routable IP address.

    Empty, private, shared (CGNAT, 100.64.0.0/10) and reserved addresses
    all mean another NAT lies between the gateway and the internet.
    """
    try:
        return ipaddress.ip_address(address).is_global
    except ValueError:
        return False
