"""flock helpers of the node cache: the kernel drops a dead process's locks, so they never go stale."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path


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
    try:
        return os.open(path, os.O_RDONLY)
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
        os.close(fd)
