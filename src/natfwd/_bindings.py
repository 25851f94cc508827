"""Loading of natfwd's compiled modules.

The two cffi modules are optional at build time (a build may leave out UPnP
or NAT-PMP). This module imports whichever exist, checks that each was built
for this version of the Python package, and says clearly what is missing.
Nothing outside natfwd should import the compiled modules directly.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import NamedTuple

from natfwd import __version__
from natfwd._exceptions import BackendUnavailable

__all__ = ["BuildInfo", "build_info", "miniupnpc", "natpmp"]


class BindingMismatch(ImportError):
    """A compiled module belongs to another version of natfwd."""


class BuildInfo(NamedTuple):
    """What one compiled backend was built from."""

    backend: str
    library: str
    version: str
    origin: str
    api_version: int | None = None


def _load(name: str) -> ModuleType | None:
    try:
        module = importlib.import_module(f"natfwd.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"natfwd.{name}":
            raise
        return None

    built_for = module.ffi.string(module.lib.natfwd_package_version()).decode()
    if built_for != __version__:
        raise BindingMismatch(
            f"natfwd.{name} was built for natfwd {built_for!r} but the Python "
            f"package is {__version__!r}; reinstall natfwd so both come from "
            f"the same build"
        )
    return module


_miniupnpc = _load("_miniupnpc")
_natpmp = _load("_natpmp")


def miniupnpc() -> ModuleType:
    """The compiled miniupnpc module, or BackendUnavailable."""
    if _miniupnpc is None:
        raise BackendUnavailable(
            "this natfwd was built without UPnP support (NATFWD_WITH_UPNP=OFF)"
        )
    return _miniupnpc


def natpmp() -> ModuleType:
    """The compiled libnatpmp module, or BackendUnavailable."""
    if _natpmp is None:
        raise BackendUnavailable(
            "this natfwd was built without NAT-PMP support (NATFWD_WITH_NATPMP=OFF)"
        )
    return _natpmp


def build_info() -> list[BuildInfo]:
    """One entry per backend this build carries."""
    info = []
    if _miniupnpc is not None:
        ffi, lib = _miniupnpc.ffi, _miniupnpc.lib
        info.append(
            BuildInfo(
                backend="upnp",
                library="miniupnpc",
                version=ffi.string(lib.natfwd_library_version()).decode(),
                origin=ffi.string(lib.natfwd_library_origin()).decode(),
                api_version=lib.natfwd_library_api_version(),
            )
        )
    if _natpmp is not None:
        ffi, lib = _natpmp.ffi, _natpmp.lib
        info.append(
            BuildInfo(
                backend="natpmp",
                library="libnatpmp",
                version=ffi.string(lib.natfwd_library_version()).decode(),
                origin=ffi.string(lib.natfwd_library_origin()).decode(),
            )
        )
    return info
