"""Thread workers in C for the common case: fixed and text fields of a local dataset of raw shards.

Python worker threads cost two hand-offs per batch (a task queue and a result queue, each a
wake-up and a GIL hand-over): on this project's 2-core machine 17-28 us of workers' CPU and
16-27 us of the consumer's per 64 x 4 KB batch, against a ~44 us copy, so that 2 workers
delivered 0.55x of what 2 NumPy threads gather (docs/benchmarks.md). Here the workers are C
threads (``fastload._gather_pool``) that never take the GIL: the consumer queues ``(slot,
indices)``, a thread runs the same bounds-checked gather as :meth:`Dataset.gather` into the slot
and checksums each block the first time a batch reads it, and the consumer sleeps only when the
batch it asks for is not done and no queued batch is left for it to gather itself (with fewer
threads than cores; with as many or more, while its time between batches is on the CPU, and then
the last threads park, so that at most ``cores`` gather at once; else it takes only the batch it
waits for, when no thread has taken it: csrc/gather_pool_seats.c). The loader's
own full-shuffle and sequential plans are queued by batch number, their indices computed by the
threads (plan/batch_formula.py, csrc/keyed_order.h). A str/bytes field without nulls goes into its
arena of the slot, as the Python workers write it (buffers.py). A batch that fails in C (an index
out of range, a read outside a block, a corrupt block, text too large for its arena) is gathered
again in Python (:func:`~.worker_loop.produce_batch`), which raises the error
:meth:`Dataset.gather` raises (or, with ``on_error="skip"``, replaces the records; or sends the
text beside the slot).

Loaders outside this case (process workers, variable-size arrays, text with nulls, image fields, a ``collate_fn``,
``worker_init_fn``, padded fields, remote or compressed datasets, packed sequences and mixtures)
keep the Python workers of :mod:`.pools`.
"""

from __future__ import annotations

import numpy as np

from .._cpus import usable_cpus
from .._gather_pool import GatherPool
from ..format.mapped_gather import MappedFields, map_fields
from ..plan.batch_formula import BatchFormula
from .buffers import arena_name
from .config import WorkerConfig
from .slots import SlotRing
from .failures import failure_exception, pack_failure
from .worker_loop import open_worker_dataset, produce_batch, split_fields

OK = 0  # a task's status from GatherPool.wait; anything else: the batch is gathered again in Python


