"""Tests of tools/patchq and tools/fetchcache.py on real tarballs and real git.

Each test works on a copy of the pins in a temporary project with its own
patch queue and its own download cache, so the checkout is never touched. The
pinned tarballs come from the user's cache (filled from the Debian archive the
first time), which is only read.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import shutil
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools"
PATCHQ = TOOLS / "patchq"

sys.path.insert(0, str(TOOLS))
import fetchcache  # noqa: E402

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

LIBS = ("miniupnpc", "libnatpmp")
AUTHOR = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.org",
    "GIT_AUTHOR_DATE": "2026-01-02T03:04:05+0000",
    "GIT_COMMITTER_NAME": "Test Author",
    "GIT_COMMITTER_EMAIL": "author@example.org",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def pin_of(lib: str) -> dict:
    return tomllib.loads((ROOT / "vendor" / lib / "pin.toml").read_text())


@pytest.fixture(scope="session")
def pinned_tarballs() -> dict:
    """The pinned tarballs from the user cache, downloaded once if missing."""
    found = {}
    for lib in LIBS:
        pin = pin_of(lib)
        debian = pin["fallback"][0]
        found[lib] = fetchcache.fetch_verified(
            pin["tarball"]["filename"],
            pin["tarball"]["sha256"],
            debian_package=debian["source_package"],
            debian_filename=debian["filename"],
        )
    return found


@pytest.fixture
def cache(tmp_path: Path, pinned_tarballs: dict, monkeypatch) -> Path:
    """A private download cache holding copies of the pinned tarballs."""
    directory = tmp_path / "cache"
    directory.mkdir()
    for path in pinned_tarballs.values():
        shutil.copyfile(path, directory / path.name)
    monkeypatch.setenv("NATFWD_CACHE_DIR", str(directory))
    return directory


@pytest.fixture
def project(tmp_path: Path, cache: Path) -> Path:
    """A project with the real pins, empty queues and the real README."""
    root = tmp_path / "project"
    for lib in LIBS:
        (root / "vendor" / lib).mkdir(parents=True)
        shutil.copyfile(
            ROOT / "vendor" / lib / "pin.toml", root / "vendor" / lib / "pin.toml"
        )
        (root / "patches" / lib).mkdir(parents=True)
        (root / "patches" / lib / "series").write_text("# upstream\n# local\n")
    shutil.copyfile(ROOT / "patches" / "README.md", root / "patches" / "README.md")
    patchq(root, "table")
    return root


def patchq(root: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(PATCHQ), "--root", str(root), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if ok and proc.returncode != 0:
        pytest.fail(f"patchq {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def git(repo: Path, *args: str) -> str:
    env = dict(os.environ, **AUTHOR)
    return subprocess.run(
        ["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True
    ).stdout


def message(subject: str, forwarded: str = "no") -> str:
    return (
        f"{subject}\n\nWhy: the test needs a change here. It says so.\n\n"
        f"Origin: vendor, natfwd\nForwarded: {forwarded}\nLast-Update: 2026-01-02\n"
    )


def change(repo: Path, path: str, old: str, new: str, subject: str, **kw) -> None:
    """Commit one textual replacement in the edit repository."""
    file = repo / path
    text = file.read_text(encoding="latin-1")
    assert old in text, f"{old!r} not in {path}"
    file.write_text(text.replace(old, new, 1), encoding="latin-1")
    git(repo, "commit", "-q", "-a", "-m", message(subject, **kw))


def append(repo: Path, path: str, line: str) -> None:
    with open(repo / path, "a", encoding="latin-1") as f:
        f.write(line + "\n")


def make_queue(root: Path) -> None:
    """Give miniupnpc two upstream-bound patches and one local one."""
    patchq(root, "edit", "miniupnpc")
    work = root / "vendor" / "miniupnpc" / ".work"
    xml = "miniupnpc/src/minixml.c"
    change(work, xml, "#include <string.h>", "#include <string.h>\n/* one */", "One")
    append(work, xml, "/* two */")
    git(work, "commit", "-q", "-a", "-m", message("Two at the end"))
    change(
        work,
        "miniupnpc/src/upnpreplyparse.c",
        "#include <string.h>",
        "#include <string.h>\n/* local */",
        "Local only",
        forwarded="not-needed",
    )
    patchq(root, "refresh", "miniupnpc")
    shutil.rmtree(work)


def snapshot(directory: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


# --- fetchcache ---------------------------------------------------------------


def test_corrupted_cached_tarball_names_both_hashes(project: Path, cache: Path):
    pin = pin_of("miniupnpc")["tarball"]
    bad = cache / pin["filename"]
    data = bytearray(bad.read_bytes())
    data[1000] ^= 0xFF
    bad.write_bytes(bytes(data))
    got = hashlib.sha256(bytes(data)).hexdigest()

    proc = patchq(project, "fetch", "--offline", "miniupnpc", ok=False)

    assert proc.returncode == 1
    assert pin["sha256"] in proc.stderr
    assert got in proc.stderr
    assert str(bad) in proc.stderr


class _Server:
    """Serve fixed bytes on loopback and count the requests."""

    def __init__(self, body: bytes) -> None:
        outer = self
        self.requests = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/file.tar.gz"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def test_download_with_wrong_checksum_is_refused_and_not_cached(cache: Path):
    body = b"not the release\n" * 100
    expected = hashlib.sha256(b"the release").hexdigest()

    with _Server(body) as server, pytest.raises(fetchcache.ChecksumMismatch) as info:
        fetchcache.fetch_verified("x.tar.gz", expected, urls=[server.url], timeout=5)

    text = str(info.value)
    assert expected in text
    assert hashlib.sha256(body).hexdigest() in text
    assert server.url in text
    assert not [p for p in cache.iterdir() if p.name.startswith(("x.", ".x."))]


def test_download_is_cached_and_reused_offline(cache: Path):
    body = b"a small artefact\n"
    sha = hashlib.sha256(body).hexdigest()
    dead = "http://127.0.0.1:9/nothing-listens-here"

    with _Server(body) as server:
        first = fetchcache.fetch_verified("a.bin", sha, urls=[dead, server.url])
        again = fetchcache.fetch_verified("a.bin", sha, urls=[server.url])
        requests = server.requests

    assert first == again == cache / "a.bin"
    assert first.read_bytes() == body
    assert requests == 1
    assert fetchcache.fetch_verified("a.bin", sha, offline=True) == first


def test_debian_mirror_comes_from_apt_sources(tmp_path: Path):
    parts = tmp_path / "sources.list.d"
    parts.mkdir()
    (tmp_path / "sources.list").write_text(
        "# deb http://old.invalid/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://one.invalid/ubuntu jammy main\n"
    )
    (parts / "a.sources").write_text(
        "Types: deb\nURIs: http://off.invalid/debian\nSuites: x\nEnabled: no\n\n"
        "Types: deb deb-src\n"
        "URIs: cdrom:/media/debian https://two.invalid/mirror/debian/\n"
        "Suites: bookworm\nComponents: main\n"
    )
    (parts / "b.list").write_text("deb file:/srv/debian stable main\n")

    assert fetchcache.debian_mirrors(tmp_path) == [
        "file:/srv/debian",
        "https://two.invalid/mirror/debian",
    ]
    assert fetchcache.debian_pool_url("http://m/debian/", "libnatpmp", "f") == (
        "http://m/debian/pool/main/libn/libnatpmp/f"
    )
    assert fetchcache.debian_pool_url("http://m/debian", "miniupnpc", "f") == (
        "http://m/debian/pool/main/m/miniupnpc/f"
    )


# --- apply --------------------------------------------------------------------


def test_apply_is_idempotent(project: Path):
    make_queue(project)
    tree = project / "vendor" / "miniupnpc" / "tree"

    first = patchq(project, "apply", "--offline", "miniupnpc")
    stamp = (tree / ".patchq-stamp").read_text()
    inode = tree.stat().st_ino
    second = patchq(project, "apply", "--offline", "miniupnpc")
    current = patchq(project, "apply", "--check-stamp", "miniupnpc", ok=False)

    assert "rebuilt with 3 patch(es)" in first.stderr
    assert second.stderr == ""
    assert tree.stat().st_ino == inode
    assert current.returncode == 0
    assert pin_of("miniupnpc")["tarball"]["sha256"] in stamp
    assert "/* two */" in (tree / "src" / "minixml.c").read_text(encoding="latin-1")

    series = project / "patches" / "miniupnpc" / "series"
    series.write_text(series.read_text().replace("# local\n", "# local\n#\n"))
    assert patchq(project, "apply", "--check-stamp", "miniupnpc").returncode == 0
    patch = sorted((project / "patches" / "miniupnpc").glob("0001-*"))[0]
    patch.write_bytes(patch.read_bytes() + b"\n")
    stale = patchq(project, "apply", "--check-stamp", "miniupnpc", ok=False)
    assert stale.returncode == 1


def test_broken_patch_names_patch_and_hunk_and_keeps_old_tree(project: Path):
    make_queue(project)
    patchq(project, "apply", "--offline", "miniupnpc")
    vendor = project / "vendor" / "miniupnpc"
    before = snapshot(vendor / "tree" / "src")
    stamp = (vendor / "tree" / ".patchq-stamp").read_bytes()

    # Break a context line of the patch "Two at the end".
    patch = next((project / "patches" / "miniupnpc").glob("0002-*"))
    text = patch.read_text(encoding="latin-1")
    hunk = text.index("@@", text.index("diff --git"))
    context = text.index("\n ", hunk) + 2
    patch.write_text(text[:context] + "XX" + text[context:], encoding="latin-1")

    proc = patchq(project, "apply", "--offline", "miniupnpc", ok=False)

    assert proc.returncode == 1
    assert patch.name in proc.stderr
    assert "src/minixml.c hunk #1" in proc.stderr
    assert snapshot(vendor / "tree" / "src") == before
    assert (vendor / "tree" / ".patchq-stamp").read_bytes() == stamp
    assert sorted(p.name for p in vendor.iterdir()) == ["pin.toml", "tree"]


def test_failing_second_hunk_is_named(project: Path):
    patchq(project, "edit", "miniupnpc")
    work = project / "vendor" / "miniupnpc" / ".work"
    path = "miniupnpc/src/minixml.c"
    source = (work / path).read_text(encoding="latin-1")
    (work / path).write_text(
        source.replace("#include <string.h>", "#include <string.h>\n/* a */", 1)
        + "/* b */\n",
        encoding="latin-1",
    )
    git(work, "commit", "-q", "-a", "-m", message("Two hunks"))
    patchq(project, "refresh", "miniupnpc")

    # Break the first context line of the second hunk.
    patch = next((project / "patches" / "miniupnpc").glob("0001-*"))
    text = patch.read_text(encoding="latin-1")
    second = text.index("\n@@", text.index("\n@@") + 1)
    context = text.index("\n ", second) + 2
    patch.write_text(text[:context] + "X" + text[context:], encoding="latin-1")

    proc = patchq(project, "apply", "--offline", "miniupnpc", ok=False)

    assert proc.returncode == 1
    assert "src/minixml.c hunk #2" in proc.stderr
    assert "hunk #1" not in proc.stderr
    assert not (project / "vendor" / "miniupnpc" / "tree").exists()


# --- edit, refresh, check, table ----------------------------------------------------


def test_edit_then_refresh_reproduces_every_byte(project: Path):
    make_queue(project)
    patches = project / "patches" / "miniupnpc"
    before = snapshot(patches)

    patchq(project, "edit", "miniupnpc")
    work = project / "vendor" / "miniupnpc" / ".work"
    proc = patchq(project, "refresh", "miniupnpc")

    assert snapshot(patches) == before
    assert proc.stderr == ""
    assert list(before) == [
        "0001-One.patch",
        "0002-Two-at-the-end.patch",
        "0003-Local-only.patch",
        "series",
    ]
    assert before["series"].decode().splitlines() == [
        "# upstream",
        "0001-One.patch -p2",
        "0002-Two-at-the-end.patch -p2",
        "# local",
        "0003-Local-only.patch -p2",
    ]
    assert git(work, "log", "--format=%s", "pristine..").split("\n")[:3] == [
        "Local only",
        "Two at the end",
        "One",
    ]


def test_refresh_keeps_names_through_amend_and_drop(project: Path):
    make_queue(project)
    patchq(project, "edit", "miniupnpc")
    work = project / "vendor" / "miniupnpc" / ".work"

    patches = project / "patches" / "miniupnpc"
    before = snapshot(patches)

    # Drop "One" with a rebase, then amend "Local only" (the last commit).
    one = git(work, "rev-list", "--reverse", "pristine..HEAD").split()[0]
    git(work, "rebase", "-q", "--onto", "pristine", one)
    append(work, "miniupnpc/src/upnpreplyparse.c", "/* amended */")
    git(work, "commit", "-q", "-a", "--amend", "--no-edit")
    proc = patchq(project, "refresh", "miniupnpc")

    after = snapshot(patches)
    assert list(after) == [
        "0002-Two-at-the-end.patch",
        "0003-Local-only.patch",
        "series",
    ]
    # Without "One", the hunk of "Two at the end" starts one line earlier.
    assert after["0002-Two-at-the-end.patch"] != before["0002-Two-at-the-end.patch"]
    assert b"+/* two */" in after["0002-Two-at-the-end.patch"]
    assert b"+/* amended */" in after["0003-Local-only.patch"]
    assert "removed patches/miniupnpc/0001-One.patch" in proc.stderr
    patchq(project, "apply", "--offline")
    patchq(project, "table")
    patchq(project, "check", "--offline")


def test_check_finds_bad_headers_stale_table_and_edited_tree(project: Path):
    make_queue(project)
    patchq(project, "apply", "--offline")
    patchq(project, "table")
    assert patchq(project, "check", "--offline").returncode == 0
    readme = (project / "patches" / "README.md").read_text()
    assert "| miniupnpc | [0003-Local-only.patch]" in readme
    assert "| local only |" in readme

    patch = next((project / "patches" / "miniupnpc").glob("0001-*"))
    text = patch.read_text()
    patch.write_text(text.replace("Last-Update: 2026-01-02\n", ""))
    proc = patchq(project, "check", "--offline", ok=False)
    assert proc.returncode == 1
    assert f"{patch.name}: no DEP-3 field Last-Update:" in proc.stderr
    patch.write_text(text.replace("Subject: [PATCH] One", "Subject: [PATCH] Uno"))
    proc = patchq(project, "check", "--offline", ok=False)
    assert "the patch table is stale" in proc.stderr
    assert "vendor/miniupnpc/tree is stale" in proc.stderr
    patch.write_text(text)

    minixml = project / "vendor" / "miniupnpc" / "tree" / "src" / "minixml.c"
    minixml.write_bytes(minixml.read_bytes() + b"/* by hand */\n")
    proc = patchq(project, "check", "--offline", "miniupnpc", ok=False)
    assert "vendor/miniupnpc/tree is not pristine + series: src/minixml.c" in (
        proc.stderr
    )


def test_check_enforces_series_sections(project: Path):
    make_queue(project)
    series = project / "patches" / "miniupnpc" / "series"
    lines = series.read_text().splitlines()
    series.write_text("\n".join([lines[0], lines[4], lines[1], lines[3]]) + "\n")

    proc = patchq(project, "check", "--offline", "miniupnpc", ok=False)

    assert "0003-Local-only.patch: Forwarded: not-needed, but listed" in proc.stderr
    assert "0002-Two-at-the-end.patch is not listed" in proc.stderr
    assert "section marks" not in proc.stderr


# --- export -------------------------------------------------------------------


def upstream_layout(tarball: Path, top: str, subdirectory: str, repo: Path) -> None:
    """Make a git repository like upstream's from a release tarball."""
    repo.mkdir()
    dest = repo / subdirectory if subdirectory else repo
    with tarfile.open(tarball) as tar:
        members = tar.getmembers()
        for member in members:
            member.name = member.name[len(top) + 1 :] if member.name != top else "."
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, members=members, filter="data")
        else:
            tar.extractall(dest, members=members)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "release")


