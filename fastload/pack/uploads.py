"""Publish finished shards in background threads while the pack goes on, within a bounded staging space.

A finished shard waits in the local staging directory until a thread has published it (uploaded,
or moved for a local output) and then leaves it. ``submit`` blocks while the shards waiting would
take more than ``limit`` bytes, so a pack never fills the local disk faster than the store takes
it; one shard is always let through, so a limit below the shard size still makes progress.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from ..errors import StorageError
from .destination import Destination

_WAIT_S = 1.0  # how often a blocked submit looks again (a failed upload ends the wait at once)


class Uploader:
    """Background publishing of staged files, in parallel, with staged bytes bounded by ``limit``."""

    def __init__(self, dest: Destination, *, threads: int, limit: int):
        if threads < 1:
            raise ValueError(f"uploads must be at least 1, not {threads}")
        self.dest = dest
        self.limit = limit
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="fastload-upload")
        self._cv = threading.Condition()
        self._staged = 0  # bytes submitted and not yet published
        self._error: BaseException | None = None
        self._futures: list[Future] = []
        self.peak_staged = 0
        self.busy_s = 0.0  # seconds spent publishing, summed over the threads
        self.blocked_s = 0.0  # seconds submit() waited for staging room

    def submit(self, path: Path, name: str, size: int) -> Future:
        """Publish ``path`` as ``name`` in the background (after waiting for staging room)."""
        t0 = time.perf_counter()
        with self._cv:
            while self._error is None and self._staged and self._staged + size > self.limit:
                self._cv.wait(_WAIT_S)
            self.blocked_s += time.perf_counter() - t0
            self._raise_error()
            self._staged += size
            self.peak_staged = max(self.peak_staged, self._staged)
        fut = self._pool.submit(self._publish, path, name, size)
        self._futures.append(fut)
        return fut

    def _publish(self, path: Path, name: str, size: int) -> None:
        t0 = time.perf_counter()
        try:
            if self._error is not None:  # the pack is failing: do not start more uploads
                raise StorageError(f"{name} was not published: an earlier upload failed ({self._error})")
            self.dest.publish(path, name, size)
        except BaseException as exc:
            with self._cv:
                self._error = self._error or exc
            raise
        finally:
            path.unlink(missing_ok=True)
            with self._cv:
                self.busy_s += time.perf_counter() - t0
                self._staged -= size
                self._cv.notify_all()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def wait(self) -> None:
        """Wait for every submitted file; raise the first failure."""
        for fut in self._futures:
            fut.exception()
        with self._cv:
            self._raise_error()

    def close(self) -> None:
        """Stop: files not yet started are not published (their staged copies are left to the caller)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
