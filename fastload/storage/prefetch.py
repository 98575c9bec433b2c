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

import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator

import numpy as np

from .config import WINDOW_BYTES, WINDOW_SHARDS
from .lookahead import first_uses, horizon_shards, window_bytes, window_of

log = logging.getLogger("fastload.storage")

# 3 shards at once, sharing 8 ranges in flight (DatasetCache.ahead_streams), granted to the
# shard needed first: shards arrive one after another at nearly the link's rate, and the next
# one's ranges start as the previous one's end, so the link never waits for a checksum pass or
# a new request
IN_FLIGHT = 3


class Prefetcher:
    """Keeps the next window of shards in the cache while a loader iterates; ``close()`` stops it.

    ``window_max_bytes`` is what the cache leaves for the window (:func:`.lookahead.window_bytes`);
    0 makes it idle (readers then download on demand).
    """

    def __init__(self, cache, shard_batches: Iterator[np.ndarray], *, lag: int = 2,
                 window_shards: int = WINDOW_SHARDS, window_max_bytes: int = WINDOW_BYTES,
                 in_flight: int = IN_FLIGHT):
        self.cache, self.sizes = cache, cache.manifest.shard_bytes
        self.window_shards, self.window_bytes, self.lag = window_shards, window_max_bytes, lag
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
        self._target = horizon_shards(window_shards, cache.manifest.shard_records)
        self._order: dict[int, float] = {}
        self._window: list[int] = []
        self._head: frozenset | None = None  # the shards of the batch at the position last looked from
        self._published_at = 0.0
        self._thread = threading.Thread(target=self._run, name="fastload-prefetcher", daemon=True)

    def track(self, batches: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Pass ``batches`` through, noting how many were handed to the readers.

        The next uses and the window are brought up to date here, before a batch reaches a
        reader, so that every eviction (a reader's too) follows the readers' current position.
        Downloads start when the first batch is asked for: by then the loader's worker processes
        have forked, so no child inherits a lock held by a download thread.
        """
        if not self._thread.is_alive() and not self._closed:
            self._thread.start()
        for b in batches:
            with self._cond:
                self._dispatched += 1
                self._look_ahead()
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

    # -- what is ahead ---------------------------------------------------------------------
    def _look_ahead(self) -> None:
        """From the slowest reader's position: the next uses and the window, published when the
        batch there reads other shards than last time (otherwise their order is unchanged; the
        forecast follows the same rule). The caller holds ``_cond``."""
        position = max(0, self._dispatched - self.lag)
        while self._events and self._events[0][0] < position:
            self._events.popleft()
        if self._events and self._events[0][0] == position and self._head == frozenset(self._events[0][1].tolist()):
            return
        self._order = self._refill(position)
        self._window = window_of(self._order, self.sizes, self.window_shards, self.window_bytes)
        self._head = frozenset(self._events[0][1].tolist()) if self._events else None
        self.cache.publish_hints(self._order, self._window)
        self._published_at = time.monotonic()

    def _refill(self, position: int) -> dict[int, float]:
        """Pull batches until the horizon holds HORIZON windows of distinct shards (at most every
        shard); returns each upcoming shard's first use (:func:`.lookahead.first_uses`)."""
        order = first_uses(self._events)
        while (not self._exhausted and len(order) < self._target and self._pulled - position < 1 << 16):
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
            for i, s in enumerate(shards.tolist()):
                order.setdefault(s, k + i / len(shards))
        return order

    # -- the loop --------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    if self._closed:
                        return
                    if self._head is None and not self._exhausted:
                        self._look_ahead()  # before the first batch is handed out
                    if self._exhausted and not self._order:
                        return
                    if time.monotonic() - self._published_at > 1.0:  # a heartbeat: the hints are alive
                        self.cache.publish_hints(self._order, self._window)
                        self._published_at = time.monotonic()
                    for s in self._window:
                        if len(self._in_flight) >= self._max_in_flight:
                            break
                        if s not in self._in_flight and not self.cache.is_cached(s):
                            self._in_flight.add(s)
                            self._pool.submit(self._fetch, s, self._order.get(s, float("inf")))
                    self._cond.wait(0.05)
        except BaseException as exc:  # noqa: BLE001 - readers fetch on demand and report errors themselves
            log.warning("prefetcher stopped: %s", exc)
            self.errors.append(exc)

    def _fetch(self, s: int, first_use: float) -> None:
        try:
            self.cache.ensure(s, blocking=False, cancel=self._cancel, ahead=first_use)
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


def start_prefetch(dataset, plan, *, lag: int, resident: int = 0, ranks: int = 1, keep_all: bool = True,
                   fetch: bool = True):
    """A running :class:`Prefetcher` for a remote dataset iterated by ``plan`` (else a no-op).

    ``resident``: what the node's readers hold at once (:func:`.forecast.resident_need`), left out
    of the window under a limit; ``keep_all``: readers keep their shards mapped (the node's share
    fits the limit), so the window is not bounded by the limit; ``ranks``: the node's ranks, each
    with its own prefetcher sharing the room; ``fetch`` False: it only publishes the next uses
    (evictions still follow the plan) and downloads nothing.
    """
    if plan is None or getattr(dataset.locator, "cache", None) is None:
        return _NoPrefetch()
    cache = dataset.locator.cache
    window = dataset.locator.prefetch_window
    budget = window_bytes(window.bytes, cache.manifest.shard_bytes, None if keep_all else cache.node.limit,
                          resident, ranks) if fetch else 0
    shard_batches = (np.unique(dataset.shard_of(b)) for b in plan.batches())
    return Prefetcher(cache, shard_batches, lag=lag, window_shards=window.shards, window_max_bytes=budget)
