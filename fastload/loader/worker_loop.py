"""What runs inside a loader worker: open the dataset, gather each batch task into its slot.

The entry points are plain module-level functions taking picklable values (a frozen config,
queues or pipe ends, an event), so process workers start the same way under fork, spawn and
forkserver. A worker sends one envelope per task, ``(seq, worker_id, payload, failure)``: a
finished batch's payload, or a failure carrying the exception (pickled for processes) and the
worker's traceback text. Setup failures are sent with ``seq == INIT`` and end the worker.
"""

from __future__ import annotations

import os
import queue
import random
import selectors
import signal
import sys
from time import perf_counter
from typing import Callable

import numpy as np

from ..errors import FormatError, RecordDecodeError
from ..format.dataset import Dataset
from ..opening import open_dataset
from .buffers import gather_fields, without_arenas
from .collate import pad_columns, rows_of
from .config import WorkerConfig
from .failures import pack_failure
from .frames import FrameReader, result_frame, write_all
from .slots import SlotLayout, SlotRing
from .transport import ARENA_FIELD, pack

INIT = -1  # the seq of a setup failure (worker_init_fn, opening the dataset, attaching the ring)
POLL_S = 0.2  # how often an idle worker checks the stop event and whether its parent is alive

Envelope = tuple  # (seq, worker_id, payload | None, failure | None)


def split_fields(ds: Dataset, fields: tuple[str, ...] | None, layout: SlotLayout,
                 transforms: dict | None = None) -> tuple[list[str], list[str]]:
    """The fixed fields (gathered into slots) and the variable ones (sent along) of a task.

    Image fields with ``transforms`` are in neither list: :class:`ImageStage` writes them. Checks
    that ``layout`` is the slot layout of these fields, so a mismatch is one clear error at setup
    rather than a shape error in every batch.
    """
    transforms = transforms or {}
    names = ds.schema.names if fields is None else list(fields)
    if ARENA_FIELD in layout.names:  # a collate_fn's loader: every field is gathered fresh, none into the slot
        return [], names
    images = {n: (p.dtype, p.shape) for n, p in transforms.items()}
    expected = SlotLayout.for_dataset(ds.schema, layout.batch_size, names, images)
    if set(expected.fields) != set(without_arenas(layout).fields):  # arenas: str/bytes fields (buffers.py)
        raise ValueError(f"the slot layout {layout.fields} does not match the fixed fields of the dataset "
                         f"at {ds.root}: {expected.fields}")
    fixed = [n for n in expected.names if n not in transforms]
    var = [n for n in names if not ds.schema[n].is_dense and n not in transforms]
    return fixed, var


class ImageStage:
    """The image fields a worker decodes and transforms into its slots: one decoder per field."""

    def __init__(self, ds: Dataset, transforms: dict, seed: int):
        from ..image.batch import BatchImageDecoder  # Numba: only loaders with transforms pay

        self.decoders = {name: BatchImageDecoder(p, name) for name, p in transforms.items()}
        self.seed = seed
        self.locate = ds.locate  # the shard's path, or its URL for a remote dataset, and the record in it

    @property
    def names(self) -> list[str]:
        return list(self.decoders)

    def run(self, ds: Dataset, indices: np.ndarray, epoch: int, out: dict[str, np.ndarray],
            timings: dict[str, float]) -> None:
        cols = ds.gather(indices, self.names)
        for name, dec in self.decoders.items():
            col = cols[name]
            dec.run(col.data, col.offsets, indices, self.seed, epoch, out[name], self.locate, timings)

    def check(self, ds: Dataset, index: int, epoch: int) -> None:
        """Raise RecordDecodeError when record ``index``'s images do not go through :meth:`run`
        (the same decode, at the same DCT factor, as in a batch of ``epoch``)."""
        cols = ds.gather(np.array([index], dtype=np.int64), self.names)
        for name, dec in self.decoders.items():
            col = cols[name]
            dec.check(col.data[col.offsets[0]:col.offsets[1]].tobytes(), index, self.seed, epoch, self.locate)


def gather_into_slot(ds: Dataset, ring: SlotRing, slot: int, indices: np.ndarray,
                     fixed: list[str], var: list[str], on_error: str = "raise", *,
                     images: ImageStage | None = None, epoch: int = 0) -> tuple[int, dict, dict[str, float], int]:
    """Gather one batch: fixed fields straight into ``slot``, variable ones as VarColumns, image
    fields decoded and transformed into ``slot`` (augmentations keyed by ``epoch``).

    Returns rows, variable columns, stage timings and the number of records skipped (replaced)
    under ``on_error="skip"``; a record whose image does not decode counts as unreadable.
    """
    t0 = perf_counter()
    n = len(indices)
    skipped = 0
    timings: dict[str, float] = {}
    try:
        cols = _gather(ds, ring, slot, indices, fixed, var, images, epoch, timings)
    except (FormatError, RecordDecodeError):
        if on_error != "skip":
            raise
        check = (lambda i: images.check(ds, i, epoch)) if images is not None else None
        indices, skipped = readable_indices(ds, indices, fixed + var + (images.names if images else []), check)
        timings.clear()
        cols = _gather(ds, ring, slot, indices, fixed, var, images, epoch, timings)
    # stages add up to the batch's time: "read" is what decode and resize leave
    timings["read"] = perf_counter() - t0 - timings.get("decode", 0.0) - timings.get("resize", 0.0)
    return n, cols, timings, skipped


