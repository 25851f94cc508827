"""Download files whose sha256 is known in advance, and keep them in a cache.

natfwd never commits upstream code: the pinned release tarballs (and any other
pinned artefact, such as the test lab's downloads) are fetched on demand with
:func:`fetch_verified`, checked against their sha256, and kept in

    $NATFWD_CACHE_DIR, or else ${XDG_CACHE_HOME:-~/.cache}/natfwd/downloads

A cached file with the right checksum is used without touching the network.
Otherwise each URL is tried in turn, then the Debian archive's pool, whose base
URL is ``$NATFWD_DEBIAN_MIRROR`` or else the first ``.../debian`` archive listed
in the machine's apt sources. A download whose checksum differs is a hard
error (:class:`ChecksumMismatch`) and is never left in the cache; downloads go
to a temporary file that is renamed into place only once verified.

Only the standard library is used, so tools/ scripts can import this module
before any virtual environment exists.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = [
    "ChecksumMismatch",
    "FetchError",
    "add_to_cache",
    "cache_dir",
    "debian_mirrors",
    "debian_pool_url",
    "fetch_verified",
    "sha256_file",
]

log = logging.getLogger("natfwd.fetchcache")

#: Seconds to wait for a connection or for the next block of data.
DEFAULT_TIMEOUT = 15.0
#: Refuse downloads larger than this, so a wrong URL cannot fill the disk.
MAX_BYTES = 256 * 1024 * 1024
_CHUNK = 64 * 1024
_APT_ROOT = Path("/etc/apt")


class FetchError(Exception):
    """A file could not be obtained from the cache or any source."""


class ChecksumMismatch(FetchError):
    """Bytes were obtained, but their sha256 is not the pinned one."""

    def __init__(self, filename: str, source: str, expected: str, got: str) -> None:
        self.filename = filename
        self.source = source
        self.expected = expected
        self.got = got
        super().__init__(
            f"sha256 mismatch for {filename!r} from {source}: "
            f"expected {expected}, got {got}"
        )


def cache_dir() -> Path:
    """Return the download cache directory (not created here)."""
    override = os.environ.get("NATFWD_CACHE_DIR")
    if override:
        return Path(override).expanduser()

    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "natfwd" / "downloads"


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of the file at *path*."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_arguments(filename: str, sha256: str) -> str:
    if not filename or "/" in filename or filename in (".", ".."):
        raise ValueError(f"filename must be a plain file name, got {filename!r}")

    sha = sha256.lower()
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
    return sha


def _deb822_stanzas(text: str) -> Iterator[dict]:
    fields: dict = {}
    key = None
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if not line.strip():
            if fields:
                yield fields
            fields, key = {}, None
            continue
        if line[0] in " \t" and key is not None:
            fields[key] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        key = name.strip().lower()
        fields[key] = value.strip()
    if fields:
        yield fields


def _one_line_uris(text: str) -> Iterator[str]:
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words or words[0] not in ("deb", "deb-src"):
            continue
        words = words[1:]
        if words and words[0].startswith("["):
            # Options such as [arch=amd64 signed-by=...] may contain spaces.
            while words and not words[0].endswith("]"):
                words = words[1:]
            words = words[1:]
        if words:
            yield words[0]


def debian_mirrors(apt_root: Path = _APT_ROOT) -> list:
    """Return the Debian archive base URLs found in apt's sources, in order.

    Both the one-line format (``sources.list``, ``sources.list.d/*.list``) and
    deb822 (``sources.list.d/*.sources``) are read; disabled stanzas are
    skipped. Only http, https and file URIs whose path ends in ``/debian`` are
    kept: that is the archive that has a ``pool/main`` tree.
    """
    files = [apt_root / "sources.list"]
    parts = apt_root / "sources.list.d"
    if parts.is_dir():
        files += sorted(parts.glob("*.list")) + sorted(parts.glob("*.sources"))

    uris: list = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if path.suffix == ".sources":
            for stanza in _deb822_stanzas(text):
                if stanza.get("enabled", "yes").lower() == "no":
                    continue
                uris += stanza.get("uris", "").split()
        else:
            uris += list(_one_line_uris(text))

    found: list = []
    for uri in uris:
        parsed = urllib.parse.urlsplit(uri)
        if parsed.scheme not in ("http", "https", "file"):
            continue
        if parsed.path.rstrip("/").endswith("/debian") and uri not in found:
            found.append(uri.rstrip("/"))
    return found


def debian_pool_url(mirror: str, source_package: str, filename: str) -> str:
    """Return the URL of *filename* of *source_package* in the archive's pool."""
    if source_package.startswith("lib"):
        prefix = source_package[:4]
    else:
        prefix = source_package[:1]
    return f"{mirror.rstrip('/')}/pool/main/{prefix}/{source_package}/{filename}"


def _debian_urls(source_package: str, filename: str) -> list:
    override = os.environ.get("NATFWD_DEBIAN_MIRROR")
    mirrors = [override] if override else debian_mirrors()
    if not mirrors:
        log.warning("no Debian archive in apt sources; set NATFWD_DEBIAN_MIRROR")
    return [debian_pool_url(m, source_package, filename) for m in mirrors]


def _download(url: str, dest: Path, timeout: float) -> str:
    """Write the body at *url* to *dest*; return its sha256."""
    digest = hashlib.sha256()
    size = 0
    request = urllib.request.Request(url, headers={"User-Agent": "natfwd-fetch"})
    response = urllib.request.urlopen(request, timeout=timeout)
    with response, open(dest, "wb") as out:
        for block in iter(lambda: response.read(_CHUNK), b""):
            size += len(block)
            if size > MAX_BYTES:
                raise FetchError(f"{url}: larger than {MAX_BYTES} bytes")
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


def fetch_verified(
    filename: str,
    sha256: str,
    *,
    urls: Sequence[str] = (),
    debian_package: str | None = None,
    offline: bool = False,
    debian_filename: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Path:
    """Return the path of a cached, verified copy of *filename*.

    *sha256* is the expected hex digest. Sources are tried in order: the
    cache, each of *urls*, then the Debian archive's pool entry for
    *debian_package* (file name *debian_filename*, by default *filename*).
    With *offline*, only the cache is used. Raises :class:`ChecksumMismatch`
    as soon as any source yields other bytes, and :class:`FetchError` when no
    source could be reached.
    """
    sha = _check_arguments(filename, sha256)

    directory = cache_dir()
    target = directory / filename
    if target.is_file():
        got = sha256_file(target)
        if got == sha:
            log.debug("using cached %s", target)
            return target
        if offline:
            raise ChecksumMismatch(filename, f"cache {target}", sha, got)
        log.warning("cached %s has sha256 %s, not %s; downloading", target, got, sha)
    elif offline:
        raise FetchError(f"{filename!r} is not in the cache {directory} (offline)")

    sources = list(urls)
    if debian_package:
        sources += _debian_urls(debian_package, debian_filename or filename)
    if not sources:
        raise FetchError(f"{filename!r} is not cached and no source is known")

    directory.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in sources:
        fd, partial = tempfile.mkstemp(prefix=f".{filename}.", dir=directory)
        os.close(fd)
        partial_path = Path(partial)
        try:
            log.info("downloading %s", url)
            got = _download(url, partial_path, timeout)
            if got != sha:
                raise ChecksumMismatch(filename, url, sha, got)
            os.chmod(partial_path, 0o644)
            os.replace(partial_path, target)
            return target
        except (OSError, ValueError, http.client.HTTPException, FetchError) as exc:
            if isinstance(exc, ChecksumMismatch):
                raise
            reason = getattr(exc, "reason", None) or exc
            log.info("%s: %s", url, reason)
            failures.append(f"{url} ({reason})")
        finally:
            if partial_path.exists():
                partial_path.unlink()

    raise FetchError(f"could not download {filename!r}: " + "; ".join(failures))


def add_to_cache(path: Path, sha256: str, filename: str | None = None) -> Path:
    """Verify a local file and place it in the cache (``patchq --tarball``)."""
    name = filename or path.name
    sha = _check_arguments(name, sha256)

    got = sha256_file(path)
    if got != sha:
        raise ChecksumMismatch(name, str(path), sha, got)

    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=f".{name}.", dir=directory)
    os.close(fd)
    try:
        shutil.copyfile(path, partial)
        os.chmod(partial, 0o644)
        os.replace(partial, directory / name)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return directory / name
