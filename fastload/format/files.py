"""Open and map dataset files safely: regular files only, never through a symlink, never blocking.

A dataset directory may come from anyone (a downloaded archive, a shared bucket): a name in it can
be a symlink to a file elsewhere, a FIFO that blocks ``open`` forever, or a device. Every file a
dataset reads (manifest, shards, cached shards) is opened here: checked with ``lstat`` before it is
opened (a FIFO or a device is never opened), opened with ``O_NOFOLLOW | O_NONBLOCK``, and checked
again on the open descriptor, so a file swapped in between is caught too.
"""

from __future__ import annotations

import errno
import mmap
import os
import stat

import numpy as np

_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket", stat.S_IFLNK: "a symbolic link"}


class NotRegularFileError(OSError):
    """A dataset file is a symlink, FIFO, device, socket or directory: fastload does not open it."""


def open_regular(path: str | os.PathLike) -> int:
    """A read-only descriptor of the regular file ``path`` (the caller closes it).

    Raises :class:`NotRegularFileError` for anything but a regular file (a symlink included), and
    the usual OSError (FileNotFoundError, PermissionError, ...) when it cannot be opened.
    """
    before = os.lstat(path)
    _require_regular(path, before)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # replaced by a symlink since the lstat
            raise NotRegularFileError(errno.ELOOP, f"{path} is a symbolic link") from None
        raise
    try:
        after = os.fstat(fd)
        _require_regular(path, after)
        if (after.st_ino, after.st_dev) != (before.st_ino, before.st_dev):
            raise NotRegularFileError(errno.ESTALE, f"{path} was replaced while it was being opened")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _require_regular(path, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        kind = _KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
        raise NotRegularFileError(errno.EINVAL, f"{path} is {kind}; fastload reads only regular files")


def map_fd(fd: int) -> np.ndarray:
    """Map an open file read-only as a uint8 array (an empty file gives an empty array); the map
    keeps its own duplicate of ``fd``, so the caller may close it."""
    size = os.fstat(fd).st_size
    if size == 0:
        return np.zeros(0, np.uint8)
    return np.frombuffer(mmap.mmap(fd, 0, access=mmap.ACCESS_READ), dtype=np.uint8)


def map_file(path: str | os.PathLike) -> np.ndarray:
    """Memory-map a regular file read-only as a uint8 array (see :func:`open_regular`)."""
    fd = open_regular(path)
    try:
        return map_fd(fd)
    finally:
        os.close(fd)


def read_regular(path: str | os.PathLike, limit: int) -> bytes:
    """The bytes of the regular file ``path``; an OSError (EFBIG) when it holds more than ``limit``."""
    fd = open_regular(path)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise OSError(errno.EFBIG, f"{path} is {size} bytes, more than the {limit} allowed")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:  # grew since the fstat
        raise OSError(errno.EFBIG, f"{path} holds more than the {limit} bytes allowed")
    return data