def test_export_applies_with_git_am_onto_upstream_layout(
    project: Path, tmp_path: Path, pinned_tarballs: dict
):
    make_queue(project)
    out = tmp_path / "out"

    patchq(project, "export", "--offline", "miniupnpc", str(out))
    repo = tmp_path / "miniupnp"
    top = pin_of("miniupnpc")["tarball"]["top_directory"]
    upstream_layout(pinned_tarballs["miniupnpc"], top, "miniupnpc", repo)
    exported = sorted(out.iterdir())
    git(repo, "am", "-q", *map(str, exported))

    assert [p.name for p in exported] == ["0001-One.patch", "0002-Two-at-the-end.patch"]
    assert git(repo, "log", "--format=%s", "-2").split("\n")[:2] == [
        "Two at the end",
        "One",
    ]
    body = git(repo, "log", "--format=%B", "-1")
    assert "Why: the test needs a change here." in body
    assert "Forwarded:" not in body
    text = (repo / "miniupnpc" / "src" / "minixml.c").read_text(encoding="latin-1")
    assert "/* one */" in text
    assert "/* two */" in text
    assert "/* local */" not in (
        repo / "miniupnpc" / "src" / "upnpreplyparse.c"
    ).read_text(encoding="latin-1")


# --- rebase -------------------------------------------------------------------