class NativePool:
    """``num_workers`` C threads gathering batch tasks into the ring's slots, any thread any task."""

    def __init__(self, ds, mapped: MappedFields, fixed: list[str], var: list[str], ring: SlotRing, num_workers: int,
                 timeout: float = 0.0):
        self.dataset = ds  # keeps every shard mapped while the threads read them
        self.mapped = mapped
        self.fixed, self.var = fixed, var
        self.num_workers = num_workers
        # with fewer threads than cores, a consumer that would sleep for its batch gathers queued
        # ones itself: 1 thread on 2 cores went from 1.35 to 2.0 M samples/s (docs/benchmarks.md).
        # With as many or more, at most `cores` gather at once, the helping consumer counted: the
        # last threads park while it helps, which it does while its time between batches is on the
        # CPU (csrc/gather_pool_seats.c; 2 threads on 2 cores: 2.2 -> 2.7 M). A consumer with a
        # timeout never gathers (a copy cannot be cut short): then every thread runs.
        cores = usable_cpus()
        self.gather = GatherPool(num_workers, ring.n_slots, ring.layout.batch_size, consumer_helps=num_workers < cores,
                                 seats=cores if timeout <= 0 else 0)
        self.gather_batch_size = ring.layout.batch_size
        t = mapped.tables
        slots = [ring.arrays(slot) for slot in range(ring.n_slots)]
        self.gather.configure(mapped.starts, t.shard_lo, t.shard_hi, t.block_first, t.block_lo, t.block_hi,
                              # a str/bytes field (itemsize 0) goes into its arena (buffers.py), as the Python gather's
                              [(addr, itemsize, [views[name if itemsize else arena_name(name)] for views in slots])
                               for name, addr, itemsize in mapped.columns],
                              t.verified.view(np.uint8), mapped.checksums)
        # the C methods themselves, without a Python call around them (the consumer's cost per batch):
        # submit(slot, indices) queues a task; wait(slot, timeout, also) returns the slot's
        # (status, worker, position, field, busy seconds), or None after timeout seconds (< 0: no
        # limit), sleeping, if it must, until slot also's task is done too
        self.submit = self.gather.submit
        self.wait = self.gather.wait
        # submit_batch(slot, k): queue batch k of the formula set by use_formula, whose indices the
        # thread computes (csrc/keyed_order.h) before gathering it
        self.submit_batch = self.gather.submit_batch

    def use_formula(self, formula: BatchFormula | None) -> int:
        """Let the threads compute ``formula``'s batches (plan/batch_formula.py); returns how many
        (0: none, for no formula or one wider than the slots). Only while no task is out."""
        if formula is None or formula.batch_size > self.gather_batch_size:
            return 0
        f = formula
        self.gather.set_order(f.count, f.batch_size, f.base, f.global_batch, f.nodes, f.n, f.pad, f.keys, f.low,
                              f.high)
        return f.count

    def regather(self, ring: SlotRing, slot: int, idx: np.ndarray, config: WorkerConfig, k: int,
                 wid: int) -> tuple[int, int, dict]:
        """Gather a batch the C threads refused again, in Python, into its slot: raise its error
        as a worker's, or skip its unreadable records, or (negative indices, text too large for
        its arena) deliver it; returns rows, records skipped and the columns sent beside the slot."""
        try:
            n, cols, _, skipped, _ = produce_batch(self.dataset, ring, slot, idx, self.fixed, self.var, config)
        except Exception as failed:
            raise failure_exception(pack_failure(failed, "", pickled=False), self.describe(wid),
                                    f"reading batch {k}")
        return n, skipped, cols

    def formula_batch(self, k: int, batch_size: int) -> np.ndarray:
        """Batch k of the formula in use, as its tasks computed it."""
        out = np.empty(batch_size, dtype=np.int64)
        self.gather.order_batch(k, out)
        return out

    @classmethod
    def start(cls, config: WorkerConfig, num_workers: int, ring: SlotRing, dataset=None,
              timeout: float = 0.0) -> "NativePool | None":
        """The pool for this loader, or None when it needs Python workers (see the module doc).

        ``dataset``: the caller's open dataset of ``config`` (the loader's own), read in place so
        that the blocks checked in one epoch stay checked in the next; else one is opened.
        ``timeout``: the loader's (> 0: the consumer never gathers, so no thread parks)."""
        if (config.worker_init_fn is not None or config.transforms or config.collate_fn is not None
                or config.pad or config.dataset_spec is not None):
            return None
        try:
            ds = dataset if dataset is not None else open_worker_dataset(config)
            fixed, var = split_fields(ds, config.fields, config.layout)
        except Exception:  # the Python workers report it, naming the step that failed
            return None
        if any(arena_name(name) not in config.layout.names for name in var):  # arrays of variable size
            return None
        mapped = map_fields(ds, fixed + var)  # str/bytes fields without nulls: into their arenas
        if mapped is None:
            return None
        return cls(ds, mapped, fixed, var, ring, num_workers, timeout)

    @property
    def pids(self) -> list[int]:
        return []

    def thread_stats(self) -> dict[str, int | float]:
        """The C threads, for ``LoaderStats``: how many run, how many of them park while the
        consumer gathers in their place (spares), how many are parked now, their seconds parked in
        all, and how often the spares were sent to park or to run."""
        spares, _, parked, parked_s, switches = self.gather.seats
        return {"worker_threads": self.gather.threads, "spare_threads": spares, "parked_threads": parked,
                "parked_s": parked_s, "spare_switches": switches}

    def describe(self, wid: int) -> str:
        # -1: a task the consumer ran itself while it waited (csrc/gather_pool.c, wait_for)
        return f"loader worker thread {wid}" if wid >= 0 else "loader worker thread task (run in the loader's own thread)"

    def drain(self) -> None:
        """Wait for every task out (each a copy of at most a batch); their results are dropped."""
        self.gather.drain(-1.0)

    def shutdown(self, stop_s: float = 0.0) -> None:
        """Stop and join the threads (each ends its current copy first: microseconds)."""
        self.gather.close()
