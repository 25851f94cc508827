"""natfwd builds from a clone, from its sdist with no network, as a manylinux
wheel, and against the system's libraries; each build passes tests/bindings."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from packaging_support import (
    Venv,
    build_command,
    build_wheel,
    cache_dir,
    clean_env,
    install_target,
    run,
    run_binding_tests,
)

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.9 and 3.10
    import tomli as tomllib

pytestmark = pytest.mark.packaging

LIBRARIES = ("miniupnpc", "libnatpmp")
DEBIAN_PACKAGES = ("libminiupnpc-dev", "libnatpmp-dev")

IMPORT_BOTH = "import natfwd._miniupnpc, natfwd._natpmp"
ORIGINS = """
import natfwd._miniupnpc as u, natfwd._natpmp as p
for m in (u, p):
    print(m.ffi.string(m.lib.natfwd_library_origin()).decode())
"""


def package_version(source: Path) -> str:
    text = (source / "src" / "natfwd" / "__init__.py").read_text(encoding="utf-8")
    return re.search(r'^__version__ = "([^"]+)"', text, re.MULTILINE).group(1)


def pin(source: Path, lib: str) -> dict:
    with open(source / "vendor" / lib / "pin.toml", "rb") as f:
        return tomllib.load(f)


def flat(text: str) -> str:
    """CMake wraps long messages; compare them as one line."""
    return " ".join(text.split())


def linked_libraries(module: Path, env: dict[str, str]) -> str:
    return run(["ldd", module], env=env).stdout


# From a clone, with pip's build isolation


@pytest.fixture(scope="session")
def clone_install(workspace: Path, clone: Path) -> Venv:
    made = Venv.create(workspace / "from-clone")
    made.pip("install", "-q", "pytest")
    made.pip("install", "-q", clone)
    return made


def test_pip_install_from_clone(clone_install: Venv, clone: Path):
    proc = run([clone_install.python, "-c", ORIGINS])

    assert proc.stdout.startswith("natfwd fork of miniupnpc "), proc.stdout
    assert "natfwd fork of libnatpmp " in proc.stdout
    run_binding_tests(clone_install.python, clone, clean_env())


# sdist and wheel


@pytest.fixture(scope="session")
def dists(workspace: Path, clone: Path, clone_install: Venv, tester: Venv):
    """``python -m build`` of the clone: an sdist, and a wheel built from it.

    It runs after ``clone_install`` on purpose: that build left a build folder
    in the clone, which the sdist must leave out. The vendor trees are made
    the way a release makes them, with ``tools/patchq apply``.
    """
    assert (clone / "build").is_dir()
    run([tester.python, clone / "tools" / "patchq", "apply"], cwd=clone)
    out = workspace / "dist"

    run([tester.python, "-m", "build", "--outdir", out, clone])

    (sdist,) = out.glob("natfwd-*.tar.gz")
    (wheel,) = out.glob("natfwd-*.whl")
    return sdist, wheel


def pristine_members(source: Path, lib: str) -> dict[str, bytes]:
    info = pin(source, lib)["tarball"]
    tarball = cache_dir() / "downloads" / info["filename"]
    top = info["top_directory"] + "/"
    with tarfile.open(tarball) as tar:
        return {
            m.name[len(top) :]: tar.extractfile(m).read()
            for m in tar.getmembers()
            if m.isfile() and m.name.startswith(top)
        }


def test_sdist_carries_the_patched_trees(dists, clone: Path):
    sdist, _ = dists
    prefix = f"natfwd-{package_version(clone)}/"

    with tarfile.open(sdist) as tar:
        members = {
            m.name[len(prefix) :]: tar.extractfile(m).read()
            for m in tar.getmembers()
            if m.isfile()
        }

    assert "LICENSE" in members
    assert "pyproject.toml" in members
    for lib in LIBRARIES:
        tree = f"vendor/{lib}/tree/"
        assert f"{tree}LICENSE" in members, f"no licence of {lib} in the sdist"
        assert f"{tree}CMakeLists.txt" in members
        assert f"patches/{lib}/series" in members
        assert f"vendor/{lib}/pin.toml" in members
        shipped = {k[len(tree) :]: v for k, v in members.items() if k.startswith(tree)}
        for name, data in shipped.items():
            on_disk = clone / "vendor" / lib / "tree" / name
            assert on_disk.read_bytes() == data, f"{tree}{name} differs from patchq's"
        pristine = pristine_members(clone, lib)
        changed = [n for n, d in shipped.items() if n in pristine and pristine[n] != d]
        assert changed, f"the sdist's {lib} tree is the pristine release, unpatched"


def test_sdist_leaves_out_builds_and_tooling(dists, clone: Path):
    sdist, _ = dists
    prefix = f"natfwd-{package_version(clone)}/"

    with tarfile.open(sdist) as tar:
        names = [m.name[len(prefix) :] for m in tar.getmembers() if m.isfile()]

    top_level = {Path(n).parts[0] for n in names}
    assert not top_level & {"build", "dist", "_skbuild", ".venv", ".ci", ".github"}
    assert "tools" not in top_level
    unwanted = re.compile(
        r"(^|/)(\.git|\.work|CMakeFiles|__pycache__|\.pytest_cache)(/|$)"
        r"|CMakeCache\.txt$|\.(o|a|so|pyc)$"
    )
    assert [n for n in names if unwanted.search(n)] == []


def test_sdist_carries_no_gpl_code_of_the_forks(dists, clone: Path):
    """Both forks are BSD-3-Clause; libnatpmp's release also holds Java
    bindings, partly GPL, that nothing here builds: they stay out."""
    sdist, _ = dists
    prefix = f"natfwd-{package_version(clone)}/vendor/"
    with tarfile.open(sdist) as tar:
        vendored = [
            m for m in tar.getmembers() if m.isfile() and m.name.startswith(prefix)
        ]
        assert vendored
        gpl = [
            m.name
            for m in vendored
            if b"GNU General Public License" in tar.extractfile(m).read()
        ]
    assert gpl == []


def test_wheel_from_sdist(dists, clone: Path):
    _, wheel = dists
    version = package_version(clone)

    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())

    assert wheel.name.startswith(f"natfwd-{version}-cp39-abi3-")
    assert "natfwd/_miniupnpc.abi3.so" in names
    assert "natfwd/_natpmp.abi3.so" in names
    licenses = f"natfwd-{version}.dist-info/licenses/"
    assert f"{licenses}LICENSE" in names
    for lib in LIBRARIES:
        assert f"{licenses}vendor/{lib}/LICENSE" in names


# The sdist with no network at all


def build_requirements(source: Path) -> list[str]:
    with open(source / "pyproject.toml", "rb") as f:
        requires = tomllib.load(f)["build-system"]["requires"]
    # What scikit-build-core asks for when the machine's CMake or Ninja will
    # not do; the wheelhouse carries them so the offline build never needs to.
    return [*requires, "cmake>=3.26", "ninja"]


def test_sdist_installs_without_network(
    workspace: Path, dists, clone: Path, tester: Venv, netns_offline: str
):
    sdist, _ = dists
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    wheelhouse = cache_dir() / "wheelhouse" / f"{tag}-{platform.machine()}"
    tester.pip("download", "-q", "-d", wheelhouse, *build_requirements(clone))
    offline = Venv.create(workspace / "offline")
    offline.pip("install", "-q", "pytest")

    links = run(["ip", "-n", netns_offline, "-o", "link", "show"]).stdout
    assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]
    assert run(["ip", "-n", netns_offline, "route", "show"]).stdout.strip() == ""
    env = clean_env(PIP_CONFIG_FILE=os.devnull, PIP_NO_INPUT="1")
    run(
        [
            *("ip", "netns", "exec", netns_offline, offline.python, "-m", "pip"),
            *("install", "--no-index", "--find-links", wheelhouse, sdist),
        ],
        env=env,
    )

    run([offline.python, "-c", IMPORT_BOTH])
    run_binding_tests(offline.python, clone, clean_env())


# manylinux: auditwheel, and the repaired wheel on several CPythons


def find_interpreters() -> list[tuple[tuple[int, int], str]]:
    """CPython 3.9 or later found on this machine, one per minor version."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = [sys.executable]
    candidates += [str(p) for p in sorted(pyenv.glob("versions/3.*/bin/python3"))]
    candidates += [
        str(p)
        for p in sorted(Path("/usr/bin").glob("python3.*"))
        if re.fullmatch(r"python3\.\d+", p.name)
    ]
    found: dict[tuple[int, int], str] = {}
    probe = "import sys, ensurepip; print(sys.version_info[0], sys.version_info[1])"
    for exe in candidates:
        try:
            proc = subprocess.run(
                [exe, "-c", probe],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except OSError:
            continue
        if proc.returncode != 0 or "free-threading" in exe:
            continue
        major, minor = map(int, proc.stdout.split())
        if (major, minor) >= (3, 9):
            found.setdefault((major, minor), exe)
    return sorted(found.items())


def interpreter_params() -> list:
    found = find_interpreters()
    chosen = [found[0], found[-1]] if len(found) > 1 else found
    params = [pytest.param(exe, id=f"py{v[0]}.{v[1]}") for v, exe in chosen]
    if len(chosen) < 2:
        params.append(
            pytest.param(
                None,
                id="second-python",
                marks=pytest.mark.skip(
                    reason="only one CPython >= 3.9 on this machine "
                    f"({[f'{v[0]}.{v[1]}' for v, _ in found]}); pyenv or Debian's "
                    "python3.X packages would give a second"
                ),
            )
        )
    return params


@pytest.fixture(scope="session")
def repaired(workspace: Path, dists, tester: Venv) -> Path:
    _, wheel = dists
    env = clean_env(PATH=f"{tester.path / 'bin'}:{os.environ['PATH']}")
    out = workspace / "repaired"

    run([tester.bin("auditwheel"), "repair", "-w", out, wheel], env=env)

    (fixed,) = out.glob("natfwd-*.whl")
    return fixed


def test_auditwheel_show_is_manylinux(dists, tester: Venv):
    _, wheel = dists
    env = clean_env(PATH=f"{tester.path / 'bin'}:{os.environ['PATH']}")

    proc = run([tester.bin("auditwheel"), "show", wheel], env=env)

    shown = flat(proc.stdout)
    assert re.search(rf'platform tag: "manylinux_\d+_\d+_{platform.machine()}"', shown)
    assert "external shared libraries" not in shown or "libminiupnpc" not in shown


def test_repaired_wheel_is_manylinux(repaired: Path):
    assert re.search(r"-cp39-abi3-.*manylinux_\d+_\d+_", repaired.name), repaired.name


@pytest.mark.parametrize("python", interpreter_params())
def test_repaired_wheel_runs(workspace: Path, repaired: Path, clone: Path, python):
    name = Path(python).parent.parent.name
    made = Venv.create(workspace / f"run-{name}-{os.getpid()}", python)
    made.pip("install", "-q", repaired, "pytest")
    version = package_version(clone)

    run([made.python, "-c", IMPORT_BOTH])
    module = run([made.python, "-m", "natfwd", "--version"])
    script = run([made.bin("natfwd"), "--version"])

    assert version in module.stdout + module.stderr
    assert version in script.stdout + script.stderr
    run_binding_tests(made.python, clone, clean_env())


# Against the system's libraries


@pytest.fixture(scope="session")
def debian_libraries() -> None:
    """Debian's libminiupnpc-dev (API 17 in bookworm) and libnatpmp-dev."""
    missing = [
        p
        for p in DEBIAN_PACKAGES
        if "ok installed"
        not in run(["dpkg-query", "-W", "-f=${Status}", p], check=False).stdout
    ]
    if missing and os.geteuid() != 0:
        pytest.skip(f"{missing} not installed, and installing them needs root")
    if missing:
        env = clean_env(DEBIAN_FRONTEND="noninteractive")
        install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends"]
        if run([*install, *missing], env=env, check=False).returncode != 0:
            run(["apt-get", "update", "-qq"], env=env)
            run([*install, *missing], env=env)


def header_define(header: Path, name: str) -> str:
    text = header.read_text(encoding="utf-8", errors="replace")
    return re.search(rf"#\s*define\s+{name}\s+\"?([^\"\s]+)", text).group(1)


def test_system_libraries_from_debian(
    workspace: Path, tester: Venv, clone: Path, debian_libraries
):
    header = Path("/usr/include/miniupnpc/miniupnpc.h")
    version = header_define(header, "MINIUPNPC_VERSION")
    api = header_define(header, "MINIUPNPC_API_VERSION")

    wheel = build_wheel(
        tester,
        clone,
        workspace / "wheel-debian",
        workspace / "build-debian",
        NATFWD_USE_SYSTEM_LIBS="ON",
    )
    site = install_target(tester, wheel, workspace / "site-debian")

    origins = run([tester.python, "-c", ORIGINS], env=site.env).stdout.splitlines()
    assert origins[0] == f"system miniupnpc {version} (API {api})"
    assert origins[1].startswith("system libnatpmp ")
    linked = linked_libraries(site.path / "natfwd" / "_miniupnpc.abi3.so", site.env)
    assert re.search(r"libminiupnpc\.so\.\d+ => (/usr)?/lib/", linked), linked
    with zipfile.ZipFile(wheel) as whl:
        assert not [n for n in whl.namelist() if "/licenses/vendor/" in n]
    run_binding_tests(tester.python, clone, site.env)


@pytest.fixture(scope="session")
def shared_miniupnpc(workspace: Path, tester: Venv, clone: Path) -> Path:
    """The fork's miniupnpc tree built as a shared library into a prefix."""
    run([tester.python, clone / "tools" / "patchq", "apply", "miniupnpc"], cwd=clone)
    build, prefix = workspace / "miniupnpc-build", workspace / "miniupnpc-prefix"
    cmake = tester.bin("cmake")
    env = clean_env(PATH=f"{tester.path / 'bin'}:{os.environ['PATH']}")

    run(
        [
            *(cmake, "-S", clone / "vendor/miniupnpc/tree", "-B", build),
            *("-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release"),
            f"-DCMAKE_INSTALL_PREFIX={prefix}",
            *("-DUPNPC_BUILD_SHARED=ON", "-DUPNPC_BUILD_STATIC=OFF"),
            *("-DUPNPC_BUILD_TESTS=OFF", "-DUPNPC_BUILD_SAMPLE=OFF"),
        ],
        env=env,
    )
    run([cmake, "--build", build], env=env)
    run([cmake, "--install", build], env=env)
    return prefix


def test_system_miniupnpc_api_21(
    workspace: Path, tester: Venv, clone: Path, shared_miniupnpc: Path, debian_libraries
):
    """A newer system miniupnpc than Debian's wins over it through the prefix."""
    prefix = shared_miniupnpc
    version = pin(clone, "miniupnpc")["library"]["version"]

    wheel = build_wheel(
        tester,
        clone,
        workspace / "wheel-api21",
        workspace / "build-api21",
        NATFWD_USE_SYSTEM_LIBS="ON",
        CMAKE_PREFIX_PATH=str(prefix),
    )
    site = install_target(
        tester, wheel, workspace / "site-api21", LD_LIBRARY_PATH=str(prefix / "lib")
    )

    origins = run([tester.python, "-c", ORIGINS], env=site.env).stdout.splitlines()
    assert origins[0] == f"system miniupnpc {version} (API 21)"
    linked = linked_libraries(site.path / "natfwd" / "_miniupnpc.abi3.so", site.env)
    assert f"{prefix}/lib/libminiupnpc.so" in linked, linked
    run_binding_tests(tester.python, clone, site.env)


def debian_library_dirs() -> list[str]:
    """Where find_path and find_library would find Debian's two libraries."""
    proc = run(["dpkg", "-L", *DEBIAN_PACKAGES], check=False)
    files = [Path(f) for f in proc.stdout.splitlines() if f.endswith((".h", ".so"))]
    return sorted({str(f.parent) for f in files} | {"/usr/include", "/usr/lib"})


def test_system_libraries_required_but_missing(
    workspace: Path, tester: Venv, clone: Path
):
    hidden = ";".join(debian_library_dirs())
    out = workspace / "wheel-missing"

    out.mkdir()
    proc = build_command(
        tester,
        clone,
        out,
        workspace / "build-missing",
        check=False,
        NATFWD_USE_SYSTEM_LIBS="ON",
        CMAKE_ARGS=f"-DCMAKE_IGNORE_PATH={hidden}",
    )

    assert proc.returncode != 0
    log = flat(proc.stdout + proc.stderr)
    assert "Looking for the system's miniupnpc - not found" in log
    assert (
        "NATFWD_USE_SYSTEM_LIBS=ON but no usable system miniupnpc was found" in log
    ), log[-3000:]
    assert list(out.glob("*.whl")) == []


def test_without_natpmp(workspace: Path, tester: Venv, clone: Path):
    wheel = build_wheel(
        tester,
        clone,
        workspace / "wheel-no-natpmp",
        workspace / "build-no-natpmp",
        NATFWD_WITH_NATPMP="OFF",
    )
    site = install_target(
        tester, wheel, workspace / "site-no-natpmp", NATFWD_WITH_NATPMP="OFF"
    )

    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
    assert "natfwd/_miniupnpc.abi3.so" in names
    assert not [n for n in names if "natpmp" in n and not n.endswith(".py")]
    probe = (
        "import natfwd._miniupnpc\n"
        "try:\n    import natfwd._natpmp\n"
        "except ModuleNotFoundError:\n    print('absent')\n"
    )
    assert run([tester.python, "-c", probe], env=site.env).stdout == "absent\n"
    proc = run_binding_tests(tester.python, clone, site.env)
    assert "skipped" in proc.stdout


def test_tester_is_isolated(tester: Venv):
    """The tester must not see a natfwd of its own, or PYTHONPATH is moot."""
    proc = run([tester.python, "-c", "import natfwd"], check=False)

    assert proc.returncode != 0


def test_auto_falls_back_to_the_forks(workspace: Path, tester: Venv, clone: Path):
    hidden = ";".join(debian_library_dirs())
    out = workspace / "wheel-auto"
    out.mkdir()

    proc = build_command(
        tester,
        clone,
        out,
        workspace / "build-auto",
        check=True,
        NATFWD_USE_SYSTEM_LIBS="auto",
        CMAKE_ARGS=f"-DCMAKE_IGNORE_PATH={hidden}",
    )
    (wheel,) = out.glob("natfwd-*.whl")
    site = install_target(tester, wheel, workspace / "site-auto")

    log = flat(proc.stdout + proc.stderr)
    for lib in LIBRARIES:
        assert f"Falling back to natfwd's fork of {lib}" in log
    origins = run([tester.python, "-c", ORIGINS], env=site.env).stdout.splitlines()
    assert [o.split(",")[0] for o in origins] == [
        f"natfwd fork of {lib} {pin(clone, lib)['library']['version']}"
        for lib in LIBRARIES
    ]


def test_unknown_system_libs_value_is_refused(
    workspace: Path, tester: Venv, clone: Path
):
    out = workspace / "wheel-bad-option"
    out.mkdir()

    proc = build_command(
        tester,
        clone,
        out,
        workspace / "build-bad-option",
        check=False,
        NATFWD_USE_SYSTEM_LIBS="sometimes",
    )

    assert proc.returncode != 0
    log = flat(proc.stdout + proc.stderr)
    assert "NATFWD_USE_SYSTEM_LIBS is 'sometimes'; expected ON, OFF or AUTO" in log


def test_rebuild_follows_a_new_prefix(
    workspace: Path, tester: Venv, clone: Path, shared_miniupnpc: Path, debian_libraries
):
    """One build folder, first against Debian's library, then a newer one."""
    build_dir = workspace / "build-reused"
    origins = []

    for name, env in [
        ("first", {}),
        ("second", {"CMAKE_PREFIX_PATH": str(shared_miniupnpc)}),
    ]:
        wheel = build_wheel(
            tester,
            clone,
            workspace / f"wheel-reused-{name}",
            build_dir,
            NATFWD_USE_SYSTEM_LIBS="ON",
            **env,
        )
        site = install_target(
            tester,
            wheel,
            workspace / f"site-reused-{name}",
            LD_LIBRARY_PATH=str(shared_miniupnpc / "lib"),
        )
        origins.append(run([tester.python, "-c", ORIGINS], env=site.env).stdout)

    assert "(API 21)" not in origins[0]
    assert "(API 21)" in origins[1], "the second build kept the first library"
