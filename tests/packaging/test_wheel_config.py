"""The release-wheel configuration: cibuildwheel's selection and the abi3 tag.

No container engine or macOS/Windows runner is at hand here, so cibuildwheel
is asked only what it would build on each platform; the real builds run in
.github/workflows/wheels.yml. The one wheel that can be built here is checked
the way cibuildwheel checks it, with abi3audit.
"""

from __future__ import annotations

import os
import sys
import zipfile
from pathlib import Path

import pytest
from shipping_support import ROOT, run, venv_tool

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

pytestmark = pytest.mark.packaging

#: What each platform must build: one abi3 wheel per architecture (made with
#: CPython 3.9, tested on 3.14 too), plus free-threaded CPython and PyPy.
EXPECTED = {
    "linux": {
        f"{python}-{libc}_{arch}"
        for arch in ("x86_64", "aarch64")
        for libc in ("manylinux", "musllinux")
        for python in ("cp39", "cp314", "cp314t")
    }
    | {f"pp311-manylinux_{arch}" for arch in ("x86_64", "aarch64")},
    "macos": {
        f"{python}-macosx_{arch}"
        for arch in ("x86_64", "arm64")
        for python in ("cp39", "cp314", "cp314t", "pp311")
    },
    "windows": {
        f"{python}-win_{arch}"
        for arch in ("amd64", "arm64")
        for python in ("cp39", "cp314", "cp314t")
    }
    | {"pp311-win_amd64"},
}


def cibuildwheel_config() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["cibuildwheel"]


@pytest.mark.parametrize("platform", sorted(EXPECTED))
def test_cibuildwheel_selects_every_target(platform: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIBW_")}
    proc = run(
        [
            venv_tool("cibuildwheel"),
            "--print-build-identifiers",
            "--platform",
            platform,
            ROOT,
        ],
        env=env,
    )

    selected = set(proc.stdout.split())

    # PyPy for arm64 macOS can only be listed by an arm64 Mac.
    missing = EXPECTED[platform] - selected - {"pp311-macosx_arm64"}
    assert not missing, f"cibuildwheel would not build {sorted(missing)}"
    extra = selected - EXPECTED[platform]
    assert not extra, f"cibuildwheel would also build {sorted(extra)}"


def test_cibuildwheel_tests_the_installed_wheel() -> None:
    config = cibuildwheel_config()

    commands = config["test-command"]
    assert any("import natfwd._miniupnpc, natfwd._natpmp" in c for c in commands)
    assert "natfwd --version" in commands
    (pytest_command,) = [c for c in commands if c.startswith("pytest ")]
    for marker in ("lab", "packaging", "windows"):
        assert f"not {marker}" in pytest_command, pytest_command
    for folder in ("tests/unit", "tests/bindings"):
        assert folder in pytest_command
    # tests/bindings compares the modules' versions with the pins and queues.
    assert set(config["test-sources"]) >= {
        "tests",
        "pyproject.toml",
        "patches",
        "vendor/libnatpmp/pin.toml",
        "vendor/miniupnpc/pin.toml",
    }
    assert config["environment"]["NATFWD_FETCH"] == "OFF"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            out,
            ROOT,
        ]
    )
    (made,) = out.glob("natfwd-*.whl")
    return made


def test_wheel_is_abi3_and_passes_abi3audit(wheel: Path) -> None:
    name = wheel.name
    assert "-cp39-abi3-" in name, f"{name} is not tagged cp39-abi3"

    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    for module in ("_miniupnpc", "_natpmp"):
        assert f"natfwd/{module}.abi3.so" in names, names
    licences = [n for n in names if "/licenses/" in n]
    assert any("miniupnpc" in n for n in licences), licences
    assert any("natpmp" in n for n in licences), licences

    run([venv_tool("abi3audit"), "--strict", "--report", wheel])
