"""Blob and result storage behind one protocol.

Blobs are content-addressed (`blobs/sha256/ab/cdef....png`), so the same bytes are stored once however
many jobs use them. Results live under `results/<tenant>/<batch>/`. Every key is validated so nothing
can escape the storage root or the bucket prefix. Backends: LocalStorage here, S3Storage in
mmq/storage/s3.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import re
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import urlparse

from mmq.extras import require
from mmq.media import extension_for

# Local reads and writes up to this size run on the event loop; larger ones in a thread.
INLINE_IO_BYTES = 256 * 1024
_TMP_NAMES = itertools.count()  # one counter per process: every LocalStorage and thread draws from it
_PID = os.getpid()  # temp names need only differ between processes: read once, renewed in a fork's child
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _renew_pid() -> None:
    global _PID
    _PID = os.getpid()


os.register_at_fork(after_in_child=_renew_pid)


def _read_all(fd: int, size: int) -> bytes:
    """The whole file behind `fd`, `size` long when fstat looked: one read, as a short read of a regular
    file is its end (one that grew meanwhile is read on to its end)."""
    chunks, want = [], size + 1
    while True:
        chunk = os.read(fd, want)
        chunks.append(chunk)
        if len(chunk) < want:
            return b"".join(chunks)
        want = 1 << 20


_KEY_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._=-]*(/[A-Za-z0-9_][A-Za-z0-9._=-]*)*$")


class StorageKeyError(ValueError):
    pass


class BlobNotFound(KeyError):
    pass


def validate_key(key: str) -> str:
    if len(key) > 1024 or not _KEY_RE.match(key) or any(p in (".", "..") for p in key.split("/")):
        raise StorageKeyError(f"invalid storage key {key!r}")
    return key


def blob_key(digest: str, content_type: str) -> str:
    return f"blobs/sha256/{digest[:2]}/{digest[2:]}{extension_for(content_type)}"


def safe_segment(value: str) -> str:
    """A user-supplied name (tenant, custom_id) made safe for one key segment."""
    cleaned = re.sub(r"[^A-Za-z0-9._=-]", "_", value)[:200].lstrip("._") or "_"
    return cleaned


@runtime_checkable
class Storage(Protocol):
    url: str

    async def put(self, key: str, data: bytes) -> None: ...
    async def get(self, key: str) -> bytes: ...
    async def exists(self, key: str) -> bool: ...
    async def delete(self, key: str) -> None: ...
    def stream(self, key: str, chunk_size: int = 65536) -> AsyncIterator[bytes]: ...


async def put_blob(storage: Storage, data: bytes, content_type: str, *, probably_new: bool = False) -> str:
    """Store bytes content-addressed; returns the key. Writing the same bytes twice is a no-op.
    `probably_new`: skip the existence check (one stat or HEAD) for bytes that are almost never seen
    twice, such as a provider's answer with its own id: writing them again is harmless, just wasted."""
    key = blob_key(hashlib.sha256(data).hexdigest(), content_type)
    if probably_new or not await storage.exists(key):
        await storage.put(key, data)
    return key


class LocalStorage:
    """A folder on disk. Writes are atomic (temp file + rename) so readers never see half a file."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.url = f"file://{self.root}"
        self._dirs: set[Path] = set()  # folders known to exist: saves a mkdir per write

    def path(self, key: str) -> Path:
        # The key grammar rules out "..", absolute paths and empty segments, so the lexical join stays
        # under the root (no resolve(): it costs a syscall per path component on every access).
        path = self.root / validate_key(key)
        if not path.is_relative_to(self.root):  # belt and braces on top of the key grammar
            raise StorageKeyError(f"invalid storage key {key!r}")
        return path

    def _write(self, path: Path, data: bytes) -> None:
        if path.parent not in self._dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(path.parent)
        # a name no other writer uses (this process's id and a counter), created exclusively with
        # mkstemp's mode: mkstemp's own random names cost more CPU than the write of a small result
        tmp = path.with_name(f".tmp-{_PID}-{next(_TMP_NAMES)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _CLOEXEC, 0o600)
        try:
            try:
                # the descriptor itself: a file object would add an fstat, a tty check and a seek
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    async def put(self, key: str, data: bytes) -> None:
        # file-system calls can take milliseconds on network or overlay disks: keep large writes off
        # the loop; a small one costs less than the hop to a thread and back
        if len(data) <= INLINE_IO_BYTES:
            self._write(self.path(key), data)
        else:
            await asyncio.to_thread(self._write, self.path(key), data)

    async def get(self, key: str) -> bytes:
        path = self.path(key)
        try:
            fd = os.open(path, os.O_RDONLY | _CLOEXEC)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobNotFound(key) from None
        try:
            # open, fstat, read, close: half the system calls of Path.stat() then Path.read_bytes()
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise BlobNotFound(key)  # a folder's name is not a blob's
            size = info.st_size
            if size <= INLINE_IO_BYTES:
                return _read_all(fd, size)
            return await asyncio.to_thread(_read_all, fd, size)
        finally:
            os.close(fd)

    async def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    async def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    async def stream(self, key: str, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        path = self.path(key)
        if not path.is_file():
            raise BlobNotFound(key)
        with path.open("rb") as f:
            while chunk := await asyncio.to_thread(f.read, chunk_size):
                yield chunk


def _redacted(url: str) -> str:
    """The URL without userinfo, for error messages: a password in a mistyped URL must not reach logs."""
    parsed = urlparse(url)
    if "@" in parsed.netloc:
        return parsed._replace(netloc="***@" + parsed.netloc.rsplit("@", 1)[1]).geturl()
    return url


def open_storage(url: str) -> Storage:
    """`file:///abs/path`, `file://./relative`, a bare path, or `s3://bucket/prefix` (see storage_s3)."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        path = url[len("file://") :] if url.startswith("file://") else url
        return LocalStorage(path)
    if parsed.scheme == "s3":
        # the `s3` extra, imported lazily: local-only setups never load obstore (nor need it installed)
        require("obstore", extra="s3", feature=f"MMQ_STORAGE_URL={_redacted(url)} (S3 storage)")
        from mmq.storage.s3 import S3Storage

        return S3Storage.from_url(url)
    raise ValueError(
        f"unsupported storage URL {_redacted(url)!r}: use file:///path (or a bare path) or s3://bucket/prefix"
    )
