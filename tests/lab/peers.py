"""Build the third-party programs the lab runs, from pinned upstream sources.

Three peers are built, each with its own upstream build system and no patches:

``miniupnpd``
    The gateway daemon (2.3.9: the first release with ``ext_allow_private_ipv4``,
    which the lab needs because its WAN address is a reserved one). Configured
    for the nftables backend, IGDv2, the lease file and manufacturer strings;
    NAT-PMP and PCP are always compiled in and switched on or off per lab by
    ``enable_pcp_pmp`` in its configuration.
``miniupnpd-igdv1``
    The same source configured without ``--igd2``. miniupnpd's run-time
    ``force_igd_desc_v1`` changes only the device description, while the
    actions keep IGDv2 rules (a lease of 0 becomes 604800 s); the lab's
    ``igdv1`` variant runs this build so it behaves as an IGDv1 router does.
``upnpc`` and ``natpmpc``
    The pristine upstream command-line clients of the releases natfwd's forks
    start from, for side-by-side checks and benchmarks.

Sources come through ``tools/fetchcache.py`` (cache first, then the Debian
archive's pool), are checked against their sha256, and are built into

    $NATFWD_PEERS_DIR, or else ${XDG_CACHE_HOME:-~/.cache}/natfwd/peers

beside the download cache (CI keeps both between runs), in one folder per
peer named after a hash of the source's sha256 and the build recipe, so a new
pin or another configure option builds afresh, and an existing build is
reused without touching the network. A build runs under a file lock, so
parallel test processes build each peer once.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass, replace
from pathlib import Path

__all__ = ["PEERS", "Peer", "PeerBuildError", "peer_bin_dir", "peer_path", "peers_dir"]

log = logging.getLogger("natfwd.lab.peers")

ROOT = Path(__file__).resolve().parents[2]

#: Seconds one build step (unpack, configure, make) may take.
BUILD_TIMEOUT = 600


class PeerBuildError(Exception):
    """A peer's source could not be fetched or did not build."""


@dataclass(frozen=True)
class Peer:
    """One pinned upstream program and how to build it."""

    name: str
    version: str
    filename: str
    sha256: str
    debian_package: str
    top_directory: str
    #: Commands run in the unpacked tree, in order.
    steps: tuple[tuple[str, ...], ...]
    #: Path of the built program, relative to the unpacked tree.
    product: str
    #: Debian packages whose headers the build needs (for error messages).
    needs: tuple[str, ...] = ()


PEERS: dict[str, Peer] = {
    "miniupnpd": Peer(
        name="miniupnpd",
        version="2.3.9",
        filename="miniupnpd_2.3.9.orig.tar.gz",
        sha256="66cb3c3d697ab2bb3a61d3c48628166d6ba328d7c2dbeb95898fdf2a3202af7b",
        debian_package="miniupnpd",
        top_directory="miniupnpd-2.3.9",
        steps=(
            (
                "./configure",
                "--firewall=nftables",
                "--igd2",
                "--leasefile",
                "--vendorcfg",
                "--disable-tests",
            ),
            ("make", "miniupnpd"),
        ),
        product="miniupnpd",
        needs=("libmnl-dev", "libnftnl-dev", "uuid-dev", "libssl-dev"),
    ),
    "upnpc": Peer(
        name="upnpc",
        version="2.3.3",
        filename="miniupnpc_2.3.3.orig.tar.gz",
        sha256="d52a0afa614ad6c088cc9ddff1ae7d29c8c595ac5fdd321170a05f41e634bd1a",
        debian_package="miniupnpc",
        top_directory="miniupnpc-2.3.3",
        steps=(("make", "build/upnpc-static"),),
        product="build/upnpc-static",
    ),
    "natpmpc": Peer(
        name="natpmpc",
        version="20230423",
        filename="libnatpmp_20230423.orig.tar.gz",
        sha256="0684ed2c8406437e7519a1bd20ea83780db871b3a3a5d752311ba3e889dbfc70",
        debian_package="libnatpmp",
        top_directory="libnatpmp-20230423",
        steps=(("make", "natpmpc-static"),),
        product="natpmpc-static",
    ),
}

# Variants: the same pinned sources, built another way.

# IGDv1 throughout, not only in its description: lease duration 0 stays
# "no expiry", and there are no IGDv2 actions.
PEERS["miniupnpd-igdv1"] = replace(
    PEERS["miniupnpd"],
    name="miniupnpd-igdv1",
    steps=(
        (
            "./configure",
            "--firewall=nftables",
            "--leasefile",
            "--vendorcfg",
            "--disable-tests",
        ),
        ("make", "miniupnpd"),
    ),
)

