"""One dataset's shards in the node's cache directory: download once, verify, publish, pin.

The directory is shared by every worker, rank and job on the machine; the node-wide side
(global lock, occupancy, eviction, stale files, clear) is node.py.

Layout (``<cache_dir>`` from :class:`CacheConfig`)::

    .lock                                 global lock: held only around accounting (reserve/evict)
    <slug>-<sha256(url)[:16]>/url         the dataset's URL, for ``fastload cache stats|clear``
        .users                            LOCK_SH by every process that has the dataset open
        shards/<name>.<checksum>          a complete, verified shard (content-addressed by checksum)
        shards/<name>.<checksum>.claim    its claim file: LOCK_EX while someone downloads it
        shards/<name>.<checksum>.part-<pid>-<hex>   a download in progress (preallocated)
        counters/<group>-<pid>.bin        per-process counters (see counters.py)
        hints/<group>-<pid>.json          a running prefetcher's window and next uses

Coordination uses ``flock`` only, never reference counts kept in files: the kernel drops a dead
process's locks, so a crash can neither leave a shard pinned forever nor a claim that blocks the
others. A reader maps a shard while holding ``LOCK_SH`` on it (in use); the evictor unlinks only
shards it can lock with ``LOCK_EX|LOCK_NB``. A downloader holds ``LOCK_EX`` on the claim file;
others poll it, and take the download over when the lock is free but no shard appeared (the
downloader died or gave up). A temporary file whose claim is free is stale and is deleted.
The limit counts the apparent size of shards and temporaries; a download preallocates its full
size under the global lock, so every process sees the reservation at once, and is renamed into
place under it too (a scan racing a rename can miss the file): the sum of all files never
exceeds the limit.
"""

from __future__ import annotations

import errno
import fcntl
import json
import mmap
import os
import secrets
import threading
import time
import weakref
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

import numpy as np

from ..errors import StorageError
from ..format.codec import checksum
from ..format.files import NotRegularFileError, open_regular
from ..format.untrusted import is_hex16, is_plain_name
from .claims import Claim
from .counters import Counters, fold_dead
from .locks import lock_within, same_file, unlink_quiet
from .node import CLAIM, PART, POLL_S, USERS, NodeCache, dataset_key
from .remote import Remote
from .streams import Cancelled, StreamCap


