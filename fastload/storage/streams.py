"""A cap on the ranges that downloads ahead of need keep in flight, granted in the plan's order.

The prefetcher downloads several shards at once so that the link never waits between them (a
checksum pass, a new request), but the shard the readers need first should not share the link
with the ones needed later. Each download registers its ranges with its priority (the first use
of its shard in the plan); a free stream goes to the registered download of lowest priority that
still has ranges to ask for, even when streams are free when a later one asks. Shards therefore
arrive one after another at nearly the full link rate, and the next shard's ranges take every
stream the moment one frees.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from contextlib import contextmanager
from typing import Iterator


class Cancelled(Exception):
    """A download abandoned because its caller is closing: between its ranges, or while it waited
    for a stream."""


class StreamCap:
    """At most ``streams`` ranges in flight, handed out to registered downloads by priority."""

    def __init__(self, streams: int):
        if streams < 1:
            raise ValueError(f"streams must be >= 1, not {streams}")
        self._free = streams
        self._demand: list[list] = []  # heap of [priority, arrival, ranges not yet granted]
        self._arrivals = itertools.count()
        self._cond = threading.Condition()

    @contextmanager
    def download(self, priority: float, ranges: int) -> Iterator[list]:
        """Register a download of ``ranges`` ranges for the duration of the block; the handle is
        what :meth:`acquire` takes."""
        me = [priority, next(self._arrivals), ranges]
        with self._cond:
            heapq.heappush(self._demand, me)
        try:
            yield me
        finally:
            with self._cond:
                if me[2] > 0:  # cancelled or failed before asking for all its ranges
                    self._demand.remove(me)
                    heapq.heapify(self._demand)
                    self._cond.notify_all()

    def acquire(self, me: list, cancel: threading.Event | None = None) -> None:
        """Wait for a stream for one of ``me``'s ranges; :class:`Cancelled` when ``cancel`` is set."""
        with self._cond:
            while not (self._free and self._demand[0] is me):
                if cancel is not None and cancel.is_set():
                    raise Cancelled
                self._cond.wait(0.05)  # a cancel is noticed within 50 ms
            self._free -= 1
            me[2] -= 1
            if me[2] == 0:
                heapq.heappop(self._demand)
            self._cond.notify_all()  # room for more than one: the next in line checks too

    def release(self) -> None:
        with self._cond:
            self._free += 1
            self._cond.notify_all()
