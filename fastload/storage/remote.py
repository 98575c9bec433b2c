"""Read remote files through fsspec: one filesystem per process and thread, timeouts, retries, checks.

fsspec's async filesystems (s3fs, gcsfs, HTTP) run on an event loop thread and hold connection
pools that are not fork-safe, so a :class:`Remote` keeps a filesystem per (process id, thread) and
opens a fresh one, bypassing fsspec's instance cache, whenever either changes. fsspec's HTTP
filesystem does not retry at all and s3fs does not retry a body that drops midway (see
docs/storage.md), so every request here runs under its own timeout and retry loop, and a ranged
read that returns another length than asked for (a server that ignores Range, a truncated body) is
retried like any other transient failure.
"""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass
from typing import Callable

from ..errors import StorageError

# The extra to install for each backend fsspec imports lazily.
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "http": "http", "https": "http"}
# Errors no retry can fix: the object is not there, or we may not read it.
_PERMANENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotImplementedError, TypeError)


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How hard to try: ``attempts`` tries per request, each under ``timeout_s``, with doubling backoff."""

    attempts: int = 5
    timeout_s: float = 60.0
    backoff_s: float = 0.2  # first pause; doubles per retry, capped at max_backoff_s, with jitter
    max_backoff_s: float = 5.0

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int) or self.attempts < 1:
            raise ValueError(f"retries must give at least 1 attempt, not {self.attempts!r}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {self.timeout_s!r}")
        if self.backoff_s < 0 or self.max_backoff_s < 0:
            raise ValueError("backoff times must not be negative")

    def worst_case_s(self) -> float:
        """The longest one request can take through all its attempts and pauses."""
        pauses = sum(min(self.backoff_s * 2**k, self.max_backoff_s) for k in range(self.attempts - 1))
        return self.attempts * self.timeout_s + pauses

    def pause(self, attempt: int) -> float:
        """Seconds to sleep after failed attempt number ``attempt`` (0-based)."""
        base = min(self.backoff_s * 2**attempt, self.max_backoff_s)
        return base * (0.5 + random.random() / 2)  # jitter: processes retrying together spread out


def normalise_url(url: str) -> str:
    """The form of a dataset URL that Remote keeps and the cache is keyed by (no trailing '/')."""
    return url.rstrip("/")


def split_protocol(url: str) -> tuple[str, str]:
    """``("s3", "bucket/key")`` for ``"s3://bucket/key"``; ``("file", path)`` for a plain path."""
    if "://" not in url:
        return "file", url
    protocol, rest = url.split("://", 1)
    return protocol.lower(), rest


def filesystem_class(protocol: str):
    """fsspec's class for ``protocol``, or a StorageError saying what to install."""
    import fsspec

    try:
        return fsspec.get_filesystem_class(protocol)
    except ImportError as exc:
        extra = EXTRAS.get(protocol)
        hint = f'pip install "fastload[{extra}]"' if extra else "install the fsspec backend for it"
        err = StorageError(f"reading {protocol}:// URLs needs a package that is not installed: {hint}")
        err.add_note(f"fsspec said: {exc}")
        raise err from None
    except ValueError:
        raise StorageError(f"no fsspec backend knows the protocol {protocol!r} (from a URL like "
                           f"{protocol}://...); check the URL's scheme") from None


