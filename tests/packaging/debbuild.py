#!/usr/bin/env python3
"""Build natfwd's Debian packages from its sdist, lint them and try them.

    debbuild.py --out DIR [--sdist natfwd-X.tar.gz] [--profiles P,...] [--install]

The sdist becomes the orig tarball and the checkout's debian/ is laid over it,
as a Debian maintainer would. Build dependencies are installed with apt,
bookworm-backports included (scikit-build-core and a new enough CMake live
there), through a private apt configuration whose mirror is taken from the
machine's own apt sources, so /etc/apt is never changed. dpkg-buildpackage
runs with Debian's own python3 first on PATH. The binary packages and the
source package are checked by lintian, which must report no error and no
warning. With --install the packages are installed and ``natfwd --version``
is run from them. Needs root (apt-get) on Debian bookworm or newer.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import fetchcache  # noqa: E402

#: Debian's own tools first: pyenv shims or a virtual environment on PATH
#: would otherwise hand pybuild the wrong python3.
DEBIAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
APT_DIR = Path.home() / ".cache" / "natfwd" / "apt"
LINTIAN_FAIL_ON = "error,warning"


class BuildError(Exception):
    """A step of the build failed; the message says which and why."""


def log(message: str) -> None:
    print(f"debbuild: {message}", file=sys.stderr, flush=True)


def run(cmd, cwd=None, env=None, capture=False) -> str:
    cmd = [str(c) for c in cmd]
    log("$ " + " ".join(cmd))
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.STDOUT if capture else None,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout or "").splitlines()[-40:])
        raise BuildError(f"{cmd[0]} exited {proc.returncode}\n{tail}".rstrip())
    return proc.stdout or ""


def debian_env() -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PYENV", "CIBW_", "NATFWD_"))
    }
    env.update(PATH=DEBIAN_PATH, DEBIAN_FRONTEND="noninteractive", LC_ALL="C.UTF-8")
    return env


def codename() -> str:
    text = Path("/etc/os-release").read_text()
    match = re.search(r"^VERSION_CODENAME=\"?([a-z]+)", text, re.MULTILINE)
    if not match:
        raise BuildError("/etc/os-release names no VERSION_CODENAME")
    return match.group(1)


def apt_options() -> list:
    """Point apt at the machine's mirror plus -updates and -backports."""
    mirrors = fetchcache.debian_mirrors()
    if not mirrors:
        raise BuildError("no Debian archive in the machine's apt sources")
    suite = codename()
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    lines = [
        f"deb [signed-by={keyring}] {mirrors[0]} {suite}{part} main"
        for part in ("", "-updates", "-backports")
    ]
    (APT_DIR / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    sources = APT_DIR / "sources.list"
    sources.write_text("\n".join(lines) + "\n")
    return [
        "-o", f"Dir::Etc::SourceList={sources}",
        "-o", "Dir::Etc::SourceParts=/dev/null",
        "-o", f"Dir::State::Lists={APT_DIR / 'lists'}",
        "-o", "APT::Sandbox::User=root",
    ]  # fmt: skip


def unpack_source(sdist: Path, work: Path) -> Path:
    """Make natfwd_X.orig.tar.gz and natfwd-X/ with the checkout's debian/."""
    match = re.fullmatch(r"natfwd-(.+)\.tar\.gz", sdist.name)
    if not match:
        raise BuildError(f"{sdist.name!r} is not named like an sdist, natfwd-X.tar.gz")
    version = match.group(1)
    changelog = (ROOT / "debian" / "changelog").read_text().split("\n", 1)[0]
    if f"({version}-" not in changelog:
        raise BuildError(
            f"debian/changelog starts with {changelog!r}, not version {version}-N"
        )

    shutil.copyfile(sdist, work / f"natfwd_{version}.orig.tar.gz")
    with tarfile.open(sdist) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(work, filter="data")
        else:  # Python < 3.11.4; the sdist is our own
            tar.extractall(work)
    tree = work / f"natfwd-{version}"
    shutil.rmtree(tree / "debian", ignore_errors=True)
    shutil.copytree(ROOT / "debian", tree / "debian")
    return tree


def build(sdist: Path, out: Path, profiles: list) -> list:
    """Build binary and source packages into *out*; return the files made."""
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = debian_env()
    tree = unpack_source(sdist, work)

    apt = ["apt-get", *apt_options()]
    run([*apt, "update", "-q"], env=env)
    profile_args = ["-P", ",".join(profiles)] if profiles else []
    run(
        [*apt, "build-dep", "-y", "-q", *profile_args, f"./{tree.name}"],
        cwd=work,
        env=env,
    )
    run([*apt, "install", "-y", "-q", "--no-install-recommends", "lintian"], env=env)

    # The source package first, from the pristine unpacked tree.
    run(["dpkg-source", "--build", tree.name], cwd=work, env=env)
    build_args = [f"--build-profiles={','.join(profiles)}"] if profiles else []
    run(["dpkg-buildpackage", "-us", "-uc", "-b", *build_args], cwd=tree, env=env)

    made = sorted(
        p
        for p in work.iterdir()
        if p.suffix in (".deb", ".changes", ".buildinfo", ".dsc")
        or p.name.endswith((".debian.tar.xz", ".orig.tar.gz"))
    )
    for path in made:
        shutil.copyfile(path, out / path.name)
    return [out / p.name for p in made]


def lint(files: list) -> str:
    """Run lintian on the .changes and .dsc; fail on errors or warnings."""
    targets = [f for f in files if f.suffix in (".changes", ".dsc")]
    output = run(
        ["lintian", "--fail-on", LINTIAN_FAIL_ON, "--display-info", *targets],
        env=debian_env(),
        capture=True,
    )
    log("lintian:\n" + output)
    return output


def install(files: list) -> str:
    """Install the packages, run natfwd --version from them, return its output."""
    debs = [f"./{f.name}" for f in files if f.suffix == ".deb"]
    env = debian_env()
    run(
        ["apt-get", *apt_options(), "install", "-y", "-q", "--reinstall", *debs],
        cwd=files[0].parent,
        env=env,
    )
    return run(["natfwd", "--version"], env=env, capture=True)


def remove() -> None:
    run(
        ["apt-get", "purge", "-y", "-q", "natfwd", "python3-natfwd"],
        env=debian_env(),
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sdist", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--profiles", default="", help="comma-separated")
    parser.add_argument("--install", action="store_true")
    args = parser.parse_args(argv)

    if os.geteuid() != 0:
        log("needs root: apt-get installs the build dependencies")
        return 2
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    profiles = [p for p in args.profiles.split(",") if p]
    try:
        files = build(args.sdist.resolve(), out, profiles)
        lint(files)
        if args.install:
            log("natfwd --version: " + install(files).strip())
    except BuildError as exc:
        log(f"failed: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
