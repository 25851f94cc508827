"""Exceptions raised by natfwd.

Every error natfwd raises derives from :class:`NatfwdError`::

    NatfwdError
    ├── InvalidArgument          a port, protocol or description is unusable
    │                            (also a ValueError)
    ├── BackendUnavailable       natfwd was built without UPnP or NAT-PMP
    ├── GatewayNotFound          no gateway answered before the deadline
    ├── GatewayError             a gateway was found but the exchange failed
    │   ├── GatewayTimeout       ... it stopped answering
    │   ├── MalformedReply       ... it answered something unusable
    │   ├── UPnPError            ... an IGD action failed; .code is the UPnP
    │   │   │                        error code (718, 725, ...)
    │   │   └── PortInUse        ... 718: someone else holds the port
    │   ├── NATPMPError          ... a NAT-PMP request failed; .code is the
    │   │                            result code
    │   ├── PCPError             ... a PCP request failed; .code is the
    │   │                            result code
    │   └── NotSupported         ... the gateway's protocol cannot do this
    └── IsolatedCallCrashed      the child process running C code died

The UPnP, NAT-PMP and PCP codes are kept as enums on the exception, so callers can
branch on them instead of parsing messages.
"""

from __future__ import annotations

import enum

__all__ = [
    "BackendUnavailable",
    "GatewayError",
    "GatewayNotFound",
    "GatewayTimeout",
    "InvalidArgument",
    "IsolatedCallCrashed",
    "MalformedReply",
    "NATPMPError",
    "NATPMPResult",
    "NatfwdError",
    "NotSupported",
    "PCPError",
    "PCPResult",
    "PortInUse",
    "StateBusy",
    "UPnPError",
    "UPnPErrorCode",
]


class UPnPErrorCode(enum.IntEnum):
    """Error codes of UPnP actions (UPnP Device Architecture, WANIPConnection)."""

    INVALID_ACTION = 401
    INVALID_ARGS = 402
    ACTION_FAILED = 501
    ARGUMENT_VALUE_INVALID = 600
    ARGUMENT_VALUE_OUT_OF_RANGE = 601
    OPTIONAL_ACTION_NOT_IMPLEMENTED = 602
    OUT_OF_MEMORY = 603
    HUMAN_INTERVENTION_REQUIRED = 604
    STRING_ARGUMENT_TOO_LONG = 605
    ACTION_NOT_AUTHORIZED = 606
    SPECIFIED_ARRAY_INDEX_INVALID = 713
    NO_SUCH_ENTRY_IN_ARRAY = 714
    WILDCARD_NOT_PERMITTED_IN_SRC_IP = 715
    WILDCARD_NOT_PERMITTED_IN_EXT_PORT = 716
    CONFLICT_IN_MAPPING_ENTRY = 718
    SAME_PORT_VALUES_REQUIRED = 724
    ONLY_PERMANENT_LEASES_SUPPORTED = 725
    REMOTE_HOST_ONLY_SUPPORTS_WILDCARD = 726
    EXTERNAL_PORT_ONLY_SUPPORTS_WILDCARD = 727
    NO_PORT_MAPS_AVAILABLE = 728
    CONFLICT_WITH_OTHER_MECHANISMS = 729
    WILDCARD_NOT_PERMITTED_IN_INT_PORT = 732


class NATPMPResult(enum.IntEnum):
    """Result codes of NAT-PMP replies (RFC 6886, section 3.5)."""

    SUCCESS = 0
    UNSUPPORTED_VERSION = 1
    NOT_AUTHORIZED = 2
    NETWORK_FAILURE = 3
    OUT_OF_RESOURCES = 4
    UNSUPPORTED_OPCODE = 5


class PCPResult(enum.IntEnum):
    """Result codes of PCP responses (RFC 6887, section 7.4)."""

    SUCCESS = 0
    UNSUPP_VERSION = 1
    NOT_AUTHORIZED = 2
    MALFORMED_REQUEST = 3
    UNSUPP_OPCODE = 4
    UNSUPP_OPTION = 5
    MALFORMED_OPTION = 6
    NETWORK_FAILURE = 7
    NO_RESOURCES = 8
    UNSUPP_PROTOCOL = 9
    USER_EX_QUOTA = 10
    CANNOT_PROVIDE_EXTERNAL = 11
    ADDRESS_MISMATCH = 12
    EXCESSIVE_REMOTE_PEERS = 13


