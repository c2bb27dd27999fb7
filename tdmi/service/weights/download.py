"""Fetching one catalogue file: resumable, hash-checked, and only ever renamed into place whole.

Bytes arrive in ``<cache>/.partial/<name>.part``. A cut connection leaves that file, and the
next pull asks for the rest with an HTTP Range request. Only a download whose size and SHA-256
match the catalogue is moved (or, for a zip, its one member extracted) under its final name,
by an atomic rename; a mismatch deletes the part. Two pulls of one file (two shells, two
containers on one cache) take turns on a lock of the part's directory: the second waits, then
finds the file in place. A pull that kept no bytes (offline, a refused download) leaves no
``.partial`` behind, nor the cache directory when it made it. The service itself never calls this.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from tqdm import tqdm

from tdmi.service.weights.catalogue import CatalogueEntry, WeightsStore

__all__ = ["PullError", "mirrored_url", "pull"]

CHUNK = 1 << 16
TIMEOUT = httpx.Timeout(30.0, connect=10.0)


class PullError(RuntimeError):
    """A pull that did not give a verified file (offline, HTTP error, wrong hash, bad archive);
    ``unreachable`` when no connection to the host could be made (offline, no such host)."""

    def __init__(self, message: str, unreachable: bool = False):
        super().__init__(message)
        self.unreachable = unreachable


def mirrored_url(url: str, mirror: str | None) -> str:
    """``url`` with its scheme and host (``https://download.openmmlab.com``) replaced by ``mirror``
    (``http://mirror.local/weights``); the publisher's path is kept below the mirror's."""
    if not mirror:
        return url
    parts = urlsplit(url)
    rest = parts.path + (f"?{parts.query}" if parts.query else "")
    return mirror.rstrip("/") + rest


def pull(
    entry: CatalogueEntry,
    store: WeightsStore,
    mirror: str | None = None,
    progress: bool = True,
    warn: Callable[[str], None] = print,
) -> Path:
    """Download ``entry`` into the store (a no-op when it is there) and return its path."""
    final = store.path(entry)
    if final.is_file():
        return final
    if entry.url is None:
        raise PullError(f"{entry.name}: {entry.manual} and place it at {final}")
    url = mirrored_url(entry.url, mirror)
    waiting = f"{entry.name}: another pull is running in this cache; waiting for it"
    with _partial_directory(store.directory, lambda: warn(waiting)) as partial:
        if final.is_file():  # the other pull fetched it
            return final
        part = partial / f"{entry.name}.part"
        _fetch(url, part, entry.name, progress)
        digest = _check(part, entry)
        if entry.sha256 is None:
            warn(f"{entry.name}: the publisher gives no hash; sha256 of what was fetched: {digest}")
        if entry.archive_member is None:
            os.replace(part, final)
        else:
            _extract(part, entry, final)
            part.unlink()
    return final


@contextmanager
def _partial_directory(cache: Path, on_wait: Callable[[], None]) -> Iterator[Path]:
    """``cache/.partial``, made if need be and held under an exclusive lock (flock on the
    directory: released when closed, also by a killed process). On the way out, still locked,
    it is removed when empty, and so is ``cache`` when this pull made it and nothing is in it.
    A pull that waited and finds its directory so removed locks the one now in its place."""
    made_cache = not cache.is_dir()
    partial = cache / ".partial"
    while True:
        partial.mkdir(parents=True, exist_ok=True)
        try:
            lock = os.open(partial, os.O_RDONLY)
        except FileNotFoundError:  # removed by a pull ending between the two calls
            continue
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_wait()
            fcntl.flock(lock, fcntl.LOCK_EX)
        if _is_at(lock, partial):
            break
        os.close(lock)
    try:
        yield partial
    finally:
        for directory in (partial, cache) if made_cache else (partial,):
            try:
                directory.rmdir()
            except OSError:  # not empty: a part kept for the next pull, or pulled files
                break
        os.close(lock)


def _is_at(descriptor: int, path: Path) -> bool:
    """Whether the open ``descriptor`` is still the file at ``path`` (not removed, not replaced)."""
    try:
        here = path.stat()
    except FileNotFoundError:
        return False
    held = os.fstat(descriptor)
    return (held.st_dev, held.st_ino) == (here.st_dev, here.st_ino)


def _fetch(url: str, part: Path, name: str, progress: bool) -> None:
    have = part.stat().st_size if part.is_file() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        with (
            httpx.Client(follow_redirects=True, timeout=TIMEOUT) as client,
            client.stream("GET", url, headers=headers) as response,
        ):
            if response.status_code == 416 and have:  # the part already holds every byte
                return
            if response.status_code not in (200, 206):
                raise PullError(f"{name}: {url} answered HTTP {response.status_code}")
            resumed = response.status_code == 206
            total = _total_size(response, have if resumed else 0)
            with (
                part.open("ab" if resumed else "wb") as out,
                tqdm(
                    total=total,
                    initial=have if resumed else 0,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=name,
                    disable=not progress,
                ) as bar,
            ):
                for chunk in response.iter_bytes():  # as they arrive: a cut keeps every byte
                    out.write(chunk)
                    bar.update(len(chunk))
    except httpx.HTTPError as exc:
        kept = f"; {part.stat().st_size} bytes kept, the next pull resumes" if part.is_file() else ""
        raise PullError(
            f"{name}: cannot fetch {url} ({type(exc).__name__}: {exc}){kept}",
            unreachable=isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout),
        ) from None


def _total_size(response: httpx.Response, offset: int) -> int | None:
    length = response.headers.get("content-length")
    return offset + int(length) if length and length.isdigit() else None


def _check(part: Path, entry: CatalogueEntry) -> str:
    """The part's SHA-256; the part is deleted and PullError raised when size or hash disagree."""
    size = part.stat().st_size
    sha = hashlib.sha256()
    with part.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            sha.update(block)
    digest = sha.hexdigest()
    problem = None
    if entry.size is not None and size != entry.size:
        problem = f"size {size} bytes, the catalogue says {entry.size}"
    elif entry.sha256 is not None and not digest.startswith(entry.sha256):
        problem = f"sha256 {digest}, the catalogue says {entry.sha256}"
    if problem:
        part.unlink()
        raise PullError(f"{entry.name}: the download does not match ({problem}); nothing was kept")
    return digest


def _extract(archive: Path, entry: CatalogueEntry, final: Path) -> None:
    """Write the archive's one member named ``entry.archive_member`` (at any depth) to ``final``."""
    fd, name = tempfile.mkstemp(dir=final.parent, prefix=".extract-")
    tmp = Path(name)
    try:
        with zipfile.ZipFile(archive) as zf, os.fdopen(fd, "wb") as dst:
            members = [m for m in zf.namelist() if Path(m).name == entry.archive_member]
            if len(members) != 1:
                archive.unlink()
                raise PullError(
                    f"{entry.name}: the archive holds {len(members)} files named {entry.archive_member}"
                )
            with zf.open(members[0]) as src:
                for block in iter(lambda: src.read(CHUNK), b""):
                    dst.write(block)
        os.replace(tmp, final)
    except zipfile.BadZipFile:
        archive.unlink()
        raise PullError(f"{entry.name}: the download is not a zip archive; nothing was kept") from None
    finally:
        tmp.unlink(missing_ok=True)
