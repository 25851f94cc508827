"""Tests of the raw cffi modules, natfwd._miniupnpc and natfwd._natpmp.

They import natfwd as installed (``pip install .``, or a wheel), never from
``src/``: the modules exist only in a build. Every build flavour must pass
them: natfwd's forks, the system's libraries, and builds with one module left
out. A build made with ``NATFWD_WITH_UPNP=OFF`` or ``NATFWD_WITH_NATPMP=OFF``
is tested with the same variable set, so that a missing module is a skip only
when it was left out on purpose.
"""

from __future__ import annotations

import importlib
import os
import re
from types import ModuleType

import pytest
from loopback_igd import LoopbackIGD
from natpmp_netns import GATEWAY, NatpmpResponder, NetNamespace, unavailable_reason

_OFF = re.compile(r"^(0|OFF|NO|FALSE|N)$", re.IGNORECASE)


def _binding(module: str, option: str) -> ModuleType:
    if _OFF.match(os.environ.get(option, "ON")):
        pytest.skip(f"natfwd was built with {option}={os.environ[option]}")
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pytest.fail(
            f"cannot import {module} ({exc}); build and install natfwd first "
            f"('pip install --no-build-isolation .'), or set {option}=OFF "
            "if it was built without this module",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def miniupnpc() -> ModuleType:
    return _binding("natfwd._miniupnpc", "NATFWD_WITH_UPNP")


@pytest.fixture(scope="session")
def natpmp() -> ModuleType:
    return _binding("natfwd._natpmp", "NATFWD_WITH_NATPMP")


@pytest.fixture
def igd() -> LoopbackIGD:
    with LoopbackIGD() as server:
        yield server


@pytest.fixture(scope="session")
def gateway_netns() -> NetNamespace:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    netns = NetNamespace(f"natfwd-bind-{os.getpid()}", [GATEWAY])
    yield netns
    netns.delete()


@pytest.fixture
def natpmp_gateway(gateway_netns: NetNamespace) -> NatpmpResponder:
    with gateway_netns.entered():
        responder = NatpmpResponder(GATEWAY)
    with responder:
        yield responder
