"""The data stall, measured: how long the consumer waited for batches, and where the time went.

:class:`LoaderStats` is fed one call per delivered batch (a few additions and one clock read), so
measuring costs far less than 1% of a batch. The clock starts when the consumer asks for its first
batch; ``wall_s`` runs from then to the latest delivery, so a snapshot taken long after the last
batch does not dilute the rates.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

log = logging.getLogger("fastload.loader")
_NO_THREADS = (("worker_threads", 0), ("spare_threads", 0), ("parked_threads", 0), ("parked_s", 0.0),
               ("spare_switches", 0))
_THREAD_TOTALS = ("parked_s", "spare_switches")  # counted from reset(), as the rest


class LoaderStats:
    """Accumulates per-batch waits, counts, bytes, per-stage seconds and worker busy time.

    ``record_batch`` is called by the batch producer; stages measured in the main process
    (``"collate"``, ``"transfer"``) are added with ``add_stage``. With ``log_every`` (seconds) a
    one-line summary goes to the ``fastload.loader`` logger at INFO level at most that often.
    """

    def __init__(self, *, log_every: float | None = None, clock: Callable[[], float] = time.perf_counter):
        if log_every is not None and not log_every > 0:
            raise ValueError(f"log_every must be a positive number of seconds or None, not {log_every!r}")
        self.log_every = log_every
        self._clock = clock
        self.num_workers = 0
        self._threads: Callable[[], dict[str, Any]] | None = None
        self.reset()

    def reset(self) -> None:
        """Forget everything measured so far (the worker count is kept)."""
        self.batches = 0
        self.samples = 0
        self.bytes = 0
        self.skipped = 0
        self.stall_s = 0.0
        self.first_batch_s: float | None = None
        self.busy_s = 0.0
        self.helped_s = 0.0
        self._threads_base = self._threads() if self._threads is not None else None
        self.stages: dict[str, float] = {}
        self._t0: float | None = None
        self._t_last = 0.0
        self._next_log = 0.0

    def set_workers(self, num_workers: int, threads: Callable[[], dict[str, Any]] | None = None) -> None:
        """How many workers produce batches (0: the consumer's own thread); divides busy time.
        ``threads``: the C worker threads' figures, read at each snapshot (NativePool.thread_stats)."""
        self.num_workers = int(num_workers)
        self._threads = threads
        self._threads_base = None

    def record_batch(self, wait_s: float, samples: int, nbytes: int, stages: dict[str, float] | None = None,
                     busy_s: float | None = None, helped: bool = False) -> None:
        """One delivered batch: the consumer waited ``wait_s`` for it; ``stages`` are the worker's
        per-stage seconds for it and ``busy_s`` its whole time on it (defaults to their sum);
        ``helped``: the consumer's thread gathered it while it waited (csrc/gather_pool_wait.c):
        its ``busy_s`` counts in ``helped_s`` as well as in the workers' busy time."""
        now = self._clock()
        if self._t0 is None:
            self._t0 = now - wait_s
            self.first_batch_s = wait_s
            if self.log_every is not None:
                self._next_log = now + self.log_every
        self._t_last = now
        self.batches += 1
        self.samples += samples
        self.bytes += nbytes
        self.stall_s += wait_s
        if stages:
            for name, s in stages.items():
                self.stages[name] = self.stages.get(name, 0.0) + s
            if busy_s is None:
                busy_s = sum(stages.values())
        self.busy_s += busy_s or 0.0
        if helped:
            self.helped_s += busy_s
        if self.log_every is not None and now >= self._next_log:
            self._next_log = now + self.log_every
            log.info("%s", self.format())

    def add_stage(self, name: str, seconds: float) -> None:
        """Time spent in a stage measured outside the workers (e.g. ``"transfer"`` to the GPU)."""
        self.stages[name] = self.stages.get(name, 0.0) + seconds

    def add_skipped(self, n: int = 1) -> None:
        """Records skipped by the ``on_error="skip"`` policy."""
        self.skipped += n

    def snapshot(self) -> dict[str, Any]:
        """Totals and rates so far, as plain numbers (JSON-ready)."""
        wall = (self._t_last - self._t0) if self._t0 is not None else 0.0
        per = (lambda x: x / wall) if wall > 0 else (lambda x: 0.0)
        workers = max(self.num_workers, 1)  # 0 workers: the consumer's thread does the work
        return {
            "batches": self.batches,
            "samples": self.samples,
            "bytes": self.bytes,
            "skipped": self.skipped,
            "wall_s": wall,
            "first_batch_s": self.first_batch_s,
            "stall_s": self.stall_s,
            "stall_pct": 100.0 * per(self.stall_s),
            "batches_per_s": per(self.batches),
            "samples_per_s": per(self.samples),
            "bytes_per_s": per(self.bytes),
            "stages": dict(self.stages),
            "num_workers": self.num_workers,
            "worker_busy_s": self.busy_s,
            "consumer_gather_s": self.helped_s,
            "worker_utilization": per(self.busy_s) / workers,
            # the C worker threads: how many run, park while the consumer gathers, are parked now,
            # their seconds parked and the times they were sent to park or run (zeros for other workers)
            **self._thread_figures(),
        }

    def _thread_figures(self) -> dict[str, Any]:
        if self._threads is None:
            return dict(_NO_THREADS)
        now = self._threads()
        if self._threads_base is not None:  # counted from the last reset
            for name in _THREAD_TOTALS:
                now[name] -= self._threads_base[name]
        return now

    def format(self) -> str:
        """One line: ``stall 3.1% | 812.4 batches/s | 52.0k samples/s | 213.0 MB/s | workers 41% busy``."""
        s = self.snapshot()
        return (f"stall {s['stall_pct']:.1f}% | {s['batches_per_s']:.1f} batches/s | "
                f"{s['samples_per_s'] / 1e3:.1f}k samples/s | {s['bytes_per_s'] / 1e6:.1f} MB/s | "
                f"workers {100 * s['worker_utilization']:.0f}% busy")