def _code_enum(enum_type: type[enum.IntEnum], code: int) -> int:
    """The enum member for *code*, or the plain int for codes it lacks."""
    try:
        return enum_type(code)
    except ValueError:
        return code


class NatfwdError(Exception):
    """Base class of every error natfwd raises."""


class InvalidArgument(NatfwdError, ValueError):
    """An argument is out of range or malformed; nothing was sent."""


class BackendUnavailable(NatfwdError):
    """This build of natfwd lacks the backend the call needs."""


class GatewayNotFound(NatfwdError):
    """No gateway answered by the deadline, by any protocol tried."""


class GatewayError(NatfwdError):
    """A gateway was found but an exchange with it failed."""

    def __init__(self, message: str, *, gateway: str | None = None) -> None:
        super().__init__(message)
        self.gateway = gateway


class GatewayTimeout(GatewayError):
    """The gateway did not answer before the deadline."""


class MalformedReply(GatewayError):
    """The gateway's reply could not be understood."""


class NotSupported(GatewayError):
    """The gateway's protocol has no way to do what was asked."""


class UPnPError(GatewayError):
    """An IGD action failed with a UPnP error code.

    ``code`` is a :class:`UPnPErrorCode` when the code is a known one, else
    the plain integer the gateway sent; ``action`` names the SOAP action.
    """

    def __init__(
        self,
        action: str,
        code: int,
        message: str | None = None,
        *,
        gateway: str | None = None,
    ) -> None:
        self.action = action
        self.code = _code_enum(UPnPErrorCode, code)
        if message is None:
            name = self.code.name if isinstance(self.code, UPnPErrorCode) else ""
            message = f"{action} failed with UPnP error {int(code)}"
            if name:
                message += f" ({name})"
        super().__init__(message, gateway=gateway)


class PortInUse(UPnPError):
    """The external port is mapped already (UPnP error 718).

    ``holder`` describes the existing mapping when the gateway tells
    (a :class:`natfwd.upnp.PortMapping`), else ``None``.
    """

    def __init__(self, action: str, message: str, *, holder=None, gateway=None):
        super().__init__(
            action,
            UPnPErrorCode.CONFLICT_IN_MAPPING_ENTRY,
            message,
            gateway=gateway,
        )
        self.holder = holder


class _ResultCodeError(GatewayError):
    """A request failed with a result code from the gateway.

    ``code`` is a member of the subclass's ``codes`` enum when known, else
    the plain integer; ``operation`` names the request.
    """

    protocol: str
    codes: type[enum.IntEnum]

    def __init__(
        self,
        operation: str,
        code: int,
        *,
        gateway: str | None = None,
    ) -> None:
        self.operation = operation
        self.code = _code_enum(self.codes, code)
        label = self.code.name if isinstance(self.code, self.codes) else "unknown"
        super().__init__(
            f"{self.protocol} {operation} failed with result code {int(code)} "
            f"({label})",
            gateway=gateway,
        )


class NATPMPError(_ResultCodeError):
    """A NAT-PMP request failed; ``code`` is a :class:`NATPMPResult`."""

    protocol = "NAT-PMP"
    codes = NATPMPResult


class PCPError(_ResultCodeError):
    """A PCP request failed; ``code`` is a :class:`PCPResult`."""

    protocol = "PCP"
    codes = PCPResult


class StateBusy(NatfwdError):
    """Another ``natfwd keep`` holds the lock of the state file to be used."""


class IsolatedCallCrashed(NatfwdError):
    """The child process that ran a C call died instead of answering.

    ``signal`` is the number of the signal that killed it, when one did;
    ``exitcode`` is its exit status otherwise. The host process is unharmed
    and the call may be retried.
    """

    def __init__(
        self,
        call: str,
        *,
        signal: int | None = None,
        exitcode: int | None = None,
    ) -> None:
        self.call = call
        self.signal = signal
        self.exitcode = exitcode
        if signal is not None:
            how = f"was killed by signal {signal}"
        else:
            how = f"exited with status {exitcode}"
        super().__init__(f"the isolated process running {call} {how}")
