"""Build a packing index from document lengths: the settings, the lengths scan, the build itself.

The pure arithmetic is in :mod:`fastload.plan.packing` (NumPy, the reference); the build runs
Numba kernels: the lengths scan and a grid layout's stream bounds
(:mod:`fastload._kernels.packing_build`), best-fit's bin assignment
(:func:`fastload._kernels.packing.best_fit`). This module reads the document lengths of a
dataset (from its blocks' offset tables, read in place by one kernel pass per shard, without
touching a token) and runs the right builder.
"""

from __future__ import annotations

import _thread
import os
import threading
from dataclasses import asdict, dataclass

import numpy as np

from .._cpus import usable_cpus
from ..errors import FormatError, SchemaError
from ..format.dataset import Dataset
from ..format.files import open_regular
from ..format.local_shards import LocalShards
from ..format.record_sizes import read_record_sizes
from ..format.spec import VAR_OFFSET_DTYPE
from ..plan.document_order import DOC_SHUFFLES, GridOrder, layout_order
from ..plan.packing import POLICIES, TAILS, PackingIndex, assemble_bins, bounds_dtype, cut_index, split_documents

HUGE_PAGES_FROM = 4 << 20  # NumPy asks the kernel for huge pages (madvise) for arrays of this many bytes
HUGE_PAGE = 2 << 20  # x86-64's: a huge page backs only a 2 MiB-aligned stretch
MAX_THREADS = 4  # threads scanning shards and laying out a grid (kernels releasing the GIL)
# A thread per this many documents: helpers started without waiting for them (in_threads). On the
# shared 2-core VM, 1 M documents built in 6.1 / 6.9 / 6.8 ms (medians of 48 builds, interleaved
# runs at load ~1.5-3 from other work) in two threads against 6.8 / 7.5 / 7.8 ms in one; in one
# run at load ~3 (the other core taken) 8.3 against 7.9 ms; 2.5 M in 15.9 ms against 15.6.
# Threads started through threading (a pool's start 0.35-0.5 ms, a thread's 0.12-0.26 ms) lost.
DOCUMENTS_PER_THREAD = 500_000
STRETCHES_PER_THREAD = 4  # jobs per thread, so that a thread slowed by another process's work holds no one up
TOKEN_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")


@dataclass(frozen=True)
class PackingConfig:
    """What an index depends on besides the dataset (part of its cache key)."""

    field: str
    seq_len: int
    policy: str = "cut"
    tail: str = "drop"
    stride: int | None = None
    separator: bool = False  # a separator token follows each document (its value is not in the index)
    seed: int | None = 0  # document order: a keyed shuffle, or the dataset's order for None
    shuffle: str = "grid"  # how documents are shuffled (plan.packing.document_order)

    def __post_init__(self) -> None:
        if isinstance(self.seq_len, bool) or not isinstance(self.seq_len, (int, np.integer)) or self.seq_len < 1:
            raise ValueError(f"seq_len must be a positive integer, not {self.seq_len!r}")
        object.__setattr__(self, "seq_len", int(self.seq_len))
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, not {self.policy!r}")
        if self.tail not in TAILS:
            raise ValueError(f"tail must be one of {TAILS}, not {self.tail!r}")
        if self.stride is not None:
            if self.policy != "cut":
                raise ValueError("stride applies to policy 'cut' only")
            if not 1 <= int(self.stride) <= self.seq_len:
                raise ValueError(f"stride must be in [1, seq_len={self.seq_len}], not {self.stride!r}")
            object.__setattr__(self, "stride", int(self.stride))
        if self.seed is not None:
            object.__setattr__(self, "seed", int(self.seed))
        if self.shuffle not in DOC_SHUFFLES:
            raise ValueError(f"shuffle must be one of {DOC_SHUFFLES}, not {self.shuffle!r}")

    def to_json(self) -> dict:
        return asdict(self)