def produce_batch(ds: Dataset, ring: SlotRing, slot: int, indices: np.ndarray, fixed: list[str],
                  var: list[str], config: WorkerConfig, *, images: ImageStage | None = None,
                  epoch: int = 0) -> tuple[int, dict, dict[str, float], int, object]:
    """One batch task: :func:`gather_into_slot` and the padding, or, with a ``collate_fn``, the
    rows gathered into fresh arrays (a result never aliases a slot that is reused) and collated.
    Returns rows, variable columns, stage timings, records skipped and the collated result."""
    if config.collate_fn is None:
        n, cols, timings, skipped = gather_into_slot(ds, ring, slot, indices, fixed, var, config.on_error,
                                                     images=images, epoch=epoch)
        return n, pad_columns(cols, ds.schema, config.pad) if config.pad else cols, timings, skipped, None
    t0 = perf_counter()
    names = var  # split_fields puts every field there for a collate_fn
    skipped = 0
    try:
        cols = ds.gather(indices, names)
    except (FormatError, RecordDecodeError):
        if config.on_error != "skip":
            raise
        indices, skipped = readable_indices(ds, indices, names)
        cols = ds.gather(indices, names)
    t1 = perf_counter()
    collated = config.collate_fn(rows_of(ds.schema, cols, names))
    return len(indices), {}, {"read": t1 - t0, "collate": perf_counter() - t1}, skipped, collated


def _gather(ds: Dataset, ring: SlotRing, slot: int, indices: np.ndarray, fixed: list[str], var: list[str],
            images: ImageStage | None = None, epoch: int = 0, timings: dict | None = None):
    out = ring.arrays(slot, len(indices))
    if images is not None:
        images.run(ds, indices, epoch, out, timings if timings is not None else {})
    return gather_fields(ds, indices, fixed, var, out)  # fixed fields and str/bytes arenas in the slot


def readable_indices(ds: Dataset, indices: np.ndarray, fields: list[str],
                     check: Callable[[int], None] | None = None) -> tuple[np.ndarray, int]:
    """Replace each unreadable record by the next readable one in dataset order (wrapping).

    A record is readable when it gathers and ``check(index)`` (the image decode) does not raise.
    Deterministic (it depends on the data alone, not on timing or workers), so a rerun or a
    resumed run skips the same records, and batches stay full. Only batches that failed come
    here, one record at a time.
    """
    n_total = len(ds)
    out = np.array(indices, dtype=np.int64, copy=True)
    skipped = 0
    for pos, i in enumerate(out.tolist()):
        for step in range(n_total):
            candidate = (i + step) % n_total
            try:
                ds.gather(np.array([candidate], dtype=np.int64), fields)
                if check is not None:
                    check(candidate)
            except (FormatError, RecordDecodeError):
                continue
            if step:
                skipped += 1
                out[pos] = candidate
            break
        else:
            raise FormatError(f"{ds.root}: no readable record left to replace record {i}")
    return out, skipped


def open_worker_dataset(config: WorkerConfig):
    """The worker's own copy of the dataset: reopened from its spec, or by URL."""
    if config.dataset_spec is not None:
        return config.dataset_spec.open()
    return open_dataset(config.dataset_root, **config.dataset_options)


def _describe_fn(fn: Callable) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


class SetupError(Exception):
    """A worker could not start: ``where`` says at which step, ``exc`` what was raised."""

    def __init__(self, where: str, exc: BaseException):
        super().__init__(where)
        self.where, self.exc = where, exc


def _setup(config: WorkerConfig, worker_id: int, ring: SlotRing | None, n_slots: int):
    """Run worker_init_fn, open the dataset, attach the ring; returns them or raises SetupError."""
    where = "seeding the worker"
    try:
        if ring is None:  # a process: seed its global RNGs the way torch's DataLoader does
            _seed(config.seed + worker_id)
        if config.worker_init_fn is not None:
            where = f"worker_init_fn {_describe_fn(config.worker_init_fn)}({worker_id})"
            config.worker_init_fn(worker_id)
        where = f"opening the dataset {config.dataset_root}"
        ds = open_worker_dataset(config)
        fixed, var = split_fields(ds, config.fields, config.layout, config.transforms)
        images = ImageStage(ds, config.transforms, config.seed) if config.transforms else None
        if ring is None:
            where = f"attaching the batch slots {config.ring_name!r}"
            ring = SlotRing(config.layout, n_slots, create=False, name=config.ring_name)
    except BaseException as exc:  # reported to the main process, which raises it
        raise SetupError(where, exc) from None
    return ds, ring, fixed, var, images