class DatasetCache:
    """One remote dataset's shards in the node cache: download once, verify, publish, pin for reading.

    A prefetcher publishes its window and the next use of upcoming shards with
    :meth:`publish_hints`; evictions in every process read them.
    """

    def __init__(self, node: NodeCache, remote: Remote, manifest, *, group: str, wait_timeout: float = 600.0,
                 chunk_bytes: int = 8 << 20, parallel: int = 4, ahead_streams: int = 8):
        self.node = node
        self.remote = remote
        self.manifest = manifest
        self.dir = node.root / dataset_key(remote.url)
        self.shards_dir = self.dir / "shards"
        with node.locked(wait_timeout):  # `fastload cache clear` removes directories under this lock
            self.shards_dir.mkdir(parents=True, exist_ok=True)
            url_file = self.dir / "url"
            if not url_file.exists():
                tmp = self.dir / f"url.{os.getpid()}-{secrets.token_hex(4)}"
                tmp.write_text(remote.url)
                os.replace(tmp, url_file)
            # held while this object lives (and by forked children): the directory is in use
            users = os.open(self.dir / USERS, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            fcntl.flock(users, fcntl.LOCK_SH)
        weakref.finalize(self, os.close, users)
        self.counters = Counters(self.dir / "counters", group)
        self.wait_timeout = wait_timeout
        # a downloader shows progress at least this often, or it has failed: its retries of one
        # range take at most worst_case_s (docs/storage.md, "Waiting")
        self.stall_s = remote.policy.worst_case_s() + 2.0
        # 8 MiB ranged reads: at 100 MB/s with 20 ms per request a lone stream spends ~80% of its
        # time transferring, so several in parallel fill the link. A reader's own download runs
        # `parallel` ranges at once. Downloads ahead of need (the prefetcher's) share
        # `ahead_streams` ranges in flight, granted in the plan's order (streams.StreamCap): a
        # shard arrives whole as early as possible (the first batch waits for its whole shard),
        # and when its last ranges finish the next shard's already fill the link. With a cap per
        # shard only, shards started together finished together and the link idled while both
        # were checksummed and the next ones asked for: 87 MB/s of a 100 MB/s link, against
        # 93-98 MB/s with the shared cap (bench/remote.py's link, 3 repeats each)
        self.chunk_bytes = chunk_bytes
        self.parallel = parallel
        self.ahead_streams = ahead_streams
        # one pool per dataset and process, kept: each of its threads keeps its own filesystem
        # object (Remote.fs), so connections, TLS sessions and credentials are reused across shards
        self._pool: ThreadPoolExecutor | None = None
        self._ahead: StreamCap | None = None
        self._pool_pid: int | None = None
        self._pool_lock = threading.Lock()
        self._hints_file = self.dir / "hints" / f"{group}-{os.getpid()}.json"
        max_shard = int(manifest.shard_bytes.max()) if manifest.n_shards else 0
        if node.limit is not None and max_shard > node.limit:
            raise ValueError(f"cache_limit {node.limit} bytes is smaller than the largest shard of "
                             f"{remote.url} ({max_shard} bytes): raise cache_limit")
        node.cleanup_stale()
        fold_dead(self.dir / "counters")

    def _range_pool(self) -> ThreadPoolExecutor:
        """This process's range-download threads and its cap on ranges ahead of need (made again
        after a fork: a pool made before has no threads here, and a semaphore may be held by
        threads that do not exist here)."""
        with self._pool_lock:
            if self._pool is None or self._pool_pid != os.getpid():
                # room for the prefetcher's streams and two readers' downloads, each `parallel`
                # wide; threads start only when needed
                self._pool = ThreadPoolExecutor(self.ahead_streams + 2 * self.parallel,
                                                thread_name_prefix="fastload-download")
                self._ahead = StreamCap(self.ahead_streams)
                self._pool_pid = os.getpid()
                weakref.finalize(self, self._pool.shutdown, wait=False, cancel_futures=True)
            return self._pool

    def _fetch_ranges(self, fetch, ranges: list[tuple[int, int]], ahead: float | None,
                      cancel: threading.Event | None) -> None:
        """``fetch`` every range on the pool; returns only when none is still running (they write
        into the caller's descriptor). A reader's download (``ahead`` None) runs ``parallel`` at
        once; one ahead of need takes one of the shared streams per range, ``ahead`` being its
        priority (the first use of its shard in the plan)."""
        pool = self._range_pool()
        pending: set = set()
        try:
            if ahead is None:
                for r in ranges:
                    while len(pending) >= self.parallel:
                        pending = _reap(pending, block=True)
                    pending.add(pool.submit(fetch, r))
            else:
                cap = self._ahead
                with cap.download(ahead, len(ranges)) as me:
                    for r in ranges:
                        cap.acquire(me, cancel)
                        try:
                            pending = _reap(pending)  # a failed range ends the download now
                            pending.add(pool.submit(_holding, cap, fetch, r))
                        except BaseException:
                            cap.release()
                            raise
            done, pending = wait(pending)
            for f in done:
                f.result()
        finally:
            for f in pending:
                if f.cancel() and ahead is not None:
                    self._ahead.release()  # never ran, so never gave its stream back
            wait(pending)

    # -- names -----------------------------------------------------------------------------
    def path(self, s: int) -> Path:
        return self.shards_dir / cache_file_name(self.manifest.shard_names[s], self.manifest.shard_checksums[s])

    def is_cached(self, s: int) -> bool:
        return self.path(s).exists()

    def key(self, s: int) -> str:
        """Shard ``s``'s path relative to the cache root, as hint files name it."""
        return os.path.relpath(self.path(s), self.node.root)

    def publish_hints(self, next_use: dict[int, float], window: list[int]) -> None:
        """Tell evictions in every process: next use of upcoming shards, and the window to keep."""
        body = {"next_use": {self.key(s): k for s, k in next_use.items()},
                "protected": [self.key(s) for s in window]}
        self._hints_file.parent.mkdir(exist_ok=True)
        tmp = self._hints_file.with_name(self._hints_file.name + f".{secrets.token_hex(4)}")
        tmp.write_text(json.dumps(body))
        os.replace(tmp, self._hints_file)  # readers see the old file or the new, never half of one

    def withdraw_hints(self) -> None:
        unlink_quiet(self._hints_file)

    # -- download --------------------------------------------------------------------------
    def ensure(self, s: int, *, blocking: bool = True, cancel: threading.Event | None = None,
               ahead: float | None = None) -> bool:
        """Make shard ``s`` present in the cache: download it, or wait for whoever is downloading it.

        Waiting on another downloader ends when it publishes the shard, when it fails while we
        wait (its error is raised here, naming it), when it stops showing progress for ``stall_s``
        (longer than its own retries can take), or when it lets go (then we download).
        Non-blocking (the prefetcher): returns False instead of waiting on another downloader or
        for room under the limit, and skips a shard whose download failed within ``stall_s``.
        ``cancel`` set: a download stops between ranges and returns False (the claim is released,
        so another process takes the shard over). ``ahead``: a download ahead of need, ranked by
        this number (its shard's first use in the plan) for the shared streams; None: a reader's.
        """
        final = self.path(s)
        claim_path = final.with_name(final.name + CLAIM)
        since = time.time()  # failures reported after this happened while we waited
        t0, waited = time.perf_counter(), False
        try:
            while not final.exists():
                self.shards_dir.mkdir(parents=True, exist_ok=True)  # removed by a clear while nobody had it open
                claim = Claim(claim_path)
                try:
                    if claim.take():
                        if final.exists():
                            return True
                        failed = self._failure(claim.status(), since if blocking else time.time() - self.stall_s)
                        if failed is not None:
                            if not blocking:
                                return False  # a reader asking for it will report it
                            raise StorageError(f"{self._shard_text(s)}: {failed}")
                        claim.announce()
                        if not self._download(s, final, blocking, claim, cancel, ahead):
                            return False
                        continue
                    if not blocking:
                        return False
                    quiet = claim.quiet_for()
                    if quiet > self.stall_s:
                        holder = claim.status().get("pid", "?")
                        raise StorageError(
                            f"waited {time.perf_counter() - t0:.1f} s for process {holder} downloading "
                            f"{self._shard_text(s)} into {self.node.root}: nothing arrived for {quiet:.1f} s, longer "
                            f"than its {self.remote.policy.attempts} attempts of {self.remote.policy.timeout_s:g} s "
                            "can take (timeout=, retries=); the server may have stopped answering")
                finally:
                    claim.close()
                waited = True
                time.sleep(POLL_S)
            return True
        finally:
            if waited:
                self.counters.add(wait_s=time.perf_counter() - t0)

    def _shard_text(self, s: int) -> str:
        return f"shard {s} of {self.remote.url} ({self.remote.url_of(self.manifest.shard_names[s])})"

    @staticmethod
    def _failure(status: dict, since: float) -> str | None:
        """The error a claim's last holder reported, if it failed after ``since``."""
        at = status.get("at")
        if status.get("state") != "failed" or not isinstance(at, (int, float)) or at < since:
            return None
        return f"process {status.get('pid', '?')} failed to download it while this one waited: {status.get('error')}"

    def _download(self, s: int, final: Path, blocking: bool, claim: Claim,
                  cancel: threading.Event | None, ahead: float | None) -> bool:
        """Download shard ``s`` to a preallocated temporary, verify it, publish it by rename
        (``claim`` held; a failure is written into it for the processes waiting on it)."""
        try:
            return self._fetch_shard(s, final, blocking, claim, cancel, ahead)
        except BaseException as exc:
            claim.fail(f"{type(exc).__name__}: {exc}")
            raise

    def _fetch_shard(self, s: int, final: Path, blocking: bool, claim: Claim,
                     cancel: threading.Event | None, ahead: float | None) -> bool:
        for name in os.listdir(self.shards_dir):  # we hold the claim: any temporary of it is stale
            if name.startswith(final.name + PART):
                unlink_quiet(self.shards_dir / name)
        size = int(self.manifest.shard_bytes[s])
        tmp = final.with_name(f"{final.name}{PART}{os.getpid()}-{secrets.token_hex(4)}")
        fd = self._reserve(s, tmp, size, blocking, claim)
        if fd is None:
            return False
        name = self.manifest.shard_names[s]
        t0 = time.perf_counter()
        try:
            expected = self.manifest.shard_checksums[s]
            ranges = [(off, min(off + self.chunk_bytes, size)) for off in range(0, size, self.chunk_bytes)]

            def fetch(r: tuple[int, int]) -> None:
                if cancel is not None and cancel.is_set():
                    raise Cancelled
                os.pwrite(fd, self.remote.read(name, *r, cancel=cancel), r[0])
                claim.heartbeat()

            for attempt in range(self.remote.policy.attempts):
                if len(ranges) <= 1 and ahead is None:
                    for r in ranges:
                        fetch(r)
                else:  # each pool thread keeps its own filesystem object (Remote.fs is per thread)
                    self._fetch_ranges(fetch, ranges, ahead, cancel)
                got = _file_checksum(fd, size)
                if got == expected:
                    break
                if attempt + 1 == self.remote.policy.attempts:
                    raise StorageError(f"{self.remote.url_of(name)}: downloaded {self.remote.policy.attempts} "
                                       f"times, checksum {got} each time differs from the manifest's {expected}")
            # no fsync: the cache can always be refetched, and blocks are checksummed when read
            self.node.publish(tmp, final)
        except Cancelled:
            unlink_quiet(tmp)
            return False
        except BaseException:
            unlink_quiet(tmp)
            raise
        finally:
            os.close(fd)
        self.counters.add(bytes_downloaded=size, download_s=time.perf_counter() - t0)
        return True

    def _reserve(self, s: int, tmp: Path, size: int, blocking: bool, claim: Claim) -> int | None:
        """Create ``tmp`` with ``size`` bytes allocated, evicting as needed; None if no room (non-blocking).

        Waits at most ``wait_timeout`` for room, with a heartbeat on ``claim`` meanwhile (the room
        is held by other readers' mapped shards, not by a stalled server).
        """
        deadline = time.monotonic() + self.wait_timeout
        while True:
            with self.node.locked(self.wait_timeout):
                room = True
                if self.node.limit is not None:
                    # a crashed download's temporary would count against the limit and can never be
                    # evicted: drop those (their claim is free) before deciding
                    self.node.cleanup_stale()
                    need = self.node.usage() + size - self.node.limit
                    if need > 0:
                        evicted = self.node.evict(need)
                        room = evicted > 0
                        if evicted:
                            self.counters.add(evictions=evicted)
                if room:
                    return _allocate(tmp, size)
            if not blocking:
                return None
            if time.monotonic() > deadline:
                raise StorageError(
                    f"cache {self.node.root}: no room for {self._shard_text(s)}, {size} bytes, under cache_limit "
                    f"{self.node.limit} for {self.wait_timeout:g} s: every cached shard is in use or about to "
                    "be. The limit is node-wide: it is shared by every rank, worker and job using this cache "
                    "directory, so it must cover what all of them keep mapped; raise cache_limit or use fewer "
                    "workers")
            claim.heartbeat()
            time.sleep(0.05)

    # -- reading ---------------------------------------------------------------------------
    def pin(self, s: int) -> np.ndarray:
        """Shard ``s`` mapped read-only, downloaded first if needed; it stays in use while mapped.

        The shared lock is taken on our descriptor; Python's mmap keeps its own duplicate of that
        descriptor, and flock locks belong to the open file description both share, so the lock
        lives exactly as long as the map and ends when the last view of it is garbage.
        """
        try:
            return self._pin(s)
        except OSError as exc:
            if exc.errno in NOT_WRITABLE and not isinstance(exc, StorageError):
                raise not_writable(self.node.root, exc) from exc
            raise

    def _pin(self, s: int) -> np.ndarray:
        final = self.path(s)
        size = int(self.manifest.shard_bytes[s])
        for _ in range(8):
            hit = final.exists()
            if not hit:
                self.ensure(s)
            try:
                fd = open_regular(final)  # never through a symlink, never a FIFO or device
            except FileNotFoundError:
                continue  # evicted between download and open
            except NotRegularFileError as exc:
                raise StorageError(f"cached shard {final}: {exc.strerror}; the cache directory was modified "
                                   "by hand") from None
            try:
                # an evictor holds LOCK_EX for microseconds while it unlinks; a holder that keeps it
                # is not one of ours, and is reported rather than waited for without end
                if not lock_within(fd, fcntl.LOCK_SH, self.stall_s):
                    raise StorageError(f"cached shard {final} stayed locked for {self.stall_s:g} s by another "
                                       "process: it is not a fastload reader or evictor")
                if not same_file(fd, final):
                    continue
                if os.fstat(fd).st_size != size:
                    raise StorageError(f"cached shard {final} is {os.fstat(fd).st_size} bytes, the manifest "
                                       f"says {size}: the cache directory was modified by hand")
                os.utime(fd)  # last use, for LRU across jobs
                mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ) if size else None
            finally:
                os.close(fd)
            self.counters.add(**({"hits": 1} if hit else {"misses": 1}))
            return np.frombuffer(mm, dtype=np.uint8) if mm is not None else np.zeros(0, np.uint8)
        raise StorageError(f"shard {s} of {self.remote.url} ({self.remote.url_of(self.manifest.shard_names[s])}) "
                           f"was evicted 8 times before it could be opened: cache_limit {self.node.limit} is too "
                           "small for this many readers (the limit is shared by every job on the node)")


NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


def not_writable(cache_dir: Path, exc: OSError) -> StorageError:
    """The error for a cache directory this process may not write (read-only, or another user's)."""
    return StorageError(f"the cache directory {cache_dir} is not writable ({exc.strerror}: {exc.filename}); "
                        "fastload downloads remote shards there: set cache_dir= (or FASTLOAD_CACHE_DIR) to a "
                        "directory this process may write")


def cache_file_name(name: str, digest: str) -> str:
    """``<name>.<checksum>``: a cached shard's file name, built only from a plain shard name and a
    16-hex-digit checksum (Manifest.loads checks both; checked again here, where a path is made,
    so that nothing a server sends can name a file outside the cache directory)."""
    if not is_plain_name(name) or not is_hex16(digest):
        raise StorageError(f"refusing to cache shard {name!r} with checksum {digest!r}: not a plain file name "
                           "and a 16-digit hex checksum")
    return f"{name}.{digest}"


def _reap(pending: set, block: bool = False) -> set:
    """``pending`` less the finished ranges (their errors raised here); with ``block``, after
    waiting for at least one to finish."""
    if block:
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
    else:
        done = {f for f in pending if f.done()}
        pending = pending - done
    for f in done:
        f.result()
    return pending


def _holding(cap: StreamCap, fetch, r: tuple[int, int]) -> None:
    """``fetch(r)`` on one of ``cap``'s streams, given back when it ends however it ends."""
    try:
        fetch(r)
    finally:
        cap.release()


def _allocate(tmp: Path, size: int) -> int:
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
    try:
        if size:
            try:
                os.posix_fallocate(fd, 0, size)  # real blocks now: a full disk fails here, before any download
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise StorageError(f"disk full: cannot allocate {size} bytes in {tmp.parent}; "
                                       "set cache_limit below the free space") from exc
                os.ftruncate(fd, size)  # filesystems without fallocate
    except BaseException:
        os.close(fd)
        unlink_quiet(tmp)
        raise
    return fd


def _file_checksum(fd: int, size: int) -> str:
    if not size:
        return f"{checksum(b''):016x}"
    with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as mm:
        return f"{checksum(mm):016x}"