# For the benchmark only: natpmpc as released, but without its refusal of a
# reserved external address (every address of the lab is one), so that its
# "-a" maps a port as natfwd's "add" does.
PEERS["natpmpc-lab"] = replace(
    PEERS["natpmpc"],
    name="natpmpc-lab",
    steps=(
        (
            "sed",
            "-i",
            r"s/if(addr_is_reserved(/if(0 \&\& addr_is_reserved(/",
            "natpmpc.c",
        ),
        ("grep", "-q", "if(0 && addr_is_reserved(", "natpmpc.c"),
        ("make", "natpmpc-static"),
    ),
)


def peers_dir() -> Path:
    """Return the folder that holds the peer builds (not created here)."""
    override = os.environ.get("NATFWD_PEERS_DIR")
    if override:
        return Path(override).expanduser()

    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "natfwd" / "peers"


def _fetchcache():
    path = ROOT / "tools" / "fetchcache.py"
    spec = importlib.util.spec_from_file_location("natfwd_tools_fetchcache", path)
    if spec is None or spec.loader is None:
        raise PeerBuildError(f"cannot load {path}")

    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_step(argv: tuple[str, ...], cwd: Path, log_file) -> None:
    log_file.write(f"$ {' '.join(argv)}\n".encode())
    log_file.flush()
    env = dict(os.environ)
    env.setdefault("MAKEFLAGS", f"-j{os.cpu_count() or 1}")
    try:
        result = subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            timeout=BUILD_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PeerBuildError(f"{' '.join(argv)!r} in {cwd} failed: {exc}") from exc

    if result.returncode != 0:
        raise PeerBuildError(
            f"{' '.join(argv)!r} in {cwd} exited {result.returncode}; "
            f"see {log_file.name}"
        )


def _build(peer: Peer, home: Path, offline: bool) -> Path:
    fetchcache = _fetchcache()
    try:
        tarball = fetchcache.fetch_verified(
            peer.filename,
            peer.sha256,
            debian_package=peer.debian_package,
            offline=offline,
        )
    except fetchcache.FetchError as exc:
        raise PeerBuildError(f"cannot get the source of {peer.name}: {exc}") from exc

    source = home / "src"
    if source.exists():
        shutil.rmtree(source)
    source.mkdir(parents=True)
    with tarfile.open(tarball) as archive:
        archive.extractall(source, filter="data")
    tree = source / peer.top_directory
    if not tree.is_dir():
        raise PeerBuildError(f"{tarball} has no top folder {peer.top_directory!r}")

    log.info("building %s %s in %s", peer.name, peer.version, tree)
    with open(home / "build.log", "wb") as build_log:
        try:
            for step in peer.steps:
                _run_step(step, tree, build_log)
        except PeerBuildError as exc:
            if not peer.needs:
                raise
            hint = f" (it needs the Debian packages {', '.join(peer.needs)})"
            raise PeerBuildError(f"{exc}{hint}") from exc

    built = tree / peer.product
    if not built.is_file():
        raise PeerBuildError(f"the {peer.name} build made no {built}")
    program = home / peer.name
    shutil.copy2(built, program)
    return program


def _build_key(peer: Peer) -> str:
    """Name a build by its source and its recipe, so a changed recipe (say,
    another configure option) builds afresh instead of reusing a stale one."""
    recipe = json.dumps([peer.sha256, peer.steps, peer.product])
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def peer_path(name: str, *, offline: bool = False) -> Path:
    """Return the path of peer *name*'s program, building it first if needed.

    *name* is a key of :data:`PEERS`. With *offline*, the source must already
    be in the download cache. Raises :class:`PeerBuildError` when the source
    cannot be had or the build fails (its log is named in the message).
    """
    try:
        peer = PEERS[name]
    except KeyError:
        raise ValueError(
            f"unknown peer {name!r}; expected one of {sorted(PEERS)}"
        ) from None

    home = peers_dir() / f"{peer.name}-{peer.version}-{_build_key(peer)}"
    program = home / peer.name
    if program.is_file():
        return program

    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if program.is_file():
            return program
        return _build(peer, home, offline)


def peer_bin_dir(*, offline: bool = False) -> Path:
    """Build every peer and return a folder of links to them, for ``PATH``.

    The links are named after the peers: ``miniupnpd``, ``upnpc``,
    ``natpmpc`` and the variants of :data:`PEERS`.
    """
    bin_dir = peers_dir() / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in PEERS:
        program = peer_path(name, offline=offline)
        link = bin_dir / name
        if link.is_symlink() and link.resolve() == program:
            continue
        partial = bin_dir / f".{name}.new"
        partial.unlink(missing_ok=True)
        partial.symlink_to(program)
        partial.replace(link)
    return bin_dir
