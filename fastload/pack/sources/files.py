"""Where a source's input files live: local paths, or URLs read through fsspec with fastload's retries.

A remote file is never copied whole before it is read: it is opened as a seekable file object
whose reads are ranged GETs (at most :data:`MAX_GET` bytes each, every one under the retry
policy's timeout and retries, its length checked), behind a read buffer. pyarrow (Parquet
footers and column chunks, Arrow IPC batches), the JSON Lines byte ranges, the CSV and
decompression streams, ``tarfile`` and ``zipfile`` all read through it, so a segment reads only
its own bytes.
"""

from __future__ import annotations

import io
import os
import threading
from typing import BinaryIO

from ...errors import SourceError, StorageError
from ...storage.remote import Remote, RetryPolicy, split_protocol

MAX_GET = 16 << 20  # bytes per ranged GET, as the node cache downloads (a retry repeats at most this)
READ_BUFFER = 8 << 20  # small reads (headers, line scans) are served from one GET of this size


def is_url(path: str) -> bool:
    """True for ``s3://...``, ``gs://...``, ``https://...`` and other non-local URLs."""
    protocol, _ = split_protocol(path)
    return protocol not in ("file", "local")


def local_path(path: str) -> str:
    """``file:///a/b`` -> ``/a/b``; other paths unchanged."""
    return path.split("://", 1)[1] if path.startswith("file://") else path


class InputFiles:
    """Opens, sizes and lists a source's input files, local or remote (picklable, fork-safe).

    ``storage_options`` go to the fsspec filesystem of every URL; ``policy`` bounds each request.
    """

    def __init__(self, storage_options: dict | None = None, policy: RetryPolicy = RetryPolicy()):
        self.storage_options = dict(storage_options or {})
        self.policy = policy
        self._remotes: dict[str, Remote] = {}
        self._sizes: dict[str, int] = {}  # a remote file's size, asked once per process
        self._lock = threading.Lock()

    def __getstate__(self):
        return {"storage_options": self.storage_options, "policy": self.policy}

    def __setstate__(self, state):
        self.__init__(state["storage_options"], state["policy"])

    def remote(self, url: str) -> tuple[Remote, str]:
        """The Remote of ``url``'s bucket or host, and the path of ``url`` below it."""
        protocol, rest = split_protocol(url)
        host, _, key = rest.partition("/")
        root = f"{protocol}://{host}"
        with self._lock:
            r = self._remotes.get(root)
            if r is None:
                r = self._remotes[root] = Remote(root, self.storage_options, policy=self.policy)
        return r, key

    def _info(self, url: str) -> dict:
        r, _ = self.remote(url)
        try:
            return r.retry(lambda: r.call("info", url), url, verb="stat")
        except StorageError as exc:
            if isinstance(exc.__cause__, FileNotFoundError):
                raise SourceError(f"{url}: no such file") from None
            raise

    # -- what sources call ---------------------------------------------------------------------
    def open(self, path: str) -> BinaryIO:
        """``path`` opened for reading (binary, seekable); a missing file is a SourceError."""
        if not is_url(path):
            try:
                return open(local_path(path), "rb")
            except FileNotFoundError:
                raise SourceError(f"{path}: no such file") from None
        r, key = self.remote(path)
        return io.BufferedReader(RangeReader(r, key, self.size(path), path), buffer_size=READ_BUFFER)

    def size(self, path: str) -> int:
        if not is_url(path):
            try:
                return os.path.getsize(local_path(path))
            except FileNotFoundError:
                raise SourceError(f"{path}: no such file") from None
            except OSError as exc:
                raise SourceError(f"{path}: cannot read: {exc}") from None
        size = self._sizes.get(path)
        if size is None:
            size = self._sizes[path] = int(self._info(path)["size"])
        return size

    def stamp(self, path: str) -> tuple:
        """What changes when the file does (size and mtime; size and ETag or generation remotely),
        so that a resumed pack refuses inputs changed since the interruption."""
        if not is_url(path):
            try:
                st = os.stat(local_path(path))
                return (path, st.st_size, st.st_mtime_ns)
            except OSError:
                return (path, None, None)
        info = self._info(path)
        version = next((str(info[k]) for k in ("ETag", "etag", "generation", "md5Hash", "LastModified",
                                                "last_modified", "mtime") if info.get(k) is not None), None)
        return (path, int(info["size"]), version)

    def is_dir(self, path: str) -> bool:
        if not is_url(path):
            return os.path.isdir(local_path(path))
        r, _ = self.remote(path)
        return bool(r.retry(lambda: r.call("isdir", path), path, verb="stat"))

    def exists(self, path: str) -> bool:
        if not is_url(path):
            return os.path.exists(local_path(path))
        r, _ = self.remote(path)
        return bool(r.retry(lambda: r.call("exists", path), path, verb="stat"))

    def glob(self, pattern: str) -> list[str]:
        """URLs of the files matching ``pattern`` (``**`` included), sorted."""
        r, _ = self.remote(pattern)
        found = r.retry(lambda: r.call("glob", pattern, detail=True), pattern, verb="list")
        return sorted(self._as_url(pattern, p) for p, info in found.items() if info.get("type") != "directory")

    def walk(self, url: str) -> dict[str, int]:
        """``{url: size}`` of every file below directory ``url``, in sorted order."""
        r, _ = self.remote(url)
        found = r.retry(lambda: r.call("find", url, detail=True), url, verb="list")
        sizes = {self._as_url(url, p): int(info.get("size") or 0) for p, info in found.items()
                 if info.get("type") != "directory"}
        with self._lock:
            self._sizes.update(sizes)
        return dict(sorted(sizes.items()))

    def read_all(self, path: str) -> bytes:
        """A whole (small) file: one read locally, one checked and retried GET remotely."""
        if not is_url(path):
            with open(local_path(path), "rb") as f:
                return f.read()
        r, key = self.remote(path)
        return r.read(key)

    @staticmethod
    def _as_url(like: str, path: str) -> str:
        """fsspec lists ``bucket/key`` (or a whole URL for HTTP): the URL with ``like``'s protocol."""
        if "://" in path:
            return path
        protocol, _ = split_protocol(like)
        return f"{protocol}://{path}"


class RangeReader(io.RawIOBase):
    """A remote file as a raw, seekable stream: each ``readinto`` is one checked, retried ranged GET."""

    def __init__(self, remote: Remote, key: str, size: int, url: str):
        self._remote, self._key, self._size, self.name = remote, key, size, url
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        n = min(len(view), self._size - self._pos, MAX_GET)
        if n <= 0:
            return 0
        data = self._remote.read(self._key, self._pos, self._pos + n)
        view[:n] = data
        self._pos += n
        return n


def read_index(path: str, files: InputFiles) -> bytes:
    """An index file's bytes (MDS, LitData); a missing one is FileNotFoundError, local or remote."""
    try:
        return files.read_all(path)
    except StorageError as exc:
        if isinstance(exc.__cause__, FileNotFoundError):
            raise FileNotFoundError(path) from None
        raise