def _serve(ds: Dataset, ring: SlotRing, worker_id: int, fixed: list[str], var: list[str],
           next_task: Callable[[float], tuple | None], send: Callable[[Envelope], None], stop,
           pickled: bool, config: WorkerConfig, images: ImageStage | None = None) -> None:
    """Gather tasks until ``next_task`` gives ``None`` or the stop event is set.

    ``next_task(timeout)`` returns ``(seq, slot, indices)``, ``None`` to stop, or raises
    ``queue.Empty`` when nothing came within ``timeout`` seconds. A task's epoch is in the ring
    (``task_epochs``), written by the producer with its indices.
    """
    while not stop.is_set():
        try:
            task = next_task(POLL_S)
        except queue.Empty:
            continue
        if task is None:
            return
        seq, slot, indices = task
        t0 = perf_counter()
        try:
            epoch = int(ring.task_epochs()[slot]) if images is not None else 0
            n, cols, timings, skipped, collated = produce_batch(ds, ring, slot, indices, fixed, var, config,
                                                                images=images, epoch=epoch)
            if pickled and config.collate_fn is not None:
                collated = pack(collated, ring.arrays(slot)[ARENA_FIELD].reshape(-1))
            msg = (seq, worker_id, (slot, n, cols, timings, perf_counter() - t0, skipped, collated), None)
        except Exception as exc:
            msg = (seq, worker_id, None, pack_failure(exc, "", pickled=pickled))
        send(msg)


def _pipe_tasks(conn, ring: SlotRing, parent_pid: int) -> Callable[[float], tuple | None]:
    """Tasks of a worker process: ``(seq, slot, n)`` frames on its pipe, the indices in the slot's
    index array (written by the producer before sending, untouched until the result is delivered).
    One read takes every task waiting in the pipe."""
    selector = selectors.DefaultSelector()  # one for the worker's life: cheaper than conn.poll()
    selector.register(conn, selectors.EVENT_READ)
    reader = FrameReader(conn.fileno())
    frames = reader.frames

    def next_task(timeout: float) -> tuple | None:
        try:
            while not frames:  # (a read may end inside a frame: its rest is on its way)
                if not selector.select(timeout):
                    if os.getppid() != parent_pid:
                        return None  # orphaned: the main process is gone
                    raise queue.Empty
                reader.fill()
        except (EOFError, OSError):
            return None  # the producer closed the pipe
        task = frames.popleft()
        if task is None:
            return None  # stop
        seq, slot, n = task
        return seq, slot, ring.indices(slot)[:n]

    return next_task


def _seed(seed: int) -> None:
    """Seed the global RNGs of a worker process the way torch's DataLoader does."""
    seed %= 2**64
    random.seed(seed)
    np.random.seed(np.random.SeedSequence(seed).generate_state(1)[0])
    torch = sys.modules.get("torch")
    if torch is not None:  # only when already imported: importing torch costs seconds
        torch.manual_seed(seed)
        # one intra-op thread, as in torch's own workers: a collate_fn's tensor ops in a forked
        # worker with the parent's thread count ran 10x slower (2.8 s against 0.28 s an epoch here)
        torch.set_num_threads(1)


def process_worker(config: WorkerConfig, worker_id: int, n_slots: int, tasks, results, stop) -> None:
    """Entry point of a worker process: ``tasks`` the read end and ``results`` the write end of
    this worker's own pipes (so a worker that dies mid-message is an EOF, never a hang)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked by the parent over fork
    parent = os.getppid()
    ring = None

    results_fd = results.fileno()

    def send(msg: Envelope) -> None:  # a collate result is already packed into its slot
        write_all(results_fd, result_frame(msg))

    try:
        try:
            ds, ring, fixed, var, images = _setup(config, worker_id, None, n_slots)
        except SetupError as failed:
            send((INIT, worker_id, None, pack_failure(failed.exc, failed.where, pickled=True)))
            return
        _serve(ds, ring, worker_id, fixed, var, _pipe_tasks(tasks, ring, parent), send, stop, True,
               config, images)
    except (BrokenPipeError, EOFError, ConnectionError):
        pass  # the main process closed our pipe: it is shutting down
    finally:
        if ring is not None:
            ring.close()
        results.close()
        tasks.close()


def thread_worker(config: WorkerConfig, worker_id: int, ring: SlotRing, tasks: queue.Queue,
                  results: queue.Queue, stop) -> None:
    """Entry point of a worker thread: same protocol, writing into the owner's ring."""
    try:
        ds, ring, fixed, var, images = _setup(config, worker_id, ring, ring.n_slots)
    except SetupError as failed:
        results.put((INIT, worker_id, None, pack_failure(failed.exc, failed.where, pickled=False)))
        return
    try:
        _serve(ds, ring, worker_id, fixed, var, lambda timeout: tasks.get(timeout=timeout), results.put,
               stop, False, config, images)
    except BaseException as exc:  # a bug in the loop itself: report it rather than vanish
        results.put((INIT, worker_id, None, pack_failure(exc, "serving tasks", pickled=False)))
