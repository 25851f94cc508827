"""Both forks cross-built for 64-bit Windows and run under wine.

Each library is built by its own CMake build, with the toolchain file beside
this test (mingw-w64, CMAKE_CROSSCOMPILING_EMULATOR set to wine), so that
miniupnpc's CTest suite runs its .exe files under wine. Both are installed
into a prefix, and smoke.c is linked against them through the CMake package
files they install. smoke.exe then drives the libraries against servers this
test runs on 127.0.0.1; nothing is sent anywhere else.

miniupnpc is built with MINIUPNPC_SET_SOCKET_TIMEOUT, which its CMake build
leaves out on Windows: it is the code path the Winsock-timeout patch
corrects, and a pristine build of the same path shows what went wrong.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest
from windows_support import ROOT, TOOLCHAIN, cmake_command

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

sys.path.insert(0, str(ROOT / "tools"))
import fetchcache

pytestmark = [pytest.mark.windows, pytest.mark.slow]

#: Upstream tests that are shell scripts: CMake cannot hand them to wine.
#: The reply-parser cases are run one by one below instead; miniwget's needs
#: a POSIX test server.
SHELL_TESTS = "validateminiwget|validateupnpreplyparse"
WSAETIMEDOUT = 10060
NATPMP_TRYAGAIN = -100


def run(cmd, env=None, cwd=None, timeout=600) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(c) for c in cmd],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, cmd))} exited {proc.returncode}\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}",
            pytrace=False,
        )
    return proc


def cmake_build(wine, source: Path, build: Path, *defines: str, install=None) -> Path:
    cmake = cmake_command()
    configure = [
        cmake,
        "-S",
        source,
        "-B",
        build,
        f"-DCMAKE_TOOLCHAIN_FILE={TOOLCHAIN}",
        f"-DNATFWD_WINE={wine.loader}",
        "-DCMAKE_BUILD_TYPE=Release",
        *defines,
    ]
    if install:
        configure.append(f"-DCMAKE_INSTALL_PREFIX={install}")
    run(configure, env=wine.env)
    run([cmake, "--build", build, "--parallel", "2"], env=wine.env)
    if install:
        run([cmake, "--install", build], env=wine.env)
    return build


def values(output: str) -> dict:
    """The key=value lines smoke.exe prints."""
    found = {}
    for line in output.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep:
            found[key] = value
    return found


@pytest.fixture(scope="module")
def built(wine, tmp_path_factory: pytest.TempPathFactory) -> dict:
    run([sys.executable, ROOT / "tools" / "patchq", "apply"])
    work = tmp_path_factory.mktemp("windows")
    prefix = work / "prefix"

    miniupnpc = cmake_build(
        wine,
        ROOT / "vendor" / "miniupnpc" / "tree",
        work / "miniupnpc",
        "-DUPNPC_BUILD_SHARED=OFF",
        "-DCMAKE_C_FLAGS=-DMINIUPNPC_SET_SOCKET_TIMEOUT",
        install=prefix,
    )
    natpmp = cmake_build(
        wine, ROOT / "vendor" / "libnatpmp" / "tree", work / "libnatpmp", install=prefix
    )
    smoke = cmake_build(
        wine,
        Path(__file__).resolve().parent,
        work / "smoke",
        f"-Dminiupnpc_DIR={prefix / 'lib' / 'cmake' / 'miniupnpc'}",
        f"-Dnatpmp_DIR={prefix / 'lib' / 'cmake' / 'natpmp'}",
    )
    return {
        "work": work,
        "miniupnpc": miniupnpc,
        "natpmp": natpmp,
        "smoke": smoke / "smoke.exe",
    }


# --- the libraries' own tests ---------------------------------------------------


def test_miniupnpc_ctest_suite_passes_under_wine(wine, built: dict) -> None:
    proc = run(
        ["ctest", "--output-on-failure", "--timeout", "120", "-E", SHELL_TESTS],
        env=wine.env,
        cwd=built["miniupnpc"],
    )

    assert "100% tests passed" in proc.stdout, proc.stdout
    assert "validateigddescparse1" in proc.stdout


def test_miniupnpc_reply_parser_cases_under_wine(wine, built: dict) -> None:
    tree = ROOT / "vendor" / "miniupnpc" / "tree"
    cases = sorted((tree / "testreplyparse").glob("*.xml"))
    assert cases, "no reply-parser cases in the tree"

    for xml in cases:
        proc = wine.run(
            built["miniupnpc"] / "testupnpreplyparse.exe",
            str(xml.relative_to(tree)),
            str(xml.with_suffix(".namevalue").relative_to(tree)),
            cwd=tree,
        )
        assert proc.returncode == 0, f"{xml.name}: {proc.stdout}{proc.stderr}"


def test_libnatpmp_programs_build_and_start(wine, built: dict) -> None:
    # -h only: natpmpc with no gateway given would ask the real one.
    proc = wine.run(built["natpmp"] / "natpmpc.exe", "-h")

    assert proc.returncode == 0, proc.stderr
    assert "-g" in proc.stdout
    assert (built["natpmp"] / "testgetgateway.exe").is_file()


# --- natfwd's smoke test ----------------------------------------------------------


def test_smoke_parses_a_canned_description(wine, built: dict) -> None:
    proc = wine.run(built["smoke"], "parse")

    found = values(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert found["parse_controlurl"] == "http://127.0.0.1:5000/ctl/IPConn"
    assert found["parse_cif_controlurl"] == "http://127.0.0.1:5000/ctl/CmnIfCfg"


class SilentUdp:
    """Listens on 127.0.0.1:5351 for NAT-PMP requests and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.bind(("127.0.0.1", 5351))
        except OSError as exc:
            self.sock.close()
            pytest.fail(f"127.0.0.1:5351 is taken ({exc}); stop what holds it")
        self.sock.settimeout(0.2)
        self.requests: list[bytes] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        deadline = time.monotonic() + 30
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                data, _ = self.sock.recvfrom(64)
            except socket.timeout:
                continue
            self.requests.append(data)

    def __enter__(self) -> SilentUdp:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


