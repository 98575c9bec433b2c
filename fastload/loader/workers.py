"""Produce whole batches on worker processes or threads, delivered in order from a ring of slots.

:class:`BatchProducer` is the loader's engine for fastload datasets: the caller hands it record
index arrays (batch ``k`` is the ``k``-th), workers gather each batch's fixed fields straight into
a shared-memory slot with the native gather, and the consumer gets :class:`ProducedBatch` views
of the slots, strictly in batch order whatever the workers' timing. A task reaches a worker
process as three integers, its indices through the slot's index array; only the small result
envelope (with any variable-size fields) is pickled.
"""

from __future__ import annotations

import weakref
from collections import deque
from dataclasses import dataclass, field, replace
from functools import partial
from time import perf_counter
from typing import Any, Iterable, Iterator

import numpy as np

from ..errors import WorkerError
from ..format.columns import VarColumn
from ..format.dataset import Dataset
from ..plan.epoch import EpochPlan
from .buffers import arena_bytes
from .config import WorkerConfig
from .failures import failure_exception
from .index_feeder import IndexFeeder
from .native_pool import OK, NativePool
from .pools import FATAL_STOP_S, STOP_S, ProcessPool, ThreadPool, get_context
from .slots import SlotRing
from .stats import LoaderStats
from .transport import ARENA_FIELD, Packed, leased, result_nbytes, unpack
from .worker_loop import INIT, POLL_S, ImageStage, open_worker_dataset, produce_batch, split_fields

__all__ = ["BatchProducer", "ProducedBatch", "WorkerConfig"]

WORKER_TYPES = ("process", "thread")
ON_ERROR = ("raise", "skip")
_END = object()
_INT64 = np.dtype(np.int64)
FEED_SAMPLES = 1 << 17  # a pure order drawn ahead by up to this many samples: two of the plan's chunks


@dataclass(slots=True)
class ProducedBatch:
    """One finished batch. ``fixed`` holds views of a slot: valid until the next batch is requested."""

    k: int  # batch number, in plan order
    slot: int
    n: int  # rows
    fixed: dict[str, np.ndarray]
    var: dict[str, VarColumn]
    timings: dict[str, float] = field(default_factory=dict)  # per-stage seconds in the worker
    worker: int = -1  # the worker that produced it; -1: the consumer's own thread
    collated: Any = None  # the user's collate_fn result (a process worker's: rebuilt from the slot, leased)

    @property
    def nbytes(self) -> int:
        return (sum(a.nbytes for a in self.fixed.values())
                + sum(_nbytes(c) for c in self.var.values()))


def _nbytes(col: Any) -> int:
    """Payload bytes of a column sent beside the slot: a VarColumn's data, an array, a padded or
    nullable column's values."""
    if isinstance(col, VarColumn):
        return col.data.nbytes
    return col.nbytes if isinstance(col, np.ndarray) else _nbytes(col.values)


class _State:
    """What the producer owns, kept apart from it so its finalizer can release everything."""

    def __init__(self, ring: SlotRing):
        self.ring = ring
        self.pool: ProcessPool | ThreadPool | NativePool | None = None
        self.dataset = None  # num_workers == 0: the consumer thread's own dataset
        self.fixed: list[str] = []
        self.var: list[str] = []
        self.images = None  # num_workers == 0: the consumer thread's ImageStage
        self.epoch = 0  # of the current run: keys the image augmentations
        self.free = deque(range(ring.n_slots))
        self.inflight: dict[int, int] = {}  # seq -> slot of every task whose slot is not free yet
        self.ready: dict[int, tuple] = {}  # seq -> envelope received, not yet delivered
        self.queued: deque = deque()  # a NativePool's tasks out, in batch order: (slot, indices)
        self.next_seq = 0  # tasks are numbered across runs, so a finished run's late results are told apart
        self.run_token: object | None = None
        self.run_base = 0  # seq of the current run's batch 0
        self.held: int | None = None  # slot of the batch the consumer holds
        self.leased: set[int] = set()  # slots whose collate results the consumer holds (until garbage)
        self.lease_limit = 1  # how many the consumer may hold at once: set by the producer
        self.closed = False
        self.stop_s = STOP_S  # how long closing waits for workers to stop on their own

    def end_run(self) -> None:
        """Give back the consumer's slot and the undelivered results; tasks still out become stale
        (their slots come back when their results arrive). A NativePool's tasks are waited for
        (each a copy: microseconds), and then every slot is free, whatever an interrupt left out
        of the bookkeeping (a signal handler may raise between any two steps of the consumer)."""
        if isinstance(self.pool, NativePool):
            if not self.closed:
                self.pool.drain()
            self.free.clear()
            self.free.extend(range(self.ring.n_slots))
            self.queued.clear()
            self.held = None
        if self.held is not None:
            self.free.append(self.held)
            self.held = None
        for seq in self.ready:
            self.free.append(self.inflight.pop(seq))
        self.ready.clear()
        self.run_token = None
        self.run_base = self.next_seq