def token_field(ds, field: str):
    """The schema field holding documents: a 1-D variable-length integer array."""
    try:
        f = ds.schema[field]
    except KeyError:
        raise SchemaError(f"{ds!r} has no field {field!r} (fields: {ds.schema.names})") from None
    if f.kind != "array" or f.shape != (-1,) or f.dtype not in TOKEN_DTYPES:
        raise SchemaError(f"field {field!r} is {f.spec}: packing needs a variable-length integer array "
                          f"(e.g. uint16[-1] or int32[-1])")
    return f


def document_lengths(ds: Dataset, field: str) -> np.ndarray:
    """Tokens in each record's ``field`` (uint32): from the dataset's record sizes file when it
    has one to trust (:mod:`fastload.format.record_sizes`, written with the dataset), else from
    each block's table of offsets (no token is read).

    A variable column starts with ``records + 1`` little-endian u4 offsets; a block's lengths are
    their differences, computed by kernel passes over the tables: the raw shards of a local
    dataset have their tables read from the files, all shards in one kernel call per thread
    (:func:`_file_lengths`), others one call per shard (:func:`_offset_tables`). Offsets that do
    not start at 0, decrease or pass the block are a FormatError naming the shard and block.
    Blocks are not checksummed here: the lengths only plan windows, and every read of a window
    checks its stretches against the verified block it copies from.
    """
    f = token_field(ds, field)
    column = ds.schema.index(field)
    starts = np.concatenate([[0], np.cumsum(ds.manifest.shard_records, dtype=np.int64)])
    if starts[-1] != len(ds):
        raise FormatError(f"{ds.root}: the manifest's shards hold {int(starts[-1])} records, its total {len(ds)}")
    out = large_empty(len(ds), np.uint32)
    if read_record_sizes(ds, field, out) is not None:  # the counts written with the dataset
        return out
    readers = [ds.shard(s) for s in range(ds.n_shards)]  # each checked against the manifest's record count
    from_files = isinstance(ds.locator, LocalShards) and VAR_OFFSET_DTYPE.isnative
    in_files = [s for s, reader in enumerate(readers) if from_files and reader.all_raw]
    found = dict(zip(in_files, _file_lengths(ds, readers, in_files, column, field, starts, out)))
    in_memory = [s for s in range(ds.n_shards) if s not in found]
    found.update(zip(in_memory, in_threads(_shard_lengths, [(readers[s], column, field, out[starts[s]:starts[s + 1]])
                                                            for s in in_memory], len(ds))))
    for s in range(ds.n_shards):  # the first fault in dataset order
        status, where = found[s]
        if status == 1:
            raise FormatError(f"shard {readers[s].name} block {where}: field {field!r} holds offsets that decrease "
                              f"or pass the block (corrupt block)")
        if status == 2:
            raise SchemaError(f"{ds.locate(int(starts[s]) + where)}: field {field!r} holds a partial {f.dtype} token "
                              f"(not a whole number of {f.np_dtype.itemsize}-byte tokens)")
    return out


def _shard_lengths(reader, column: int, field: str, out: np.ndarray, path: str | None = None) -> tuple[int, int]:
    """A shard's lengths into ``out`` from its tables in memory (see :func:`_offset_tables`):
    block_lengths' (status, where)."""
    from .._kernels.packing_build import block_lengths

    words, table_at, payload = _offset_tables(reader, column, field, path)
    status, where, _ = block_lengths(words, table_at, reader.block_records, payload,
                                     reader.schema[field].np_dtype.itemsize, out)
    return status, where