@pytest.mark.parametrize("listener", ["nothing bound", "silent listener"])
def test_smoke_natpmp_ends_cleanly_when_nothing_answers(
    wine, built: dict, listener: str
) -> None:
    if listener == "silent listener":
        with SilentUdp() as server:
            proc = wine.run(built["smoke"], "natpmp", timeout=30)
        # Each is a public-address request: version 0, opcode 0.
        assert len(server.requests) >= 2, server.requests
        assert set(server.requests) == {b"\x00\x00"}
    else:
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.bind(("127.0.0.1", 5351))
        except OSError:
            pytest.fail("127.0.0.1:5351 is taken; the test needs it closed")
        probe.close()
        proc = wine.run(built["smoke"], "natpmp", timeout=30)

    found = values(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert int(found["natpmp_send"]) == 2  # bytes sent
    # Still retrying at the deadline, or an error code: never a mapping.
    assert int(found["natpmp_result"]) < 0
    assert int(found["natpmp_ms"]) < 10_000


class LoopbackHttp:
    """One connection on 127.0.0.1: answer after *delay* s, or never."""

    BODY = b"<?xml version='1.0'?><root/>"

    def __init__(self, delay: float | None) -> None:
        self.delay = delay
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(15)
        self.port = self.sock.getsockname()[1]
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except socket.timeout:
            return
        with conn:
            conn.settimeout(10)
            try:
                conn.recv(4096)
                if self.delay is None:
                    self.done.wait(8)  # longer than miniupnpc's 3 s timeout
                    return
                time.sleep(self.delay)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n"
                    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                    % (len(self.BODY), self.BODY)
                )
            except OSError:
                return

    def __enter__(self) -> LoopbackHttp:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join(20)
        self.sock.close()


def test_smoke_fetch_waits_for_a_slow_gateway(wine, built: dict) -> None:
    with LoopbackHttp(delay=1.0) as server:
        proc = wine.run(
            built["smoke"], "fetch", f"http://127.0.0.1:{server.port}/rootDesc.xml"
        )

    found = values(proc.stdout)
    assert found["fetch_status"] == "200", proc.stdout
    assert int(found["fetch_size"]) == len(LoopbackHttp.BODY)
    assert int(found["fetch_ms"]) >= 900


def test_winsock_socket_timeouts_are_three_seconds(wine, built: dict) -> None:
    with LoopbackHttp(delay=None) as server:
        proc = wine.run(built["smoke"], "recv", str(server.port), timeout=30)

    found = values(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert found["recv_rcvtimeo_ms"] == "3000"
    assert found["recv_sndtimeo_ms"] == "3000"
    assert int(found["recv_error"]) == WSAETIMEDOUT
    assert 2500 <= int(found["recv_ms"]) <= 6000


def pristine_miniupnpc(dest: Path) -> Path:
    """Unpack the pinned miniupnpc release, without natfwd's patches."""
    run([sys.executable, ROOT / "tools" / "patchq", "fetch", "miniupnpc"])
    with open(ROOT / "vendor" / "miniupnpc" / "pin.toml", "rb") as f:
        pin = tomllib.load(f)["tarball"]
    tarball = fetchcache.cache_dir() / pin["filename"]
    assert fetchcache.sha256_file(tarball) == pin["sha256"]
    with tarfile.open(tarball) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:
            tar.extractall(dest)
    return dest / pin["top_directory"]


def test_pristine_release_hands_winsock_a_timeval(wine, built: dict) -> None:
    # What patches/miniupnpc/0005 corrects: Winsock reads the struct timeval
    # {3, 0} as a DWORD, 3 ms, so a blocking recv gives up at once.
    work = built["work"] / "pristine"
    prefix = work / "prefix"
    cmake_build(
        wine,
        pristine_miniupnpc(work),
        work / "miniupnpc",
        "-DUPNPC_BUILD_SHARED=OFF",
        "-DUPNPC_BUILD_TESTS=OFF",
        "-DUPNPC_BUILD_SAMPLE=OFF",
        "-DCMAKE_C_FLAGS=-DMINIUPNPC_SET_SOCKET_TIMEOUT",
        install=prefix,
    )
    smoke = cmake_build(
        wine,
        Path(__file__).resolve().parent,
        work / "smoke",
        f"-Dminiupnpc_DIR={prefix / 'lib' / 'cmake' / 'miniupnpc'}",
        f"-Dnatpmp_DIR={built['work'] / 'prefix' / 'lib' / 'cmake' / 'natpmp'}",
    )

    with LoopbackHttp(delay=None) as server:
        proc = wine.run(smoke / "smoke.exe", "recv", str(server.port), timeout=30)

    found = values(proc.stdout)
    assert found["recv_rcvtimeo_ms"] == "3", proc.stdout
    assert int(found["recv_ms"]) < 1000