def new_release(project: Path, tmp_path: Path, version: str, edits: dict) -> Path:
    """Repack the pinned miniupnpc release as *version* with *edits* applied."""
    pin = pin_of("miniupnpc")["tarball"]
    tarball = Path(os.environ["NATFWD_CACHE_DIR"]) / pin["filename"]
    top = f"miniupnpc-{version}"
    out = tmp_path / f"miniupnpc-{version}.tar.gz"
    with tarfile.open(tarball) as src, tarfile.open(out, "w:gz") as dst:
        for member in src.getmembers():
            rel = member.name[len(pin["top_directory"]) :]
            data = src.extractfile(member).read() if member.isfile() else None
            if rel.lstrip("/") in edits:
                old, new = edits[rel.lstrip("/")]
                assert old.encode() in data
                data = data.replace(old.encode(), new.encode(), 1)
                member.size = len(data)
            member.name = top + rel
            dst.addfile(member, io.BytesIO(data) if data is not None else None)
    return out


def test_rebase_classifies_each_patch(project: Path, tmp_path: Path):
    make_queue(project)
    series_before = (project / "patches" / "miniupnpc" / "series").read_text()
    conflicting = new_release(
        project,
        tmp_path,
        "9.9.8",
        {
            "src/minixml.c": ("#include <string.h>", "#include <string.h>\n/* one */"),
            "src/upnpreplyparse.c": ("#include <string.h>", "#include <strings.h>"),
        },
    )
    sha = hashlib.sha256(conflicting.read_bytes()).hexdigest()

    proc = patchq(
        project,
        "rebase",
        "miniupnpc",
        "--version",
        "9.9.8",
        "--sha256",
        sha,
        "--tarball",
        str(conflicting),
        ok=False,
    )

    assert proc.returncode == 1
    assert "0001-One.patch: already upstream" in proc.stderr
    assert "0002-Two-at-the-end.patch: applies" in proc.stderr
    assert "0003-Local-only.patch: conflicts: src/upnpreplyparse.c hunk #1" in (
        proc.stderr
    )
    assert (project / "patches" / "miniupnpc" / "series").read_text() == (series_before)
    assert pin_of("miniupnpc")["library"]["version"] == "2.3.3"