def _release(state: _State, slot: int) -> None:
    """A leased batch is garbage: its slot takes tasks again."""
    state.leased.discard(slot)
    state.free.append(slot)


def _shutdown(state: _State) -> None:
    state.closed = True
    try:
        if state.pool is not None:
            state.pool.shutdown(state.stop_s)
    finally:
        state.ring.close()
        state.dataset = None


class BatchProducer:
    """Runs batch tasks on ``num_workers`` worker processes (or threads) and yields finished batches
    strictly in task order, reusing a ring of ``num_workers * prefetch_factor + 1`` shared-memory
    slots (2 with ``num_workers=0``, where batches are produced in the calling thread).

    Lifetime rule: a batch's ``fixed`` arrays are views of its slot, and the slot is recycled when
    the *next* batch is requested from the iterator. A consumer that keeps a batch beyond that must
    copy it. Variable fields (``var``) are the consumer's to keep.

    A worker that raises makes :meth:`run` raise at that batch: fastload errors as themselves,
    anything else as :class:`WorkerError` chained to the original, with the worker's traceback in a
    note; the workers stay up for the next :meth:`run`. A worker that dies, or (``timeout > 0``) a
    batch that takes longer than ``timeout`` seconds, raises :class:`WorkerError` and closes the
    producer. ``close()`` (also ``with`` and a finalizer) stops the workers and unlinks the slots.

    ``dataset``: the caller's open dataset of ``config``, read in place with ``num_workers=0`` and
    by C-thread workers (native_pool.py), so that blocks checked once stay checked.
    """

    def __init__(self, config: WorkerConfig, *, num_workers: int, worker_type: str = "process",
                 prefetch_factor: int = 2, timeout: float = 0, mp_context=None, on_error: str = "raise",
                 stats: LoaderStats | None = None, dataset: Dataset | None = None):
        if not isinstance(config, WorkerConfig):
            raise TypeError(f"config must be a WorkerConfig, not {type(config).__name__}")
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be a non-negative integer, not {num_workers!r}")
        if worker_type not in WORKER_TYPES:
            raise ValueError(f"worker_type must be one of {WORKER_TYPES}, not {worker_type!r}")
        if not isinstance(prefetch_factor, int) or prefetch_factor < 1:
            raise ValueError(f"prefetch_factor must be a positive integer, not {prefetch_factor!r}")
        if not timeout >= 0:
            raise ValueError(f"timeout must be a non-negative number of seconds, not {timeout!r}")
        if on_error not in ON_ERROR:  # skipping is decided by the caller, at the plan level
            raise ValueError(f"on_error must be one of {ON_ERROR}, not {on_error!r}")
        ctx = get_context(mp_context) if num_workers and worker_type == "process" else None
        self.num_workers = num_workers
        self.worker_type = worker_type
        self.prefetch_factor = prefetch_factor
        self.timeout = float(timeout)
        self.on_error = on_error
        self._stats = stats
        n_slots = num_workers * prefetch_factor + 1 if num_workers else 2
        ring = SlotRing(config.layout, n_slots)
        self._state = st = _State(ring)
        # the consumer's loop holds the previous batch while it asks for the next: leave the
        # workers every other slot
        st.lease_limit = max(1, n_slots - max(num_workers, 1) - 1)
        self._finalizer = weakref.finalize(self, _shutdown, st)
        self.config = config = replace(config, ring_name=ring.name)
        self._row_bytes = sum(config.layout.row_bytes(name) for name in config.layout.names)
        self._arena_bytes = arena_bytes(config.layout)  # str/bytes in the slot: count what they hold
        try:
            if num_workers == 0:
                # the caller's open dataset when given: its verified blocks carry over between runs
                st.dataset = dataset if dataset is not None else open_worker_dataset(config)
                st.fixed, st.var = split_fields(st.dataset, config.fields, config.layout, config.transforms)
                if config.transforms:
                    st.images = ImageStage(st.dataset, config.transforms, config.seed)
            elif worker_type == "process":
                st.pool = ProcessPool(config, num_workers, ring, ctx)
            else:  # C threads where they apply (fixed fields of raw local shards): native_pool.py
                st.pool = (NativePool.start(config, num_workers, ring, dataset, self.timeout)
                           or ThreadPool(config, num_workers, ring))
        except BaseException:
            self.close()
            raise
        if stats is not None:
            stats.set_workers(num_workers, st.pool.thread_stats if isinstance(st.pool, NativePool) else None)

    # -- introspection ---------------------------------------------------------------------
    @property
    def n_slots(self) -> int:
        return self._state.ring.n_slots

    @property
    def ring_name(self) -> str:
        return self._state.ring.name

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the worker processes (empty for threads and num_workers=0)."""
        pool = self._state.pool
        return pool.pids if pool is not None else []

    @property
    def closed(self) -> bool:
        return self._state.closed

    # -- iteration -------------------------------------------------------------------------
    def run(self, batches: Iterable[np.ndarray], epoch: int = 0, *, pure: bool = False,
            plan: EpochPlan | None = None) -> Iterator[ProducedBatch]:
        """Produce the batches of ``batches`` (record index arrays) and yield them in order.

        ``epoch`` keys the image augmentations of this run (with the seed and record index).
        ``pure``: drawing ``batches`` has no effect that depends on when it happens (the loader's
        own plan), so C worker threads may have them drawn ahead in a thread (index_feeder.py).
        ``plan``: the plan whose :meth:`~EpochPlan.batches` ``batches`` is, untouched: C worker
        threads then compute its full batches themselves (plan/batch_formula.py) and ``batches``
        is not drawn; other workers draw ``batches``.
        One run at a time: starting another abandons the previous one (its iterator then raises).
        The slot of each yielded batch is recycled when the next batch is requested.
        """
        st = self._state
        if st.closed:
            raise RuntimeError("this BatchProducer is closed")
        st.end_run()  # abandon a previous run that was not iterated to its end
        st.epoch = int(epoch)
        st.run_token = token = object()
        it = iter(batches)
        if isinstance(st.pool, NativePool):
            return self._run_native(it, token, pure, plan)
        return self._run_inline(it, token) if st.pool is None else self._run_pool(it, token)

    def _run_pool(self, it: Iterator, token: object) -> Iterator[ProducedBatch]:
        st, pool = self._state, self._state.pool
        ring, free, inflight, ready = st.ring, st.free, st.inflight, st.ready
        epochs = ring.task_epochs()
        workers = self.num_workers
        base, sent, k, exhausted = st.run_base, 0, 0, False
        try:
            while True:
                t_request = perf_counter()
                self._resume(token)
                seq = base + k
                while True:
                    while free and not exhausted:  # keep every free slot working
                        indices = next(it, _END)
                        if indices is _END:
                            exhausted = True
                            break
                        idx = self._indices(indices, sent)
                        s, slot = base + sent, free.popleft()
                        inflight[s] = slot
                        st.next_seq = s + 1
                        epochs[slot] = st.epoch  # read by the worker with the indices
                        pool.send(s % workers, (s, slot, idx))
                        sent += 1
                    env = ready.pop(seq, None)
                    if env is not None:
                        break
                    if k >= sent and exhausted:  # every batch delivered
                        return
                    if not inflight:  # every slot lost track of: only an interrupt mid-bookkeeping does this
                        raise RuntimeError("the producer lost its batch slots; close it and make a new one")
                    # Each worker answers its tasks in order: wait on batch seq's worker, or, while
                    # every slot is out on stale tasks of an abandoned run (seq not sent yet), on
                    # the worker of the oldest one, whose result frees a slot.
                    wid = (seq if k < sent else min(inflight)) % workers
                    self._receive(wid, k, t_request + self.timeout if self.timeout > 0 else None)
                _, wid, payload, failure = env
                slot = inflight.pop(seq)
                if failure is not None:
                    free.append(slot)
                    raise failure_exception(failure, pool.describe(wid), f"reading batch {k}")
                _, n, cols, timings, busy, skipped, collated = payload
                yield self._hand_out(k, slot, n, cols, timings, wid, t_request, busy, skipped, collated)
                k += 1
        finally:
            if st.run_token is token:
                st.end_run()

    def _run_native(self, it: Iterator, token: object, pure: bool, plan: EpochPlan | None) -> Iterator[ProducedBatch]:
        """:meth:`_run_pool` for a :class:`NativePool`: any thread takes the next task, so the
        batches are simply awaited in the order they were queued. A plan's full batches are
        queued by number (the threads compute their indices), the rest drawn from ``it``."""
        st, pool = self._state, self._state.pool
        batch_size = self.config.layout.batch_size
        counted = pool.use_formula(plan.formula()) if plan is not None else 0  # no task is out: end_run drained
        if counted:
            it, pure = plan.batches(first=counted), False  # the partial last batch, if any: nothing to draw ahead
        made = 0  # batches of the formula queued
        free, queued = st.free, st.queued
        timeout = self.timeout if self.timeout > 0 else -1.0
        # A consumer that must sleep for a batch sleeps until the next `ahead` are done: a wake-up
        # cost it 5-20 us of CPU on this 2-core VM (1 worker: 20 us a batch with ahead=1, 15 with
        # 2). The threads keep a task each (and one more where the ring has room) meanwhile, so
        # they do not run dry while it wakes.
        spare = st.ring.n_slots - self.num_workers  # tasks beyond one per thread
        ahead = max(1, min(spare, max(2, spare - 1)))
        k, exhausted = 0, False
        feeder = IndexFeeder(it, FEED_SAMPLES // batch_size, _END) if pure else None
        draw = feeder.take if feeder is not None else lambda: next(it, _END)
        rows = plan.batch_size if counted else 0
        stats, arrays, submit_batch, wait = self._stats, st.ring.arrays, pool.submit_batch, pool.wait
        row_bytes, arena_bytes = self._row_bytes, self._arena_bytes
        try:
            while True:  # the consumer's whole cost per batch: kept to plain steps (issue 17: <= 10 us)
                t_request = perf_counter()
                if st.closed or st.run_token is not token:
                    self._resume(token)  # raises
                if st.held is not None:
                    free.append(st.held)
                    st.held = None
                while made < counted and free:  # keep every free slot working
                    slot = free.popleft()
                    submit_batch(slot, made)
                    queued.append((slot, made))
                    made += 1
                while free and not exhausted and made == counted:
                    indices = draw()
                    if indices is _END:
                        exhausted = True
                        break
                    if type(indices) is not np.ndarray or indices.dtype != _INT64 or indices.ndim != 1 \
                            or len(indices) > batch_size:
                        indices = self._indices(indices, k + len(queued))
                    slot = free.popleft()
                    pool.submit(slot, indices)
                    queued.append((slot, indices))
                if not queued:
                    return
                slot, idx = queued[0]
                result = wait(slot, timeout, queued[min(ahead, len(queued)) - 1][0])
                if result is None:
                    self._fatal(WorkerError(f"DataLoader timed out after {self.timeout:g} seconds waiting for "
                                            f"batch {k} from the loader's worker threads"))
                queued.popleft()
                st.held = slot  # from here the slot is the consumer's: the next request frees it
                status, wid, _, _, busy = result
                n = rows if type(idx) is int else len(idx)
                if status == OK:  # _hand_out's steps for a batch that is all in its slot, inline
                    fixed, timings = arrays(slot, n), {"read": busy}
                    if stats is not None:  # wid < 0: the consumer gathered it while it waited
                        stats.record_batch(perf_counter() - t_request, n, n * row_bytes if arena_bytes is None
                                           else n * row_bytes + arena_bytes(fixed, {}), timings, busy, wid < 0)
                    yield ProducedBatch(k, slot, n, fixed, {}, timings, wid)
                else:  # gathered again in Python: its error, (negative indices) the batch, or a text field
                    if type(idx) is int:  # too large for its arena, sent beside the slot
                        idx = pool.formula_batch(idx, rows)
                    n, skipped, cols = pool.regather(st.ring, slot, idx, self.config, k, wid)
                    yield self._hand_out(k, slot, n, cols, {"read": busy}, wid, t_request, busy, skipped,
                                         helped=wid < 0)
                k += 1
        finally:
            if feeder is not None:
                feeder.close()
            if st.run_token is token:
                st.end_run()

    def _run_inline(self, it: Iterator, token: object) -> Iterator[ProducedBatch]:
        st = self._state
        k = 0
        try:
            while True:
                t_request = perf_counter()
                self._resume(token)
                indices = next(it, _END)
                if indices is _END:
                    return
                idx = self._indices(indices, k)
                slot = k % st.ring.n_slots
                n, cols, timings, skipped, collated = produce_batch(st.dataset, st.ring, slot, idx, st.fixed,
                                                                    st.var, self.config, images=st.images,
                                                                    epoch=st.epoch)
                yield self._hand_out(k, slot, n, cols, timings, -1, t_request, None, skipped, collated)
                k += 1
        finally:
            if st.run_token is token:
                st.end_run()

    def _hand_out(self, k: int, slot: int, n: int, cols: dict, timings: dict, worker: int, t_request: float,
                  busy: float | None, skipped: int, collated: Any = None, helped: bool = False) -> ProducedBatch:
        """Mark the slot as held by the consumer, record the batch in the stats (``helped``: the
        consumer gathered it while it waited), and wrap it."""
        self._state.held = slot
        fixed = self._state.ring.arrays(slot, n if collated is None else None)
        if type(collated) is Packed:
            collated = self._unpacked(slot, collated, fixed[ARENA_FIELD].reshape(-1))
        batch = ProducedBatch(k, slot, n, fixed, cols, timings, worker, collated)
        if self._stats is not None:
            if collated is not None:
                nbytes = result_nbytes(collated)
            else:
                nbytes = n * self._row_bytes if not cols else batch.nbytes
            if collated is None and self._arena_bytes is not None:
                nbytes += self._arena_bytes(fixed, cols)
            self._stats.record_batch(perf_counter() - t_request, n, nbytes, timings, busy, helped)
            if skipped:
                self._stats.add_skipped(skipped)
        return batch

    def _unpacked(self, slot: int, packed: Packed, arena: np.ndarray) -> Any:
        """A process worker's collate result, made from its slot: views of it on a lease (the slot
        takes tasks again once the batch is garbage, see transport.leased), or copies (the slot is
        recycled at the next request) while the consumer already holds ``lease_limit`` batches."""
        st = self._state
        if packed.spans is None or len(st.leased) >= st.lease_limit:
            return unpack(packed, arena)
        st.held = None
        st.leased.add(slot)
        return unpack(packed, leased(arena, partial(_release, st, slot)), copy=False)

    def _resume(self, token: object) -> None:
        """Checks on each request for the next batch; recycles the slot of the previous one."""
        st = self._state
        if st.closed:
            raise RuntimeError("this BatchProducer was closed during iteration")
        if st.run_token is not token:
            raise RuntimeError("this run was abandoned: run() was called again on the same BatchProducer")
        if st.held is not None:
            st.free.append(st.held)
            st.held = None

    def _indices(self, indices: Any, k: int) -> np.ndarray:
        if type(indices) is np.ndarray and indices.dtype == np.int64 and indices.ndim == 1:
            idx = indices  # a plan's batch, as it comes
        else:
            idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(idx) > self.config.layout.batch_size:
            raise ValueError(f"batch {k} holds {len(idx)} records; the slots hold "
                             f"batch_size={self.config.layout.batch_size}")
        return idx

    def _receive(self, wid: int, k: int, deadline: float | None) -> None:
        """Wait (bounded) for the next results of worker ``wid``; raise on a dead worker, a failed
        setup or the timeout."""
        st, pool = self._state, self._state.pool
        wait = POLL_S
        if deadline is not None:
            left = deadline - perf_counter()
            if left <= 0:
                self._fatal(WorkerError(f"DataLoader timed out after {self.timeout:g} seconds waiting for "
                                        f"batch {k} from {pool.describe(wid)}"))
            wait = min(wait, left)
        envelopes, dead = pool.receive(wid, wait)
        for env in envelopes:
            s = env[0]
            if s == INIT:
                self._fatal(failure_exception(env[3], pool.describe(env[1])))
            if s < st.run_base or st.run_token is None:  # a late result of an abandoned run
                st.free.append(st.inflight.pop(s))
            else:
                st.ready[s] = env
        if dead:
            w = dead[0]
            self._fatal(WorkerError(f"{pool.describe(w)} {pool.exit_status(w)} while the loader waited for "
                                    f"batch {k}"))

    def _fatal(self, exc: BaseException):
        """A worker is gone or stuck: release everything, then raise."""
        self._state.stop_s = FATAL_STOP_S  # a stuck worker is terminated rather than waited for
        self.close()
        raise exc

    # -- lifetime --------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the workers (joined with a timeout, then terminated), unlink the slots. Idempotent."""
        self._finalizer()

    def __enter__(self) -> "BatchProducer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.n_slots} slots"
        return (f"BatchProducer(num_workers={self.num_workers}, worker_type={self.worker_type!r}, "
                f"{state})")
