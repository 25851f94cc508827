"""Fixtures for integration tests against the gateway lab (tests/lab).

A test asks for ``lab_all``, ``lab_upnp``, ``lab_natpmp`` or ``lab_igdv1``
(one lab per variant, shared by the whole session), or for ``fresh_lab``
with ``@pytest.mark.parametrize("fresh_lab", ["all"], indirect=True)`` when
it restarts the gateway or otherwise must not share one. ``upnpc`` and
``natpmpc`` are the paths of the upstream clients, built on first use.

Shared labs are cleaned between tests: :func:`lab_all` and friends delete
every mapping left behind (and fail a passing test that left one), so each
test starts from an empty gateway with a running miniupnpd.

Lab tests need root, ``ip``, ``nft`` and ``ss``, and a C toolchain to build
the peers. Without them they are skipped, saying why, except under CI
(``CI`` set in the environment), where a missing prerequisite is an error:
CI runs as root and must run them.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from lab import Lab, LabError, PeerBuildError, peer_path  # noqa: E402

LAB_MARKER = "lab: needs root and builds a gateway lab in network namespaces"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", LAB_MARKER)


def _missing_prerequisite() -> str | None:
    if sys.platform != "linux":
        return f"the gateway lab needs Linux, not {sys.platform!r}"
    if os.geteuid() != 0:
        return "the gateway lab needs root (network namespaces and nftables)"
    for tool in ("ip", "nft", "ss", "make", "cc"):
        if shutil.which(tool) is None:
            return f"the gateway lab needs {tool!r} on PATH (see tools/bootstrap)"
    return None


def _skip_or_fail(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the lab tests", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def lab_prerequisites() -> None:
    """Skip (or under CI, fail) when the lab cannot run here."""
    reason = _missing_prerequisite()
    if reason:
        _skip_or_fail(reason)


def _peer(name: str) -> Path:
    try:
        return peer_path(name)
    except PeerBuildError as exc:
        _skip_or_fail(f"cannot build {name}: {exc}")


@pytest.fixture(scope="session")
def upnpc(lab_prerequisites: None) -> Path:
    """The pristine upstream ``upnpc`` (miniupnpc 2.3.3)."""
    return _peer("upnpc")


@pytest.fixture(scope="session")
def natpmpc(lab_prerequisites: None) -> Path:
    """The pristine upstream ``natpmpc`` (libnatpmp 20230423).

    It refuses to map once the gateway reports a reserved external address,
    which every lab address is: use it for discovery and address requests.
    """
    return _peer("natpmpc")


def _start(variant: str, **options: object) -> Lab:
    lab = Lab(variant, **options)
    _peer(lab.variant.daemon)
    try:
        lab.start()
    except LabError as exc:
        _skip_or_fail(f"cannot start a {variant!r} lab: {exc}")
    return lab


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


_CALL_FAILED = pytest.StashKey[bool]()


def _clean_between_tests(lab: Lab, request: pytest.FixtureRequest) -> Iterator[Lab]:
    """Yield *lab*, then remove what the test left behind.

    A test that passed but left a mapping (or killed the daemon) fails at
    teardown; after a test that failed anyway, the lab is only cleaned.
    """
    yield lab

    problem = None
    if not lab.gateway_running():
        problem = f"miniupnpd died during the test:\n{lab.gateway_log()[-2000:]}"
    elif lab.mappings():
        problem = f"the test left mappings on the gateway: {lab.mappings()}"
    if problem is None:
        return

    lab.restart_gateway(keep_leases=False)
    if not request.node.stash.get(_CALL_FAILED, False):
        pytest.fail(problem)


@pytest.fixture(scope="session")
def _lab_all_session(lab_prerequisites: None) -> Iterator[Lab]:
    with _start("all") as lab:
        yield lab


@pytest.fixture(scope="session")
def _lab_upnp_session(lab_prerequisites: None) -> Iterator[Lab]:
    with _start("upnp") as lab:
        yield lab


@pytest.fixture(scope="session")
def _lab_natpmp_session(lab_prerequisites: None) -> Iterator[Lab]:
    with _start("natpmp") as lab:
        yield lab


@pytest.fixture(scope="session")
def _lab_igdv1_session(lab_prerequisites: None) -> Iterator[Lab]:
    with _start("igdv1") as lab:
        yield lab


@pytest.fixture
def lab_all(_lab_all_session: Lab, request: pytest.FixtureRequest) -> Iterator[Lab]:
    """A gateway speaking UPnP IGDv2, NAT-PMP and PCP; empty at the start."""
    yield from _clean_between_tests(_lab_all_session, request)


@pytest.fixture
def lab_upnp(_lab_upnp_session: Lab, request: pytest.FixtureRequest) -> Iterator[Lab]:
    """A gateway speaking UPnP IGDv2 only; empty at the start."""
    yield from _clean_between_tests(_lab_upnp_session, request)


@pytest.fixture
def lab_natpmp(
    _lab_natpmp_session: Lab, request: pytest.FixtureRequest
) -> Iterator[Lab]:
    """A gateway speaking NAT-PMP and PCP only; empty at the start."""
    yield from _clean_between_tests(_lab_natpmp_session, request)


@pytest.fixture
def lab_igdv1(_lab_igdv1_session: Lab, request: pytest.FixtureRequest) -> Iterator[Lab]:
    """A gateway speaking UPnP IGDv1 only; empty at the start."""
    yield from _clean_between_tests(_lab_igdv1_session, request)


@pytest.fixture
def fresh_lab(request: pytest.FixtureRequest, lab_prerequisites: None) -> Iterator[Lab]:
    """A lab of its own for one test.

    Parametrize it indirectly with a variant name, or with a dict of
    :class:`lab.Lab` keyword arguments (``{"variant": "all",
    "announce_wan_ip": True}``); the default is the ``all`` variant.
    """
    param = getattr(request, "param", "all")
    options = dict(param) if isinstance(param, dict) else {"variant": param}
    with _start(options.pop("variant", "all"), **options) as lab:
        yield lab
