"""The storage limit: how fast a dataset's shard bytes come off their storage, and memory-copy speed.

Local shards are read the way fastload reads them: memory-mapped (``map_file``) and copied out
sequentially in block-sized pieces, so the figure includes page faults and readahead exactly as a
loader sees them. Remote shards are read through fsspec with ranged reads of ``REMOTE_CHUNK``.
Warm means "in the page cache" (a first untimed pass puts them there); cold means the cache was
dropped before each timed pass, and the result says how it was dropped, or why it could not be.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .._sizes import format_size
from ..format.shard_reader import map_file

# 64 MB: large enough that a copy is not dominated by call overhead, small enough to stay out of
# huge-page effects and to allocate fast on a small machine.
MEMCPY_BYTES = 64 << 20
REMOTE_CHUNK = 8 << 20  # ranged GETs of 8 MB: past ~4 MB object stores reach their per-stream rate
# The warm working set is at most this much, and at most a quarter of the available memory, so
# warming it never pushes the machine into reclaim.
WORKING_SET_MAX = 512 << 20
DROP_CACHES = Path("/proc/sys/vm/drop_caches")


@dataclass(frozen=True, kw_only=True)
class ShardFile:
    """One shard as the storage probe reads it."""

    path: str
    size: int


def memcpy_mb_s(repeats: int) -> list[float]:
    """Single-core memory-copy bandwidth (MB/s, 10^6 B), one figure per repeat."""
    src = np.ones(MEMCPY_BYTES, dtype=np.uint8)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # first touch: page faults are not part of the bandwidth
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(4):
            np.copyto(dst, src)
        out.append(4 * MEMCPY_BYTES / (time.perf_counter() - t0) / 1e6)
    return out


def working_set(files: list[ShardFile], available_bytes: int | None) -> list[ShardFile]:
    """The leading shards whose bytes fit the warm working-set limit (always at least one)."""
    limit = WORKING_SET_MAX if available_bytes is None else min(WORKING_SET_MAX, available_bytes // 4)
    chosen, total = [], 0
    for f in files:
        if chosen and total + f.size > limit:
            break
        chosen.append(f)
        total += f.size
    return chosen


def read_local(files: list[ShardFile], chunk: int, budget_s: float | None = None) -> tuple[int, float]:
    """Read ``files`` as the loader does (mmap, sequential ``chunk``-sized copies); bytes, seconds.

    With ``budget_s`` the read stops at the first chunk boundary after that many seconds.
    """
    buf = np.empty(chunk, dtype=np.uint8)
    done = 0
    t0 = time.perf_counter()
    for f in files:
        mm = map_file(f.path)
        for off in range(0, len(mm), chunk):
            piece = mm[off : off + chunk]
            np.copyto(buf[: len(piece)], piece)
            done += len(piece)
            if budget_s is not None and time.perf_counter() - t0 > budget_s:
                del mm, piece
                return done, time.perf_counter() - t0
        del mm  # unmap now: a mapped page cannot be dropped from the cache by the next cold pass
    return done, time.perf_counter() - t0


def read_remote(fs, files: list[ShardFile], chunk: int = REMOTE_CHUNK,
                budget_s: float | None = None) -> tuple[int, float]:
    """Read ``files`` through an fsspec filesystem with sequential ranged reads; bytes, seconds."""
    done = 0
    t0 = time.perf_counter()
    for f in files:
        for off in range(0, f.size, chunk):
            done += len(fs.cat_file(f.path, start=off, end=min(off + chunk, f.size)))
            if budget_s is not None and time.perf_counter() - t0 > budget_s:
                return done, time.perf_counter() - t0
    return done, time.perf_counter() - t0


def cached_fraction(files: list[ShardFile], samples_per_file: int = 16) -> float | None:
    """Share of sampled pages found in the page cache (``preadv`` with ``RWF_NOWAIT``), or None
    where the platform cannot tell."""
    if not hasattr(os, "RWF_NOWAIT"):
        return None
    hits = total = 0
    buf = bytearray(4096)
    for f in files:
        if f.size == 0:
            continue
        fd = os.open(f.path, os.O_RDONLY)
        try:
            for off in np.linspace(0, max(f.size - 1, 0), samples_per_file).astype(np.int64) // 4096 * 4096:
                total += 1
                try:
                    os.preadv(fd, [buf], int(off), os.RWF_NOWAIT)
                    hits += 1
                except BlockingIOError:
                    pass
                except OSError:
                    return None  # RWF_NOWAIT not supported by this filesystem
        finally:
            os.close(fd)
    return hits / total if total else None


def drop_cache(files: list[ShardFile], *, allow_global: bool = False) -> tuple[str, bool]:
    """Evict ``files`` from the page cache; returns (what was done, whether they left the cache).

    ``posix_fadvise(DONTNEED)`` per file touches nothing else on the machine. Only with
    ``allow_global`` (``fastload bench --drop-all-caches``), when pages stay (another process maps
    them) and we are root, is the whole machine's cache dropped via drop_caches: that slows every
    other program on the machine until its files are read again, so it is never the default.
    """
    method = "none"
    if hasattr(os, "posix_fadvise"):
        for f in files:
            fd = os.open(f.path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
        method = "posix_fadvise(DONTNEED) per file"
        left = cached_fraction(files)
        if left is not None and left < 0.05:
            return method, True
    if allow_global and hasattr(os, "geteuid") and os.geteuid() == 0:
        try:
            os.sync()
            DROP_CACHES.write_text("1\n")
            method = (method + ", then " if method != "none" else "") + "echo 1 > /proc/sys/vm/drop_caches"
            left = cached_fraction(files)
            return method, left is None or left < 0.05
        except OSError:
            pass
    left = cached_fraction(files)
    return method, left is not None and left < 0.05


def measure(files: list[ShardFile], *, chunk: int, repeats: int, budget_s: float, cold: bool,
            available_bytes: int | None, remote_fs=None, drop_all_caches: bool = False,
            tick: Callable[[], None] = lambda: None) -> dict:
    """Warm (and with ``cold``, cold) read bandwidth plus memcpy; medians over ``repeats``.
    ``drop_all_caches``: a cold pass may drop the whole machine's page cache (see drop_cache)."""
    out: dict = {"pattern": (f"fsspec ranged reads of {REMOTE_CHUNK >> 20} MB" if remote_fs is not None
                             else f"mmap + sequential copies of {format_size(chunk)} (fastload's read path)")}
    per_pass = budget_s / (repeats + 1 + (repeats if cold else 0))
    if remote_fs is not None:
        runs = []
        for _ in range(repeats):
            n, s = read_remote(remote_fs, files, budget_s=per_pass)
            runs.append(n / s / 1e6)
            tick()
        out.update(remote=True, mb_s=runs, bytes_per_pass=n)
        out["memcpy_mb_s"] = memcpy_mb_s(repeats)
        return out
    ws = working_set(files, available_bytes)
    ws_bytes = sum(f.size for f in ws)
    cold_runs: list[float] = []
    if cold:
        # cold first: nothing of ours maps the files yet, so they can be evicted
        method, dropped = drop_cache(ws, allow_global=drop_all_caches)
        out["cold_method"] = method
        if dropped:
            for _ in range(repeats):
                drop_cache(ws, allow_global=drop_all_caches)
                n, s = read_local(ws, chunk, budget_s=per_pass)
                cold_runs.append(n / s / 1e6)
                tick()
            out["cold_mb_s"] = cold_runs
        else:
            hint = "" if drop_all_caches else " (as root, --drop-all-caches may drop the whole machine's cache)"
            out["cold_skipped"] = (f"could not drop the page cache ({method} left the files cached){hint}; "
                                   f"a cold figure needs a dataset larger than the free memory")
    # warm-up pass (untimed for the result), bounded so a slow disk does not eat the whole budget
    read_local(ws, chunk, budget_s=per_pass)
    cached = cached_fraction(ws)
    warm_runs = []
    for _ in range(repeats):
        n, s = read_local(ws, chunk, budget_s=per_pass)
        warm_runs.append(n / s / 1e6)
        tick()
    out.update(remote=False, mb_s=warm_runs, working_set_bytes=ws_bytes, working_set_shards=len(ws),
               cached_fraction=cached)
    out["memcpy_mb_s"] = memcpy_mb_s(repeats)
    return out