def test_rebase_moves_pin_and_drops_upstreamed_patch(project: Path, tmp_path: Path):
    make_queue(project)
    release = new_release(
        project,
        tmp_path,
        "9.9.9",
        {
            "src/minixml.c": ("#include <string.h>", "#include <string.h>\n/* one */"),
            "src/upnpdev.c": ("#include", "/* new upstream line */\n#include"),
        },
    )
    sha = hashlib.sha256(release.read_bytes()).hexdigest()

    proc = patchq(
        project,
        "rebase",
        "miniupnpc",
        "--version",
        "9.9.9",
        "--sha256",
        sha,
        "--tarball",
        str(release),
    )

    pin = tomllib.loads((project / "vendor" / "miniupnpc" / "pin.toml").read_text())
    assert "dropped 0001-One.patch (already upstream)" in proc.stderr
    assert pin["library"]["version"] == "9.9.9"
    assert pin["tarball"] == {
        "filename": "miniupnpc-9.9.9.tar.gz",
        "sha256": sha,
        "top_directory": "miniupnpc-9.9.9",
    }
    assert pin["upstream"]["tag"] == "miniupnpc_9_9_9"
    assert pin["fallback"][0]["filename"] == "miniupnpc_9.9.9.orig.tar.gz"
    assert (project / "patches" / "miniupnpc" / "series").read_text() == (
        "# upstream\n0002-Two-at-the-end.patch -p2\n# local\n"
        "0003-Local-only.patch -p2\n"
    )
    assert not (project / "patches" / "miniupnpc" / "0001-One.patch").exists()
    patchq(project, "apply", "--offline")
    patchq(project, "table")
    patchq(project, "check", "--offline")


