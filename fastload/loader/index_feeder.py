"""A pure order's index batches, drawn ahead in a thread so that the consumer only takes them.

The loader's own epoch plan maps positions through the shuffle in chunks of 2**16 samples: ~5 us
of NumPy per 64-record batch on this project's 2-core machine, half of what the consumer's thread
may spend on a batch (issue 17's 10 us), and a 5 ms stall of the training loop every 1,024
batches. A feeder thread draws them instead (NumPy releases the GIL for the arithmetic), keeping
up to ``depth`` batches (two of the plan's chunks) in a deque, which hands them over without a
lock; either side sleeps only when the deque is empty (the consumer) or full (the feeder), and is
woken only then, so a whole epoch costs a few wake-ups.

Only for orders whose draws have no side effect that depends on when they happen (the loader's
own plan): a user's sampler that draws its seed from torch's RNG on its first batch, say, must be
drawn by the consumer's thread, when the consumer asks.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Iterator

from .pools import STOP_S

WAIT_S = 0.05  # a waiting consumer's slice: signal handlers (Ctrl-C, alarms) run between slices


class _Failed:
    """What the order raised, delivered in its place."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException):
        self.exc = exc


class IndexFeeder:
    """Draws ``batches`` in a thread; :meth:`take` returns them in order, then ``end``."""

    def __init__(self, batches: Iterator[Any], depth: int, end: Any):
        self._batches = batches
        self._buf: deque = deque()
        self._depth = max(2, depth)
        self._low = self._depth // 2
        self._end = end
        self._room = threading.Event()  # set by the consumer for a feeder waiting on a full deque
        self._ready = threading.Event()  # set by the feeder for a consumer waiting on an empty one
        self._feeder_waits = False
        self._taker_waits = False
        self._stop = False
        self._thread = threading.Thread(target=self._feed, name="fastload-indices", daemon=True)
        self._thread.start()

    def _feed(self) -> None:
        buf = self._buf
        last: Any = self._end
        try:
            for batch in self._batches:
                if self._stop:
                    return
                buf.append(batch)
                if self._taker_waits:
                    self._ready.set()
                if len(buf) >= self._depth:
                    self._room.clear()
                    self._feeder_waits = True
                    if len(buf) >= self._depth:  # checked again once announced: the consumer may have taken
                        self._room.wait()
                    self._feeder_waits = False
        except BaseException as exc:  # the order's own error, raised at its place in the sequence
            last = _Failed(exc)
        if not self._stop:
            buf.append(last)
            self._ready.set()

    def take(self) -> Any:
        """The next batch (waiting, if the feeder is behind), or ``end`` after the last."""
        buf = self._buf
        while not buf:
            if not self._thread.is_alive() and not buf:  # it ended (its end already taken, or stopped)
                return self._end
            self._ready.clear()
            self._taker_waits = True
            if not buf:
                self._ready.wait(WAIT_S)
            self._taker_waits = False
        batch = buf.popleft()
        if self._feeder_waits and len(buf) <= self._low:
            self._room.set()
        if type(batch) is _Failed:
            raise batch.exc
        return batch

    def close(self) -> None:
        """Stop the feeder: it leaves after the batch it is drawing (a chunk: milliseconds)."""
        self._stop = True
        self._room.set()
        self._thread.join(STOP_S)
        if not self._thread.is_alive():
            close = getattr(self._batches, "close", None)
            if close is not None:  # run the order's own cleanup, in this thread, now that it is idle
                close()
