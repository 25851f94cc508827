"""The RPM spec: built with rpmbuild from the sdist, and lint-clean.

Debian's rpm has no Fedora Python or systemd macros, so rpm/macros.local-shim
stands in for them and the build uses this test's Python (which has natfwd's
build requirements); rpm/rpmlint-local.toml silences what only that setting
causes. The build skips the spec's pytest run (--without check; the suite
runs elsewhere in this test run) but keeps its import check. The Fedora job
in .github/workflows/packages.yml builds the same spec with the real macros.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from debian_packages import ensure as ensure_debian_packages
from shipping_support import ROOT, run

import natfwd

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

pytestmark = [pytest.mark.packaging, pytest.mark.slow]

RPM = ROOT / "rpm"
SPEC = RPM / "python-natfwd.spec"


def query(package: Path, *what: str) -> str:
    return run(["rpm", "-qp", *what, package]).stdout


@pytest.fixture(scope="module")
def rpms(sdist: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    ensure_debian_packages(["rpm", "rpmlint"], "building the RPM")
    top = tmp_path_factory.mktemp("rpmbuild")
    (top / "SOURCES").mkdir()
    shutil.copy(sdist, top / "SOURCES")

    run(
        [
            "rpmbuild",
            "--load",
            RPM / "macros.local-shim",
            "--define",
            f"_topdir {top}",
            "--define",
            f"python3 {sys.executable}",
            "--nodeps",
            "--without",
            "check",
            "-ba",
            SPEC,
        ]
    )
    found = {p.name.rsplit("-", 2)[0]: p for p in top.glob("RPMS/*/*.rpm")}
    (found["src"],) = top.glob("SRPMS/*.src.rpm")
    return found


def test_spec_version_is_the_package_version() -> None:
    spec = SPEC.read_text()

    assert re.search(rf"^Version:\s+{re.escape(natfwd.__version__)}$", spec, re.M)


def test_bundled_versions_match_the_pins(rpms: dict) -> None:
    provides = query(rpms["python3-natfwd"], "--provides")

    for lib in ("miniupnpc", "libnatpmp"):
        with open(ROOT / "vendor" / lib / "pin.toml", "rb") as f:
            version = tomllib.load(f)["library"]["version"]
        assert f"bundled({lib}) = {version}" in provides


def test_module_and_command_are_split(rpms: dict) -> None:
    assert set(rpms) == {"python3-natfwd", "natfwd", "src"}

    module = query(rpms["python3-natfwd"], "--list")
    assert re.search(r"/site-packages/natfwd/_miniupnpc\.abi3\.so$", module, re.M)
    assert re.search(r"/site-packages/natfwd/_natpmp\.abi3\.so$", module, re.M)
    licences = query(rpms["python3-natfwd"], "--licensefiles")
    assert "LICENSE.miniupnpc" in licences
    assert "LICENSE.libnatpmp" in licences

    command = query(rpms["natfwd"], "--list").split()
    for path in (
        "/usr/bin/natfwd",
        "/usr/bin/natfwd-tor-helper",
        "/usr/lib/systemd/system/natfwd-keep.service",
        "/usr/lib/systemd/system/natfwd-keep@.service",
    ):
        assert path in command
    assert query(rpms["natfwd"], "--queryformat", "%{ARCH}") == "noarch"


def test_scripts_name_the_system_python(rpms: dict) -> None:
    out = rpms["natfwd"].parent / "unpacked"
    out.mkdir()
    rpm2cpio = subprocess.run(
        ["rpm2cpio", rpms["natfwd"]], capture_output=True, check=True
    ).stdout
    subprocess.run(["cpio", "-idm", "--quiet"], input=rpm2cpio, cwd=out, check=True)

    for script in ("natfwd", "natfwd-tor-helper"):
        first = (out / "usr" / "bin" / script).read_text().splitlines()[0]
        assert first == "#!/usr/bin/python3"


def test_rpmlint_reports_nothing(rpms: dict) -> None:
    proc = run(
        [
            "rpmlint",
            "-c",
            RPM / "rpmlint-local.toml",
            "-r",
            RPM / "python-natfwd.rpmlintrc",
            SPEC,
            *rpms.values(),
        ]
    )

    assert re.search(r"\b0 errors, 0 warnings\b", proc.stdout), proc.stdout
