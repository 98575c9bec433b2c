"""The cache directory as a whole: global lock, occupancy, eviction scan, stale files, clear.

Shared by every worker, rank and job on the node; one dataset's downloads are in cache.py. The
directory layout and the locking rules are described there and in docs/storage.md.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import StorageError
from .config import CacheConfig
from .counters import read_totals
from .eviction import Entry, choose_victims
from .locks import LOCK_FDS, held_elsewhere, open_or_none, same_file, try_lock, unlink_quiet
from .remote import normalise_url

LOCK_NAME = ".lock"
USERS = ".users"  # in a dataset's directory: LOCK_SH by every process that has the dataset open
CLAIM = ".claim"
PART = ".part-"
HINTS_FRESH_S = 10.0  # a prefetcher rewrites its hints at least every second while it runs
POLL_S = 0.02  # claim and lock polling: a 16 MB shard at 1 GB/s takes 16 ms, so waiters react within ~one shard


def dataset_key(url: str) -> str:
    """A directory name for a dataset URL: readable slug plus a hash that keeps distinct URLs apart."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", url.split("://", 1)[-1].strip("/"))[-48:].strip("_") or "dataset"
    return f"{slug}-{hashlib.sha256(url.encode()).hexdigest()[:16]}"


class NodeCache:
    """The cache directory as a whole: global lock, occupancy, eviction, stale-file cleanup."""

    def __init__(self, config: CacheConfig):
        self.config = config
        self.root = config.cache_dir
        self.limit = config.cache_limit
        self.root.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def locked(self, timeout: float = 60.0) -> Iterator[None]:
        """The global accounting lock; held for a directory scan and a few unlinks (milliseconds)."""
        fd = LOCK_FDS.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
        try:
            deadline = time.monotonic() + timeout
            while not try_lock(fd, fcntl.LOCK_EX):
                if time.monotonic() > deadline:
                    raise StorageError(f"cache {self.root}: the global lock was held for over {timeout:g} s")
                time.sleep(POLL_S)
            yield
        finally:
            LOCK_FDS.close(fd)  # closing releases the lock (a child forked meanwhile closed its copy)

    def dataset_dirs(self) -> list[Path]:
        try:
            return sorted(p for p in self.root.iterdir() if p.is_dir() and (p / "url").exists())
        except FileNotFoundError:
            return []

    def files(self) -> Iterator[os.DirEntry]:
        """Every shard and temporary file (not claims) of every dataset in the cache."""
        for d in self.dataset_dirs():
            try:
                with os.scandir(d / "shards") as it:
                    for e in it:
                        if not e.name.endswith(CLAIM):
                            yield e
            except FileNotFoundError:
                continue

    def publish(self, tmp: Path, final: Path) -> None:
        """Rename a finished download into place, under the global lock.

        A directory scan racing a rename can miss the file under both names (``readdir`` lists a
        renamed entry zero or one times): :meth:`usage` then undercounts by a shard and the next
        reservation overshoots the limit by one. Renaming only under the lock that every scan
        holds keeps the count exact (seen: 13 shards in a 12-shard cache, about 1 run in 6).
        """
        with self.locked():
            os.rename(tmp, final)

    def usage(self) -> int:
        """Bytes held: complete shards plus (preallocated) downloads in progress; exact only
        under :meth:`locked` (files are created and renamed only under it)."""
        total = 0
        for e in self.files():
            try:
                total += e.stat().st_size
            except FileNotFoundError:
                pass
        return total

    def hints(self) -> tuple[dict[str, float], set[str]]:
        """Next uses and windows published by every running prefetcher on the node (all processes),
        keyed by path relative to the cache root; the earliest next use wins."""
        next_use: dict[str, float] = {}
        protected: set[str] = set()
        now = time.time()
        for path in self.root.glob("*/hints/*.json"):
            try:
                if now - path.stat().st_mtime > HINTS_FRESH_S:  # its prefetcher died: ignore, tidy
                    unlink_quiet(path)
                    continue
                body = json.loads(path.read_text())
                window = [str(key) for key in body["protected"]]
                uses = {str(key): float(k) for key, k in body["next_use"].items()}
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                # replaced or removed while we read (the next eviction sees the new one), or not a
                # hint file at all: it protects nothing
                continue
            protected.update(window)
            for key, k in uses.items():
                next_use[key] = min(k, next_use.get(key, k))
        return next_use, protected

    def evict(self, need: int) -> int:
        """Free at least ``need`` bytes (caller holds the global lock); returns the shards evicted, or 0.

        In-use flags are probed with ``LOCK_EX|LOCK_NB``, next uses and windows read from the
        prefetchers' hint files, victims chosen by :func:`~fastload.storage.eviction.choose_victims`,
        then locked again for the unlink; a victim that a reader opened in between is kept and the
        choice is made again.
        """
        next_use, protected = self.hints()
        for _ in range(3):
            entries = []
            for e in self.files():
                if PART in e.name:
                    continue
                try:
                    st = e.stat()
                except FileNotFoundError:
                    continue
                rel = os.path.relpath(e.path, self.root)
                entries.append(Entry(key=e.path, size=st.st_size, in_use=held_elsewhere(e.path),
                                     protected=rel in protected, next_use=next_use.get(rel),
                                     last_use=st.st_mtime))
            victims = choose_victims(entries, need)
            if not victims:
                return 0
            held = []
            try:
                for v in victims:
                    fd = open_or_none(v.key)
                    if fd is None:
                        continue  # someone else evicted it: its bytes are free too
                    held.append((fd, v.key))
                    if not try_lock(fd, fcntl.LOCK_EX) or not same_file(fd, Path(v.key)):
                        break
                else:
                    for fd, path in held:
                        os.unlink(path)
                    return len(held)
            finally:
                for fd, _ in held:
                    LOCK_FDS.close(fd)
        return 0

    def cleanup_stale(self) -> int:
        """Delete temporaries whose claim nobody holds (their downloader died); returns how many."""
        removed = 0
        for d in self.dataset_dirs():
            try:
                names = os.listdir(d / "shards")
            except FileNotFoundError:
                continue
            for name in names:
                if PART not in name:
                    continue
                claim = d / "shards" / (name.split(PART, 1)[0] + CLAIM)
                fd = open_or_none(claim)
                if fd is None:
                    unlink_quiet(d / "shards" / name)
                    removed += 1
                    continue
                try:
                    if try_lock(fd, fcntl.LOCK_EX):
                        unlink_quiet(d / "shards" / name)
                        removed += 1
                finally:
                    LOCK_FDS.close(fd)
        return removed

    def describe(self) -> list[dict]:
        """Per dataset: URL, bytes and shards cached, downloads in progress, hit rate so far."""
        out = []
        for d in self.dataset_dirs():
            shards = parts = nbytes = 0
            try:
                with os.scandir(d / "shards") as it:
                    for e in it:
                        if e.name.endswith(CLAIM):
                            continue
                        nbytes += e.stat().st_size
                        if PART in e.name:
                            parts += 1
                        else:
                            shards += 1
            except FileNotFoundError:
                pass
            c = read_totals(d / "counters")
            asked = c["hits"] + c["misses"]
            out.append({"url": (d / "url").read_text(), "dir": str(d), "bytes": nbytes, "shards": shards,
                        "downloading": parts, "hits": int(c["hits"]), "misses": int(c["misses"]),
                        "hit_rate": c["hits"] / asked if asked else None,
                        "bytes_downloaded": int(c["bytes_downloaded"]), "evictions": int(c["evictions"])})
        return out

    def clear(self, url: str | None = None) -> tuple[int, int]:
        """Delete cached shards (of ``url`` only, when given) that no reader has open, and stale
        temporaries. A dataset's directory goes too when no process has the dataset open; a job
        that has it open keeps its directory, claims and counters and downloads again what it
        needs next.

        Returns (files removed, files kept because in use or being downloaded).
        """
        dirs = [self.root / dataset_key(normalise_url(url))] if url is not None else self.dataset_dirs()
        removed = kept = 0
        with self.locked():
            for d in dirs:
                kept_here = 0
                shards = d / "shards"
                for name in (os.listdir(shards) if shards.is_dir() else []):
                    path = shards / name
                    if name.endswith(CLAIM):
                        continue
                    claim = path if PART not in name else shards / (name.split(PART, 1)[0] + CLAIM)
                    fd = open_or_none(claim)
                    if fd is None or try_lock(fd, fcntl.LOCK_EX):
                        unlink_quiet(path)
                        removed += 1
                    else:
                        kept_here += 1
                    if fd is not None:
                        LOCK_FDS.close(fd)
                kept += kept_here
                if not kept_here and not held_elsewhere(d / USERS):  # openers take USERS under this same lock
                    shutil.rmtree(d, ignore_errors=True)
        return removed, kept


