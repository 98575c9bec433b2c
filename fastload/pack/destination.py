"""Where a pack's finished files go: a local directory, or a prefix in object storage (any fsspec URL).

Both publish a finished local file under its final name in one step a reader can never see half
done: a local rename, or an upload (a single PUT, or for large files on S3 a multipart upload,
both of which make the object appear only once complete, with botocore's checksums verified by
the server). Every remote request runs under the retry policy of :mod:`fastload.storage.remote`,
and an upload is followed by a check of the object's size.
"""

from __future__ import annotations

import os
import shutil
from abc import ABC, abstractmethod
from pathlib import Path

from ..format.shard_writer import fsync_dir, write_file_atomically
from ..storage.remote import Remote, RetryPolicy, normalise_url, split_protocol

PART_BYTES = 64 << 20  # multipart upload part size (S3): 4 parts per 256 MB shard
PART_CONCURRENCY = 4  # parts of one file uploaded at once
_S3 = ("s3", "s3a")


def is_remote_url(out: str) -> bool:
    return split_protocol(out)[0] not in ("file", "local")


class Destination(ABC):
    """A flat namespace of files: the output directory or prefix of one dataset."""

    url: str

    @abstractmethod
    def list(self) -> dict[str, int]:
        """``{name: size}`` of what is directly in the output (empty when it does not exist yet)."""

    @abstractmethod
    def read(self, name: str, start: int | None = None, end: int | None = None) -> bytes:
        """Bytes ``[start, end)`` of file ``name`` (all of it without a range)."""

    @abstractmethod
    def write_bytes(self, name: str, data: bytes) -> None:
        """Publish ``data`` as file ``name`` (replacing it) in one visible step."""

    @abstractmethod
    def publish(self, path: Path, name: str, size: int) -> None:
        """Publish the finished local file ``path`` (``size`` bytes) as ``name``; ``path`` may be moved."""

    @abstractmethod
    def delete(self, names: list[str]) -> None:
        """Remove these files; missing ones are fine."""


class LocalDestination(Destination):
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root.split("://", 1)[1] if str(root).startswith("file://") else root)
        self.url = str(self.root)

    def list(self) -> dict[str, int]:
        if not self.root.exists():
            return {}
        return {p.name: (p.stat().st_size if p.is_file() else 0) for p in self.root.iterdir()}

    def read(self, name: str, start: int | None = None, end: int | None = None) -> bytes:
        with open(self.root / name, "rb") as f:
            f.seek(start or 0)
            return f.read() if end is None else f.read(end - (start or 0))

    def write_bytes(self, name: str, data: bytes) -> None:
        write_file_atomically(self.root / name, data)

    def publish(self, path: Path, name: str, size: int) -> None:
        os.replace(path, self.root / name)  # staging lives inside the output: same file system
        fsync_dir(self.root)

    def delete(self, names: list[str]) -> None:
        for name in names:
            p = self.root / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


class RemoteDestination(Destination):
    """A prefix at an fsspec URL (``s3://bucket/ds``), written with retries and checked uploads."""

    def __init__(self, url: str, storage_options: dict | None = None, *, policy: RetryPolicy = RetryPolicy(),
                 part_bytes: int = PART_BYTES, part_concurrency: int = PART_CONCURRENCY):
        self.url = normalise_url(url)
        self.remote = Remote(self.url, storage_options, policy=policy)
        self.part_bytes = part_bytes
        self.part_concurrency = part_concurrency

    def list(self) -> dict[str, int]:
        r = self.remote

        def ls():
            r.fs().invalidate_cache(self.url)  # s3fs caches listings: always ask the store
            try:
                entries = r.call("ls", self.url, detail=True)
            except FileNotFoundError:
                return []
            return entries

        found = r.retry(ls, self.url, verb="list")
        return {e["name"].rstrip("/").rsplit("/", 1)[-1]: int(e.get("size") or 0) for e in found
                if e["name"].rstrip("/") != self.url.split("://", 1)[-1]}

    def read(self, name: str, start: int | None = None, end: int | None = None) -> bytes:
        return self.remote.read(name, start, end)

    def write_bytes(self, name: str, data: bytes) -> None:
        url = self.remote.url_of(name)
        self.remote.retry(lambda: self.remote.call("pipe_file", url, data), url, verb="upload")

    def publish(self, path: Path, name: str, size: int) -> None:
        url = self.remote.url_of(name)
        r = self.remote
        # a whole file is many requests: each part gets the per-request timeout
        parts = max(1, -(-size // self.part_bytes))
        extra = ({"chunksize": self.part_bytes, "max_concurrency": self.part_concurrency}
                 if r.protocol in _S3 else {})

        def upload():
            r.call("put_file", str(path), url, timeout=r.policy.timeout_s * parts, **extra)
            r.fs().invalidate_cache(url)
            got = int(r.call("info", url)["size"])
            if got != size:
                raise _SizeMismatch(f"uploaded {size} bytes, the store holds {got}")

        r.retry(upload, url, verb="upload")

    def abort_incomplete_uploads(self) -> int:
        """Abort the S3 multipart uploads left under this prefix by a killed writer (invisible, but
        billed until aborted); returns how many. Other stores keep no such parts."""
        if self.remote.protocol not in _S3:
            return 0
        bucket, _, key = self.url.split("://", 1)[1].partition("/")
        prefix = key.rstrip("/") + "/"
        r = self.remote
        found = r.retry(lambda: r.call("call_s3", "list_multipart_uploads", Bucket=bucket, Prefix=prefix),
                        self.url, verb="list the multipart uploads under")
        uploads = found.get("Uploads", [])
        for u in uploads:
            r.retry(lambda u=u: r.call("call_s3", "abort_multipart_upload", Bucket=bucket, Key=u["Key"],
                                       UploadId=u["UploadId"]), f"s3://{bucket}/{u['Key']}",
                    verb="abort the multipart upload of")
        return len(uploads)

    def delete(self, names: list[str]) -> None:
        if not names:
            return
        urls = [self.remote.url_of(n) for n in names]

        def rm():
            try:
                self.remote.call("rm", urls)
            except FileNotFoundError:
                pass

        self.remote.retry(rm, self.url, verb="delete files under")


class _SizeMismatch(OSError):
    """An upload ended without error but the stored object has another size (retried)."""


def open_destination(out: str | os.PathLike, storage_options: dict | None, policy: RetryPolicy) -> Destination:
    text = os.fspath(out)
    if is_remote_url(text):
        return RemoteDestination(text, storage_options, policy=policy)
    return LocalDestination(text)
