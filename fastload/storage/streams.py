"""A cap on the ranges that downloads ahead of need keep in flight, granted in the plan's order.

The prefetcher downloads several shards at once so that the link never waits between them (a
checksum pass, a new request), but the shard the readers need first should not share the link
with the ones needed later: each waiting range carries the position of its shard's first use
in the plan, and a free stream goes to the earliest. Shards therefore arrive one after another
at nearly the full link rate, and the next ones' ranges fill every stream the moment one frees.
"""

from __future__ import annotations

import heapq
import itertools
import threading


class Cancelled(Exception):
    """A wait for a stream abandoned because its download is being cancelled."""


class StreamCap:
    """At most ``streams`` holders; waiters are served lowest ``priority`` first, then in arrival order."""

    def __init__(self, streams: int):
        if streams < 1:
            raise ValueError(f"streams must be >= 1, not {streams}")
        self._free = streams
        self._queue: list[tuple[float, int]] = []
        self._arrivals = itertools.count()
        self._cond = threading.Condition()

    def acquire(self, priority: float, cancel: threading.Event | None = None) -> None:
        """Wait for a stream; raises :class:`Cancelled` when ``cancel`` is set meanwhile."""
        with self._cond:
            me = (priority, next(self._arrivals))
            heapq.heappush(self._queue, me)
            while not (self._free and self._queue[0] == me):
                if cancel is not None and cancel.is_set():
                    self._queue.remove(me)
                    heapq.heapify(self._queue)
                    self._cond.notify_all()  # the next in line may be served now
                    raise Cancelled
                self._cond.wait(0.05)  # a cancel is noticed within 50 ms
            heapq.heappop(self._queue)
            self._free -= 1
            self._cond.notify_all()  # room for more than one: the next in line checks too

    def release(self) -> None:
        with self._cond:
            self._free += 1
            self._cond.notify_all()
