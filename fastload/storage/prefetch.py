"""Download shards ahead of need, in the order the loader's plan will read them.

The plan is deterministic, so the prefetcher walks its own copy of the epoch's batches (a second
generator over the same plan: nothing is materialised twice) and maps each batch to the shards it
needs. From the slowest reader's position (batches handed to workers, minus those still in
flight) it keeps a *window* of upcoming shards downloaded, several at once, and tells the cache
the next use of every shard within a longer *horizon*, so eviction can follow Belady's rule and
never touch the window. The window shrinks to what the cache limit leaves: it never covers more
bytes than the limit minus the shards readers keep mapped, and a download that finds no room is
simply tried again later, so the prefetcher never blocks a reader.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator

import numpy as np

from .config import WINDOW_BYTES, WINDOW_SHARDS
from .locator import MAX_OPEN

log = logging.getLogger("fastload.storage")

# 2 shards at once, each fetched as up to 4 parallel 16 MiB ranges (cache.py): the next shard
# starts while the last ranges and the checksum pass of the previous one finish, and the shard
# a reader waits for shares the link with one other, not with a whole window
IN_FLIGHT = 2
HORIZON = 4  # next uses are known for this many windows ahead
PEEK_BATCHES = 64  # batches looked at to learn how many shards one batch spans


class Prefetcher:
    """Keeps the next window of shards in the cache while a loader iterates; ``close()`` stops it.

    Checks at construction that the cache limit leaves room for what the readers hold at once.
    """

    def __init__(self, dataset, shard_batches: Iterator[np.ndarray], *, readers: int = 1, lag: int = 2,
                 shards_per_batch: int = 1, window_shards: int = WINDOW_SHARDS, window_bytes: int = WINDOW_BYTES,
                 in_flight: int = IN_FLIGHT):
        cache = dataset.locator.cache
        sizes = cache.manifest.shard_bytes
        max_shard = int(sizes.max()) if len(sizes) else 0
        limit = cache.node.limit
        per_reader = max(MAX_OPEN, shards_per_batch)
        resident = readers * per_reader * max_shard
        if limit is not None and limit < resident:
            # readers would each hold shards while waiting for room the others hold: a deadlock
            raise ValueError(
                f"cache_limit {limit} bytes is too small: {readers} reader(s) keep up to {per_reader} shards "
                f"of up to {max_shard} bytes mapped at once ({shards_per_batch} per batch at most), "
                f"{resident} bytes; raise cache_limit, use fewer workers, or shuffle less")
        if limit is not None:  # the window shrinks to what the readers' shards leave under the limit
            window_bytes = max(min(window_bytes, limit - resident), max_shard)
        self.cache, self.sizes = cache, sizes
        self.window_shards, self.window_bytes, self.lag = window_shards, window_bytes, lag
        self._source = shard_batches
        self._events: deque[tuple[int, np.ndarray]] = deque()  # (batch number, shards it needs)
        self._pulled = 0
        self._exhausted = False
        self._dispatched = 0
        self._in_flight: set[int] = set()
        self._cond = threading.Condition()
        self._closed = False
        self._cancel = threading.Event()  # tells running downloads to stop between ranges
        self._pool = ThreadPoolExecutor(in_flight, thread_name_prefix="fastload-prefetch")
        self._max_in_flight = in_flight
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, name="fastload-prefetcher", daemon=True)

    def track(self, batches: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Pass ``batches`` through, noting how many were handed to the readers.

        Downloads start when the first batch is asked for: by then the loader's worker processes
        have forked, so no child inherits a lock held by a download thread.
        """
        if not self._thread.is_alive() and not self._closed:
            self._thread.start()
        for b in batches:
            with self._cond:
                self._dispatched += 1
                self._cond.notify()
            yield b

    def close(self) -> None:
        """Stop at once: queued downloads are dropped and running ones abandoned between ranges.

        Nothing waits for a download (one range can take ``retries`` × ``timeout``): an abandoned
        download still holds its shard's claim until it stops, and a reader that needs the shard
        meanwhile waits on the claim or takes it over, as with any other downloader.
        """
        self._cancel.set()
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread.ident is not None:
            self._thread.join(5.0)  # the loop itself never blocks on a download: milliseconds
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.cache.withdraw_hints()

    # -- the loop --------------------------------------------------------------------------
    def _run(self) -> None:
        published, published_at = None, 0.0
        try:
            while True:
                with self._cond:
                    if self._closed:
                        return
                    position = max(0, self._dispatched - self.lag)
                while self._events and self._events[0][0] < position:
                    self._events.popleft()
                order = self._refill(position)
                if self._exhausted and not order:
                    return
                window = self._window(order)
                now = time.monotonic()
                if window != published or now - published_at > 1.0:  # every change, and a heartbeat
                    self.cache.publish_hints(order, window)
                    published, published_at = window, now
                with self._cond:
                    for s in window:
                        if len(self._in_flight) >= self._max_in_flight:
                            break
                        if s not in self._in_flight and not self.cache.is_cached(s):
                            self._in_flight.add(s)
                            self._pool.submit(self._fetch, s)
                    self._cond.wait(0.05)
        except BaseException as exc:  # noqa: BLE001 - readers fetch on demand and report errors themselves
            log.warning("prefetcher stopped: %s", exc)
            self.errors.append(exc)

    def _refill(self, position: int) -> dict[int, int]:
        """Pull batches until the horizon holds HORIZON windows of distinct shards; returns each
        upcoming shard's first batch number, in order of need."""
        order: dict[int, int] = {}
        for k, shards in self._events:
            for s in shards.tolist():
                order.setdefault(s, k)
        target = HORIZON * self.window_shards
        while not self._exhausted and len(order) < target and self._pulled - position < 1 << 16:
            try:
                shards = next(self._source)
            except StopIteration:
                self._exhausted = True
                break
            k = self._pulled
            self._pulled += 1
            if k < position:
                continue
            self._events.append((k, shards))
            for s in shards.tolist():
                order.setdefault(s, k)
        return order

    def _window(self, order: dict[int, int]) -> list[int]:
        window, total = [], 0
        for s in order:  # dicts keep insertion order: order of first need
            size = int(self.sizes[s])
            if window and (len(window) >= self.window_shards or total + size > self.window_bytes):
                break
            window.append(s)
            total += size
        return window

    def _fetch(self, s: int) -> None:
        try:
            self.cache.ensure(s, blocking=False, cancel=self._cancel)
        except BaseException as exc:  # noqa: BLE001 - the reader retries on demand and raises
            log.debug("prefetch of shard %d failed: %s", s, exc)
        finally:
            with self._cond:
                self._in_flight.discard(s)
                self._cond.notify()


class _NoPrefetch:
    """For local datasets: batches pass through untouched."""

    def track(self, batches):
        return batches

    def close(self) -> None:
        pass


def start_prefetch(dataset, plan, *, num_workers: int = 0, prefetch_factor: int = 2):
    """A running :class:`Prefetcher` for a remote dataset iterated by ``plan`` (else a no-op)."""
    if plan is None or getattr(dataset.locator, "cache", None) is None:
        return _NoPrefetch()
    shard_batches = (np.unique(dataset.shard_of(b)) for b in plan.batches())
    # shards one batch touches, from the epoch's first batches: a few hundred microseconds
    per_batch = max((len(s) for s in itertools.islice(
        (np.unique(dataset.shard_of(b)) for b in plan.batches()), PEEK_BATCHES)), default=1)
    window = dataset.locator.prefetch_window
    return Prefetcher(dataset, shard_batches, readers=max(num_workers, 1), shards_per_batch=per_batch,
                      lag=num_workers * prefetch_factor + 1, window_shards=window.shards,
                      window_bytes=window.bytes)