def _file_lengths(ds: Dataset, readers: list, shards: list[int], column: int, field: str, starts: np.ndarray,
                  out: np.ndarray) -> list[tuple[int, int]]:
    """The lengths of raw local ``shards`` into ``out`` (dataset order), each block's table read
    from its file by :func:`fastload._kernels.packing_build.block_lengths` (one ``pread`` each):
    the blocks of all the shards in one kernel call, or in stretches of about equal records for
    :func:`in_threads`. Returns each shard's (status, where), ``where`` counted within the shard."""
    from .._kernels.packing_build import block_lengths

    if not shards:
        return []
    itemsize = ds.schema[field].np_dtype.itemsize
    places = [_table_places(readers[s], column, field) for s in shards]
    table_pos = np.concatenate([pos for pos, _ in places])
    payload = np.concatenate([rest for _, rest in places])
    records = np.concatenate([readers[s].block_records for s in shards])
    if not len(records):
        return [(0, -1)] * len(shards)
    first_block = np.cumsum([0] + [readers[s].n_blocks for s in shards])
    record_at = np.concatenate([starts[s] + readers[s].first_record for s in shards])  # dataset record of each block
    # stretches of about equal records for threads, cut also where the next shard is not the next
    # in the dataset (a call's out is one run)
    workers = thread_count(STRETCHES_PER_THREAD * MAX_THREADS, len(out))
    cuts = [0, len(records)]
    if workers > 1:
        even = np.linspace(0, len(out), STRETCHES_PER_THREAD * workers + 1)[1:-1]
        cuts += np.searchsorted(record_at - record_at[0], even).tolist()
    if shards[-1] - shards[0] + 1 != len(shards):
        cuts += first_block[1:-1][np.diff(shards) != 1].tolist()
    cuts = sorted(set(cuts))
    fds = np.empty(len(records), dtype=np.int32)
    opened = []
    try:
        for k, s in enumerate(shards):
            opened.append(open_regular(ds.locator.where(ds.manifest.shard_names[s])))
            fds[first_block[k]:first_block[k + 1]] = opened[-1]
        jobs = [(np.empty(int(records[a:b].max()) + 1, dtype=np.uint32), table_pos[a:b], records[a:b], payload[a:b],
                 itemsize, out[record_at[a]:record_at[b - 1] + records[b - 1]], fds[a:b])
                for a, b in zip(cuts[:-1], cuts[1:])]
        found = in_threads(block_lengths, jobs, len(out))
    finally:
        for fd in opened:
            os.close(fd)
    result: list[tuple[int, int] | None] = [None] * len(shards)
    for a, (status, where, _) in zip(cuts, found):  # stretches in dataset order
        if not status:
            continue
        block = a + where if status != 2 else int(np.searchsorted(record_at, record_at[a] + where, "right") - 1)
        k = int(np.searchsorted(first_block, block, "right") - 1)
        s = shards[k]
        if result[k] is not None:
            continue  # an earlier stretch named the shard's first fault
        if status == 3:  # a table not read whole: read them again, which names the fault
            result[k] = _shard_lengths(readers[s], column, field, out[starts[s]:starts[s + 1]],
                                       ds.locator.where(ds.manifest.shard_names[s]))
        else:
            result[k] = (status, block - int(first_block[k]) if status == 1 else int(record_at[a] + where - starts[s]))
    return [found_k or (0, -1) for found_k in result]


def large_empty(n: int, dtype) -> np.ndarray:
    """``np.empty(n, dtype)``; from a megabyte on, placed at a 2 MiB boundary of an allocation of at
    least 4 MiB, so that NumPy asks for huge pages (it does from 4 MiB) and they cover the whole
    array: a fresh 4 MB array of 1 M lengths took ~1,000 page faults (1.8 ms to fill), 465 when
    only its allocation was 4 MiB (1.1 ms), 2 so."""
    dtype = np.dtype(dtype)
    nbytes = n * dtype.itemsize
    if nbytes < HUGE_PAGE // 2:
        return np.empty(n, dtype=dtype)
    raw = np.empty(max(nbytes + 2 * HUGE_PAGE, HUGE_PAGES_FROM), dtype=np.uint8)  # the tail's huge page fits too
    skip = -raw.ctypes.data % HUGE_PAGE
    return raw[skip:skip + nbytes].view(dtype)