class Remote:
    """Bytes of the files under one remote URL, read with retries; safe across fork and threads."""

    def __init__(self, url: str, storage_options: dict | None = None, *, policy: RetryPolicy = RetryPolicy()):
        self.url = normalise_url(url)
        self.protocol, _ = split_protocol(self.url)
        self.storage_options = dict(storage_options or {})
        self.policy = policy
        self._cls = filesystem_class(self.protocol)  # fail at open, not at the first read
        self._local = threading.local()

    def __getstate__(self):
        return {"url": self.url, "storage_options": self.storage_options, "policy": self.policy}

    def __setstate__(self, state):
        self.__init__(state["url"], state["storage_options"], policy=state["policy"])

    def fs(self):
        """This process and thread's own filesystem object (never one made before a fork)."""
        fs, pid = getattr(self._local, "fs", None), getattr(self._local, "pid", None)
        if fs is None or pid != os.getpid():
            fs = self._cls(skip_instance_cache=True, **self.storage_options)
            self._local.fs, self._local.pid = fs, os.getpid()
        return fs

    def url_of(self, name: str) -> str:
        return f"{self.url}/{name}"

    def read(self, name: str, start: int | None = None, end: int | None = None, *,
             cancel: threading.Event | None = None) -> bytes:
        """Bytes ``[start, end)`` of file ``name`` (the whole file without a range), checked and retried.

        ``cancel`` set: no further attempt starts (a StorageError ends the read).
        """
        url = self.url_of(name)
        want = None if start is None or end is None else end - start

        def attempt() -> bytes:
            data = self._cat(url, start, end)
            if want is not None and len(data) != want:
                raise _ShortRead(f"asked for bytes {start}..{end} ({want} bytes), got {len(data)}: "
                                 "a truncated body or a server that ignores Range")
            return data

        return self.retry(attempt, url, cancel=cancel)

    def read_bounded(self, name: str, limit: int) -> bytes:
        """All of file ``name`` when it holds at most ``limit`` bytes; otherwise its first ``limit + 1``
        bytes, which tell the caller it is too large without a download of whatever a server sends.

        The size comes from the server (HEAD); a server that does not say gets a ranged request.
        """
        url = self.url_of(name)

        def announced() -> int | None:
            try:
                return self.call("size", url)
            except FileNotFoundError:  # fsspec's HTTP info also says this of a server it cannot reach:
                return None            # the read below tells a missing file from a failing server

        # the size and the read are retried apart: one attempt of both requests met a failure every
        # time under a server failing one request in three (tests/storage/test_remote.py)
        size = self.retry(announced, url)

        def attempt() -> bytes:
            if size is not None and size <= limit:
                data = self._cat(url, None, None)
                if len(data) != size:
                    raise _ShortRead(f"the server announced {size} bytes and sent {len(data)}")
                return data
            return self._cat(url, 0, limit + 1)[: limit + 1]

        return self.retry(attempt, url)

    def retry(self, fn: Callable[[], bytes], url: str, *, cancel: threading.Event | None = None,
              verb: str = "read"):
        """Run ``fn`` until it succeeds, up to the policy's attempts; then a StorageError naming ``url``
        (``verb`` says what was tried: "read", "upload", "list", ...)."""
        last: BaseException | None = None
        for k in range(self.policy.attempts):
            if cancel is not None and cancel.is_set():
                raise StorageError(f"{verb} of {url} was cancelled")
            try:
                return fn()
            except _PERMANENT as exc:
                err = StorageError(f"cannot {verb} {url}: {type(exc).__name__}: {exc}")
                raise err from exc
            except Exception as exc:  # noqa: BLE001 - transient by default: resets, 5xx, timeouts
                last = exc
                self._local.fs = None  # a broken connection pool is not reused
                if k + 1 < self.policy.attempts:
                    time.sleep(self.policy.pause(k))
        err = StorageError(f"cannot {verb} {url} after {self.policy.attempts} attempts: "
                           f"{type(last).__name__}: {last}")
        err.add_note(f"each attempt had {self.policy.timeout_s:g} s; set timeout= and retries= in fastload.open")
        raise err from last

    def call(self, method: str, *args, timeout: float | None = None, **kwargs):
        """``fs.<method>(*args, **kwargs)`` once, within ``timeout`` (default: the policy's); wrap it
        in :meth:`retry` to retry it. Async backends run their coroutine ``_<method>``."""
        fs = self.fs()
        limit = self.policy.timeout_s if timeout is None else timeout
        if getattr(fs, "async_impl", False):
            from fsspec.asyn import sync

            # fsspec cancels the coroutine on timeout (asyncio.wait_for), so no request outlives it;
            # synchronous backends get the same bound from a watched thread
            return sync(fs.loop, getattr(fs, "_" + method), *args, timeout=limit, **kwargs)
        return _call_with_timeout(lambda: getattr(fs, method)(*args, **kwargs), limit)

    def _cat(self, url: str, start: int | None, end: int | None) -> bytes:
        return self.call("cat_file", url, start=start, end=end)


def _call_with_timeout(fn: Callable[[], bytes], timeout: float) -> bytes:
    """``fn()`` in a daemon thread, waited for at most ``timeout`` seconds.

    A synchronous filesystem cannot be interrupted, so on timeout the call is abandoned: its thread
    ends whenever the backend gives up, and its filesystem object is dropped by the retry loop.
    A thread costs ~0.1 ms, nothing next to a ranged request.
    """
    done = threading.Event()
    box: list = []

    def run() -> None:
        try:
            box.append((True, fn()))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box.append((False, exc))
        finally:
            done.set()

    threading.Thread(target=run, name="fastload-sync-read", daemon=True).start()
    if not done.wait(timeout):
        raise TimeoutError(f"no answer within {timeout:g} s")
    ok, value = box[0]
    if ok:
        return value
    raise value


class _ShortRead(OSError):
    """A read returned another number of bytes than asked for."""
