"""The claim file of a shard download: who downloads it, whether it is progressing, how it failed.

``<shard>.claim`` beside the cached shard is ``flock``ed ``LOCK_EX`` by the process downloading it.
The holder writes a small JSON status into it (its pid; ``failed`` with the error when it gives
up) and touches its mtime each time a range arrives or while it waits for room: a heartbeat. A
process that needs the same shard waits on the lock, and gives up when the heartbeat stops for
longer than the holder's own retries can take (``stall_s``), or when the holder reports a failure
while it waited: so a server that stops answering fails every waiting reader about when the
downloader's own retries end, each error saying whom it waited for and what happened to it.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

from .locks import LOCK_FDS, same_file, try_lock

_HEARTBEAT_EVERY_S = 0.5  # touching the file costs a syscall: at most twice a second


class Claim:
    """One process's open claim file for one shard (held or not); ``close()`` releases it."""

    def __init__(self, path: Path):
        self.path = path
        # O_NOFOLLOW: the claim is created inside the cache directory and never through a symlink
        self.fd = LOCK_FDS.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC)
        self._beat = 0.0

    def take(self) -> bool:
        """Try to hold the claim (non-blocking); the last holder's status stays readable until
        :meth:`announce`."""
        return try_lock(self.fd, fcntl.LOCK_EX) and same_file(self.fd, self.path)

    def announce(self) -> None:
        """The holder starts downloading."""
        self._write({"pid": os.getpid(), "state": "downloading", "at": time.time()})

    def heartbeat(self) -> None:
        """Progress (a range arrived, or still waiting for room): waiters keep waiting."""
        now = time.monotonic()
        if now - self._beat >= _HEARTBEAT_EVERY_S:
            self._beat = now
            os.utime(self.fd)

    def fail(self, error: str) -> None:
        """The holder gives up: waiters that were waiting report this instead of retrying."""
        self._write({"pid": os.getpid(), "state": "failed", "error": error[:2000], "at": time.time()})

    def status(self) -> dict:
        """The holder's last status (``{}`` when none was written or it is being rewritten)."""
        try:
            body = json.loads(os.pread(self.fd, 4096, 0) or b"{}")
        except (OSError, ValueError):
            return {}
        return body if isinstance(body, dict) else {}

    def quiet_for(self) -> float:
        """Seconds since the holder last showed progress (its status or heartbeat)."""
        return time.time() - os.fstat(self.fd).st_mtime

    def close(self) -> None:
        LOCK_FDS.close(self.fd)  # releases the lock, if held (a forked child closed its copy at once)

    def _write(self, body: dict) -> None:
        data = json.dumps(body).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)
        self._beat = time.monotonic()