def thread_count(jobs: int, documents: int) -> int:
    """Threads for ``jobs`` kernel calls over ``documents`` documents: one per DOCUMENTS_PER_THREAD
    documents, at most one per CPU and MAX_THREADS, at least 1."""
    cpus = usable_cpus()
    return max(1, min(jobs, cpus, MAX_THREADS, documents // DOCUMENTS_PER_THREAD))


def in_threads(fn, jobs: list[tuple], documents: int) -> list:
    """``fn(*job)`` for every job, in :func:`thread_count` threads (for kernels that release the
    GIL): this one and helpers started for the call, each taking the next job left. This thread
    never waits for a helper to start (``threading.Thread.start`` does: 0.12-0.26 ms here, a
    pool's start 0.35-0.5 ms, longer when the other core is busy): it works through the jobs,
    and at the end waits only for those a helper has taken. Results in the jobs' order; the
    first job's exception is raised."""
    workers = thread_count(len(jobs), documents)
    if workers == 1:
        return [fn(*job) for job in jobs]
    results: list = [None] * len(jobs)
    errors: list[BaseException | None] = [None] * len(jobs)
    left = iter(range(len(jobs)))
    lock = threading.Lock()
    busy = [threading.Lock() for _ in range(workers - 1)]  # held by a helper while it runs a job

    def work(held: threading.Lock | None = None) -> None:
        while True:
            with lock:  # a job is taken and its helper marked busy at once
                k = next(left, None)
                if k is None:
                    return
                if held is not None:
                    held.acquire()
            try:
                results[k] = fn(*jobs[k])
            except BaseException as exc:  # raised below, in the caller's thread
                errors[k] = exc
            finally:
                if held is not None:
                    held.release()

    for held in busy:
        _thread.start_new_thread(work, (held,))
    work()
    for held in busy:  # every job is taken: wait for those still running in helpers
        with held:
            pass
    for exc in errors:
        if exc is not None:
            raise exc
    return results


def _offset_tables(reader, column: int, field: str, path: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u4 words, where each block's offset table of ``column`` starts in them, the payload bytes
    after each table).

    Raw blocks of a local shard (``path``) are read with one ``preadv`` per table (the fallback of
    :func:`_file_lengths`, which reads them in a kernel; touching them through a fresh map cost
    10-12 ms of page faults at 2.5 M documents, one per block); other raw blocks are read in
    place in the map when their tables are 4-byte aligned (the writer aligns them); compressed
    blocks' tables are copied out.
    """
    table_bytes = (reader.block_records + 1) * VAR_OFFSET_DTYPE.itemsize
    start = reader.col_offsets64[:, column]
    where, payload = _table_places(reader, column, field)
    at = np.concatenate([[0], np.cumsum(table_bytes)])
    if reader.all_raw and path is not None:
        return _read_tables(path, where, at, reader.name), at[:-1] // 4, payload
    if reader.all_raw and VAR_OFFSET_DTYPE.isnative and reader.buf.ctypes.data % 4 == 0 and not np.any(where % 4):
        return reader.buf[:len(reader.buf) // 4 * 4].view(np.uint32), where // 4, payload
    tables = np.empty(int(at[-1]), dtype=np.uint8)
    for b in range(reader.n_blocks):
        block = reader.raw_block(b) if not reader.all_raw else reader.buf[reader.block_offset[b]:]
        tables[at[b]:at[b + 1]] = block[start[b]:start[b] + table_bytes[b]]
    return tables.view(VAR_OFFSET_DTYPE).astype(np.uint32), at[:-1] // 4, payload


def _table_places(reader, column: int, field: str) -> tuple[np.ndarray, np.ndarray]:
    """(where each block's offset table of ``column`` starts in the shard, the payload bytes
    after it), after checking that each table lies within its block."""
    table_bytes = (reader.block_records + 1) * VAR_OFFSET_DTYPE.itemsize
    start = reader.col_offsets64[:, column]
    if np.any(start + table_bytes > reader.block_raw_size):
        b = int(np.argmax(start + table_bytes > reader.block_raw_size))
        raise FormatError(f"shard {reader.name} block {b}: field {field!r}'s offsets run past the block")
    return reader.block_offset + start, reader.block_raw_size - start - table_bytes


def _read_tables(path: str, where: np.ndarray, at: np.ndarray, name: str) -> np.ndarray:
    """The byte ranges ``[where[b], where[b] + at[b + 1] - at[b])`` of the file, back to back, as u4."""
    tables = np.empty(int(at[-1]), dtype=np.uint8)
    view = memoryview(tables)
    fd = open_regular(path)
    try:
        for pos, lo, hi in zip(where.tolist(), at[:-1].tolist(), at[1:].tolist()):
            if os.preadv(fd, [view[lo:hi]], pos) != hi - lo:
                raise FormatError(f"shard {name}: ended while its offset tables were read (truncated?)")
    finally:
        os.close(fd)
    words = tables.view(VAR_OFFSET_DTYPE)
    return words.view(np.uint32) if words.dtype.isnative else words.astype(np.uint32)


def grid_bounds(lengths: np.ndarray, order: GridOrder, separator: int) -> np.ndarray:
    """The stream bounds of documents laid out in a grid order: each piece's tokens (and
    separator) laid in its place by kernels walking stretches of grid rows in threads (they
    release the GIL), then summed in place; no order array is made. At 2.5 M documents 3.5 ms in
    one thread, 2.7 ms in two, against 8-10 ms + 0.8 ms for the column-by-column walk it replaced
    (a cache miss per document) and its column totals."""
    from .._kernels.packing_build import lay_grid, running_sum

    lengths = _u4_lengths(lengths)
    cells = large_empty(order.n + 1, np.uint32)  # each piece's tokens at its place + 1, then summed in place
    cells[0] = 0
    pieces = order.column_pieces()
    # in threads, more stretches than threads, so a thread slowed by another process's work does
    # not hold the rest up; in one thread, one kernel call
    workers = thread_count(STRETCHES_PER_THREAD * MAX_THREADS, order.n)
    cuts = np.linspace(0, order.rows, (STRETCHES_PER_THREAD * workers if workers > 1 else 1) + 1).astype(np.int64)
    fits = in_threads(lay_grid, [(lengths, order.row_order, pieces, order.full_cols, order.partial_at, separator, a, b,
                                  cells[1:]) for a, b in zip(cuts[:-1], cuts[1:])], order.n)
    if not all(fits):
        raise ValueError("a document of 2**32 - 1 tokens with a separator: over the index's 32-bit lengths")
    total = running_sum(cells)
    if bounds_dtype(total) == np.int32:
        return cells.view(np.int32)
    # the sums' low 32 bits: their differences, wrapping, are the pieces' tokens again
    bounds = np.zeros(order.n + 1, dtype=np.int64)
    np.cumsum(np.diff(cells), dtype=np.int64, out=bounds[1:])
    return bounds


def _u4_lengths(lengths: np.ndarray) -> np.ndarray:
    """Lengths as u4 (document_lengths' own dtype, passed as is), after checking other dtypes' range."""
    lengths = np.asarray(lengths)
    if lengths.dtype == np.uint32:
        return lengths
    if lengths.dtype.kind not in "iu" or (len(lengths) and (lengths.min() < 0 or lengths.max() > np.iinfo(np.uint32).max)):
        raise ValueError(f"document lengths must be integers in [0, 2**32), not {lengths.dtype} values")
    return lengths.astype(np.uint32)


def build_index(lengths: np.ndarray, config: PackingConfig) -> PackingIndex:
    """The packing index of documents with these token counts."""
    lengths = np.asarray(lengths)
    order = layout_order(len(lengths), config.seed, config.shuffle)
    if config.policy == "cut":
        bounds = grid_bounds(lengths, order, int(config.separator)) if isinstance(order, GridOrder) else None
        return cut_index(lengths, config.seq_len, order=order, separator=config.separator,
                         tail=config.tail, stride=config.stride, bounds=bounds)
    from .._kernels.packing import best_fit

    order = order.docs(np.arange(order.n, dtype=np.int64))
    sizes, which, lo, hi = split_documents(lengths, config.seq_len, order=order, separator=config.separator)
    placed = np.argsort(-sizes, kind="stable")  # decreasing; equal sizes keep the document order
    bin_of = np.empty(len(sizes), dtype=np.int64)
    n_bins = best_fit(sizes[placed], config.seq_len, bin_of)
    return assemble_bins(config.seq_len, bin_of, n_bins, which[placed], lo[placed], hi[placed],
                         lengths, order, config.separator)
