"""flock helpers of the node cache: the kernel drops a dead process's locks, so they never go stale."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path


class ChildCloses:
    """Descriptors that a forked child closes at once: the ones this process locks the cache with.

    A flock belongs to the open file description, and fork shares descriptions: a worker forked
    while a download thread held a claim (or the global lock, or probed a shard) would hold that
    lock for its whole life after the parent let go, and every reader on the node would wait for
    it. Opening and closing such descriptors here, under the lock that fork itself takes, lets
    the child close exactly the ones that were open at the fork.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._fds: set[int] = set()
        os.register_at_fork(before=self._lock.acquire, after_in_parent=self._lock.release,
                            after_in_child=self._in_child)

    def open(self, path, flags: int, mode: int = 0o644) -> int:
        with self._lock:
            fd = os.open(path, flags, mode)
            self._fds.add(fd)
        return fd

    def close(self, fd: int) -> None:
        with self._lock:
            self._fds.discard(fd)
            os.close(fd)

    def _in_child(self) -> None:
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds.clear()
        self._lock.release()  # taken in the parent before the fork


# one per process, as fork is: the only process-wide state of the cache
LOCK_FDS = ChildCloses()


def try_lock(fd: int, kind: int) -> bool:
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def lock_within(fd: int, kind: int, timeout: float, poll: float = 0.005) -> bool:
    """Take ``kind`` on ``fd``, polling for at most ``timeout`` seconds; False if it stayed held."""
    deadline = time.monotonic() + timeout
    while not try_lock(fd, kind):
        if time.monotonic() > deadline:
            return False
        time.sleep(poll)
    return True


def same_file(fd: int, path: Path) -> bool:
    """True when ``path`` still names the file open as ``fd`` (not unlinked or replaced meanwhile)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    fst = os.fstat(fd)
    return (st.st_ino, st.st_dev) == (fst.st_ino, fst.st_dev)


def open_or_none(path) -> int | None:
    """``path`` opened to be locked (close it with ``LOCK_FDS.close``), or None if it is gone."""
    try:
        return LOCK_FDS.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None


def unlink_quiet(path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def held_elsewhere(path) -> bool:
    """True when some other open file description holds a lock on ``path`` (a shard in use, a
    dataset open, a download in flight)."""
    fd = open_or_none(path)
    if fd is None:
        return False
    try:
        return not try_lock(fd, fcntl.LOCK_EX)
    finally:
        LOCK_FDS.close(fd)
