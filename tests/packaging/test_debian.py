"""The Debian packages: built from the sdist, lintian-clean, installable.

The build is the one CI's packages workflow runs (debbuild.py): the sdist as
orig tarball, dpkg-buildpackage -b with Debian's python3, then lintian on the
binary and source packages. Both flavours are built: the default one, which
links natfwd's forks, and the pkg.natfwd.systemlibs profile, which links
Debian's libminiupnpc and libnatpmp.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import debbuild
import pytest
from debian_packages import ensure as ensure_debian_packages
from debian_packages import require_root

pytestmark = [pytest.mark.packaging, pytest.mark.slow]

VERSION_LINE = "natfwd "


def contents(deb: Path) -> str:
    return subprocess.run(
        ["dpkg-deb", "--contents", deb], capture_output=True, text=True, check=True
    ).stdout


def field(deb: Path, name: str) -> str:
    return subprocess.run(
        ["dpkg-deb", "--field", deb, name], capture_output=True, text=True, check=True
    ).stdout.strip()


def build(sdist: Path, out: Path, profiles: list) -> dict:
    require_root("building the Debian packages")
    ensure_debian_packages(["dpkg-dev", "apt"], "building the Debian packages")
    try:
        files = debbuild.build(sdist, out, profiles)
        lintian = debbuild.lint(files)
    except debbuild.BuildError as exc:
        pytest.fail(str(exc), pytrace=False)
    return {
        "files": files,
        "lintian": lintian,
        "debs": {f.name.split("_")[0]: f for f in files if f.suffix == ".deb"},
    }


@pytest.fixture(scope="module")
def forks_build(sdist: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    return build(sdist, tmp_path_factory.mktemp("deb-forks"), [])


@pytest.fixture(scope="module")
def systemlibs_build(sdist: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    return build(
        sdist, tmp_path_factory.mktemp("deb-system"), ["pkg.natfwd.systemlibs"]
    )


def test_default_build_makes_module_command_and_dbgsym(forks_build: dict) -> None:
    debs = forks_build["debs"]

    assert set(debs) == {"python3-natfwd", "natfwd", "python3-natfwd-dbgsym"}
    module = contents(debs["python3-natfwd"])
    for name in ("_miniupnpc.abi3.so", "_natpmp.abi3.so", "__init__.py"):
        assert f"/usr/lib/python3/dist-packages/natfwd/{name}" in module
    assert "usr/bin/" not in module
    command = contents(debs["natfwd"])
    for program in ("natfwd", "natfwd-tor-helper"):
        assert f"./usr/bin/{program}\n" in command
        assert f"./usr/share/man/man1/{program}.1.gz\n" in command
    for unit in ("natfwd-keep.service", "natfwd-keep@.service"):
        assert f"./lib/systemd/system/{unit}\n" in command
    # SKBUILD_INSTALL_STRIP=false leaves the symbols for dh_strip to move.
    assert "/usr/lib/debug/.build-id/" in contents(debs["python3-natfwd-dbgsym"])


def test_default_build_links_no_system_library(forks_build: dict) -> None:
    depends = field(forks_build["debs"]["python3-natfwd"], "Depends")

    assert "libminiupnpc" not in depends
    assert "libnatpmp" not in depends


def test_source_and_binaries_are_lintian_clean(forks_build: dict) -> None:
    # debbuild.lint already failed the build on any error or warning; what
    # is left must be informational only.
    for line in forks_build["lintian"].splitlines():
        assert not line.startswith(("E:", "W:")), line


def test_installed_command_runs(forks_build: dict) -> None:
    try:
        output = debbuild.install(forks_build["files"])
    except debbuild.BuildError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        assert output.startswith(VERSION_LINE), output
        imports = subprocess.run(
            ["/usr/bin/python3", "-c", "import natfwd._miniupnpc, natfwd._natpmp"],
            capture_output=True,
            text=True,
            check=False,
            cwd="/",
        )
        assert imports.returncode == 0, imports.stderr
    finally:
        debbuild.remove()


def test_systemlibs_profile_links_debian_libraries(systemlibs_build: dict) -> None:
    depends = field(systemlibs_build["debs"]["python3-natfwd"], "Depends")

    assert "libminiupnpc" in depends
    assert "libnatpmp" in depends


def test_units_are_neither_enabled_nor_started(forks_build: dict) -> None:
    postinst = subprocess.run(
        ["dpkg-deb", "--info", forks_build["debs"]["natfwd"], "postinst"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    # Starting would forward ports nobody asked for. An enabled unit's
    # snippet enables it unless it was disabled before ("else" branch).
    assert "deb-systemd-invoke" not in postinst
    assert "else" not in postinst


def test_autopkgtest_passes(forks_build: dict, tmp_path: Path) -> None:
    ensure_debian_packages(["autopkgtest"], "running autopkgtest")
    files = forks_build["files"]
    (dsc,) = [f for f in files if f.suffix == ".dsc"]
    debs = [f for f in files if f.suffix == ".deb" and "-dbgsym_" not in f.name]
    # The null runner tests on this machine, as Debian's CI would in a VM.
    env = {"PATH": debbuild.DEBIAN_PATH, "HOME": str(Path.home()), "LC_ALL": "C.UTF-8"}
    command = ["autopkgtest", "--output-dir", tmp_path / "out", "-B", dsc, *debs]
    try:
        proc = subprocess.run(
            [*command, "--", "null"],
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
            check=False,
        )
    finally:
        debbuild.remove()

    summary = (tmp_path / "out" / "summary").read_text()
    assert proc.returncode == 0, summary + proc.stdout[-4000:] + proc.stderr[-4000:]
    assert re.search(r"^offline-suite\s+PASS$", summary, re.M), summary