def test_rebase_edit_resolves_conflicts_with_git(project: Path, tmp_path: Path):
    make_queue(project)
    release = new_release(
        project,
        tmp_path,
        "9.9.7",
        {
            "src/minixml.c": ("#include <string.h>", "#include <string.h>\n/* one */"),
            "src/upnpreplyparse.c": ("#include <string.h>", "#include <strings.h>"),
        },
    )
    sha = hashlib.sha256(release.read_bytes()).hexdigest()
    args = ["--version", "9.9.7", "--sha256", sha, "--tarball", str(release)]

    proc = patchq(project, "rebase", "miniupnpc", "--edit", *args)

    assert "git rebase stopped at a conflict" in proc.stderr
    work = project / "vendor" / "miniupnpc" / ".work"
    refused = patchq(project, "refresh", "miniupnpc", ok=False)
    assert "rebase is in progress" in refused.stderr

    # Resolve: the new release's include, then the local patch's line.
    path = work / "miniupnpc" / "src" / "upnpreplyparse.c"
    resolved = git(work, "show", "pristine:miniupnpc/src/upnpreplyparse.c").replace(
        "#include <strings.h>", "#include <strings.h>\n/* local */", 1
    )
    path.write_text(resolved, encoding="latin-1")
    git(work, "add", "miniupnpc/src/upnpreplyparse.c")
    subprocess.run(
        ["git", "-c", "core.editor=true", "rebase", "--continue"],
        cwd=work,
        env=dict(os.environ, **AUTHOR),
        check=True,
        capture_output=True,
    )
    patchq(project, "refresh", "miniupnpc")

    names = sorted(p.name for p in (project / "patches" / "miniupnpc").iterdir())
    assert names == ["0002-Two-at-the-end.patch", "0003-Local-only.patch", "series"]
    local = (project / "patches" / "miniupnpc" / "0003-Local-only.patch").read_text()
    assert " #include <strings.h>\n+/* local */\n" in local
    patchq(project, "apply", "--offline")
    patchq(project, "table")
    patchq(project, "check", "--offline")


@pytest.mark.parametrize(
    "verb", ["fetch", "apply", "check", "table", "edit", "refresh", "export", "rebase"]
)
def test_every_verb_has_help(verb: str, tmp_path: Path):
    proc = patchq(tmp_path, verb, "--help")

    assert proc.stdout.startswith(f"usage: patchq {verb}")


def test_unknown_library_is_quoted(tmp_path: Path):
    proc = patchq(tmp_path, "apply", "libfoo", ok=False)

    assert proc.returncode == 2
    assert "unknown library 'libfoo'" in proc.stderr
