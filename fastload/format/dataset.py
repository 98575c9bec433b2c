"""Open a dataset and read records: one at a time, or a whole batch through the native gather.

Opening reads only the manifest (O(shards)); a shard is mapped the first time a record in it is
asked for. A batch is read by computing every requested value's address with vectorised NumPy
and copying them with one C call per field (``fastload._native``), so the cost per record is a
few nanoseconds of index arithmetic and the copy itself.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .. import _native
from .._sizes import parse_size
from ..errors import FormatError
from .batch_plan import BatchPlan, FieldLayout, empty_column, gather_bits
from .block_cache import BlockCache
from .decode import batch_entries, decode_var, record_values
from .gather_tables import GatherTables
from .local_shards import LocalShards
from .schema import Schema
from .shard_reader import VERIFY_MODES, ShardReader
from .staged import gather_by_shard
from .spec import CODEC_NONE, VAR_OFFSET_DTYPE
from .varcolumn import NullableColumn, VarColumn, gather_var_fast, var_output

__all__ = ["BatchRows", "Dataset", "decode_var"]


class Dataset:
    """A fastload dataset: ``len(ds)``, ``ds[i]``, ``ds.get_batch(indices)``.

    Shards come from ``locator`` (default: the local directory ``root``, read in place).
    """

    def __init__(self, root: str | os.PathLike, *, verify: str = "first",
                 block_cache: int | str = "64MB", locator: Any = None):
        self.locator = LocalShards(root) if locator is None else locator
        self.root = self.locator.root
        self.manifest = self.locator.open()
        self.schema: Schema = self.manifest.schema
        self._shard_schema = self.schema.without_nullable()  # what each shard's header must hold
        self._shard_headers: dict = {}  # shard headers parsed, by their JSON text (see ShardReader)
        if verify not in VERIFY_MODES:
            raise ValueError(f"verify must be one of {VERIFY_MODES}, not {verify!r}")
        self.verify = verify
        self._block_cache_option = block_cache
        self._last_needed: dict[int, int] = {}  # shard -> gather number that last needed it
        self._verified: dict[int, np.ndarray] = {}  # shard -> block flags, kept when its map goes
        self._n_gathers = 0
        self._active = 0  # gathers in progress: shards are released only when none is
        self._starts = np.zeros(self.manifest.n_shards + 1, dtype=np.int64)
        np.cumsum(self.manifest.shard_records, out=self._starts[1:])
        self._readers: dict[int, ShardReader] = {}
        self._open_lock = threading.Lock()
        self._cache = BlockCache(parse_size(block_cache, what="block_cache"))
        self._layouts = [FieldLayout.of(j, f) for j, f in enumerate(self.schema)]
        self._fast_tables = GatherTables(self.manifest.n_shards, [lay.column for lay in self._layouts if lay.fast])

    @property
    def _max_open(self) -> int | None:
        return self.locator.max_open  # a loader may change a remote locator's choice

    # -- basics ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def n_shards(self) -> int:
        return self.manifest.n_shards

    @property
    def metadata(self) -> dict[str, Any]:
        return self.manifest.metadata

    def __repr__(self) -> str:
        return f"fastload.Dataset({str(self.root)!r}, records={len(self)}, shards={self.n_shards}, schema=({self.schema.describe()}))"

    def open_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`fastload.open` that reopen this dataset identically
        (in a worker process, say): verify, block_cache and the locator's storage options."""
        return {"verify": self.verify, "block_cache": self._block_cache_option, **self.locator.open_options()}

    def storage_stats(self) -> dict[str, Any]:
        """Download and cache counters of a remote dataset (empty for a local one)."""
        return self.locator.stats()

    def shard_of(self, indices: np.ndarray) -> np.ndarray:
        """The shard number of each record index (non-negative, in range)."""
        return np.searchsorted(self._starts, indices, side="right") - 1

    def locate(self, index: int) -> str:
        """``<shard path or URL> [block <b>] record <k>``: where dataset record ``index`` is stored
        (for errors; the block is named when the shard is open)."""
        index = int(index)
        s = int(self.shard_of(np.asarray(index)))
        local = index - int(self._starts[s])
        reader = self._readers.get(s)
        block = f" block {int(reader.locate(np.asarray(local))[0])}" if reader is not None else ""
        return f"{self.locator.where(self.manifest.shard_names[s])}{block} record {local}"

    def _where(self, indices: Sequence[int] | np.ndarray) -> Callable[[int], str]:
        """For errors: the place of the ``k``-th record of a batch of dataset indices (converted
        only when an error asks, so a batch that decodes pays nothing)."""
        def where(k: int) -> str:
            i = int(np.asarray(indices, dtype=np.int64).reshape(-1)[k])
            return self.locate(i + len(self) if i < 0 else i)
        return where

    def release(self, s: int) -> None:
        """Forget shard ``s``'s reader so its map can go (and a cache may evict it); reopened on use."""
        with self._open_lock:
            self._drop(s)

    def _drop(self, s: int) -> None:  # the caller holds _open_lock
        if self._readers.pop(s, None) is not None:
            self._fast_tables.unregister(s)

    def mapped_shards(self) -> list[int]:
        return list(self._readers)

    def hold_only(self, s: int) -> None:
        """Release every mapped shard but ``s`` (unless another gather is running in another thread)."""
        with self._open_lock:
            if self._active <= 1:
                for other in [r for r in self._readers if r != s]:
                    self._drop(other)

    def _batch_shards(self, idx: np.ndarray) -> np.ndarray:
        return np.unique(self.shard_of(idx[(idx >= 0) & (idx < len(self))]))

    def _release_unneeded(self, shards: np.ndarray) -> None:
        """Keep at most ``max_open`` shards mapped: drop the least recently needed ones this batch
        does not need, before it is planned (addresses of a batch in flight stay valid)."""
        self._n_gathers += 1
        for s in shards.tolist():
            self._last_needed[s] = self._n_gathers
        keep = set(shards.tolist())
        max_open = self._max_open
        if max_open is None:
            return
        excess = len(keep.union(self._readers)) - max(max_open, len(keep))  # counted after this batch opens its own
        if excess <= 0 or self._active > 1:
            return
        old = sorted((self._last_needed.get(s, 0), s) for s in list(self._readers) if s not in keep)
        for _, s in old[:excess]:
            self._drop(s)

    def shard(self, s: int) -> ShardReader:
        """The reader of shard ``s``, opened (and checked against the manifest) on first use."""
        reader = self._readers.get(s)
        if reader is not None:
            return reader
        with self._open_lock:
            reader = self._readers.get(s)
            if reader is None:
                reader = self._open_shard(s)
                self._readers[s] = reader
        return reader

    def _open_shard(self, s: int) -> ShardReader:
        path = self.locator.where(self.manifest.shard_names[s])
        reader = ShardReader(self.locator.map(s), path, verify=self.verify, verified=self._verified.get(s),
                             headers=self._shard_headers)
        self._verified[s] = reader.verified_flags
        if reader.n_records != int(self.manifest.shard_records[s]):
            raise FormatError(f"shard {path} holds {reader.n_records} records, the manifest says "
                              f"{int(self.manifest.shard_records[s])}")
        if reader.schema != self._shard_schema:
            raise FormatError(f"shard {path} has schema ({reader.schema.describe()}), the manifest "
                              f"({self.schema.describe()})")
        undeclared = [name for name in reader.null_fields if not self.schema[name].nullable]
        if undeclared:
            raise FormatError(f"shard {path} holds nulls in fields {undeclared}, which the manifest "
                              "does not mark nullable")
        return reader

    # -- reading ---------------------------------------------------------------------------
    def __getitem__(self, i: int) -> dict[str, Any]:
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"dataset indices must be integers, not {type(i).__name__}; use get_batch for many")
        idx = np.array([i], dtype=np.int64)
        cols = self.gather(idx)
        return {f.name: record_values(f, cols[f.name], self._where(idx))[0] for f in self.schema}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        step = 1024
        for start in range(0, len(self), step):
            idx = np.arange(start, min(start + step, len(self)))
            cols = self.gather(idx)
            values = [record_values(f, cols[f.name], self._where(idx)) for f in self.schema]
            for k in range(len(idx)):
                yield {f.name: v[k] for f, v in zip(self.schema, values)}

    def get_batch(self, indices: Sequence[int] | np.ndarray, fields: Sequence[str] | None = None,
                  *, pad: bool = False) -> dict[str, Any]:
        """Read many records at once.

        Fixed-size numeric fields come back stacked, ``(n, *shape)`` (dates, times and timestamps
        as the integers of their unit). Variable fields, decimals and nested values come back as
        lists (str, bytes, parsed JSON, NumPy arrays, Decimal, Python values); with ``pad=True``
        1-D variable arrays come back as ``(padded (n, max_len) array, lengths)`` instead. A field
        with nulls (``schema[name].nullable``) gives ``None`` in lists; where it is an array, nulls
        are zero and ``name + ".valid"`` holds a bool array, True where a record has a value.
        """
        cols = self.gather(indices, fields)
        out: dict[str, Any] = {}
        where = self._where(indices)
        for name, col in cols.items():
            out.update(batch_entries(self.schema[name], col, pad, where))
        return out

    def __getitems__(self, indices: Sequence[int]) -> "BatchRows":
        """Batched fetch for torch's DataLoader: one native gather, then one dict per record.

        The list also carries the gathered columns (``.gathered``), so fastload's collate makes
        the batch from them without going through the rows."""
        gathered = self.gather(indices)
        batch: dict[str, Any] = {}
        where = self._where(indices)
        for name, col in gathered.items():  # the batch form: name.valid beside a nullable array
            batch.update(batch_entries(self.schema[name], col, False, where))
        # NumPy scalars, not Python ones, so torch's default_collate keeps each field's dtype
        rows = BatchRows({name: value[k] for name, value in batch.items()} for k in range(len(indices)))
        rows.gathered = gathered
        return rows

    def gather(self, indices: Sequence[int] | np.ndarray, fields: Sequence[str] | None = None,
               out: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray | VarColumn]:
        """Fixed fields as stacked arrays and variable ones as :class:`VarColumn` (offsets + bytes).

        ``out`` maps fixed field names to preallocated C-contiguous ``(n, *shape)`` arrays of the
        field's dtype (for example views of a shared-memory batch slot), filled in place; and
        variable field names to a :class:`VarColumn` of ``n + 1`` writable int64 offsets, filled,
        and a uint8 buffer that takes the payloads when they fit (else they get a new array). A
        field with nulls comes back as a :class:`NullableColumn` (its values, nulls zeroed, and a
        bool mask); ``out`` takes only a variable one.
        """
        idx = np.ascontiguousarray(np.asarray(indices, dtype=np.int64).reshape(-1))  # the C gathers read it flat
        max_open = self._max_open
        if max_open is None:
            try:
                return self._gather(idx, fields, out)
            finally:
                self.locator.note_memory(self._cache.hits, self._cache.misses)
        shards = self._batch_shards(idx)
        with self._open_lock:
            self._active += 1
            if len(shards) <= max_open:
                self._release_unneeded(shards)
        try:
            if len(shards) > max_open:  # more shards than a reader may hold: one at a time
                return gather_by_shard(self, idx, fields, out)
            return self._gather(idx, fields, out)
        finally:
            with self._open_lock:
                self._active -= 1
            self.locator.note_memory(self._cache.hits, self._cache.misses)

    def _check_out(self, out: dict[str, np.ndarray], n: int) -> None:
        for name, arr in out.items():
            f = self.schema[name]
            if not f.is_fixed:
                if not (isinstance(arr, VarColumn) and arr.writable(n)):
                    raise ValueError(f"out[{name!r}] must be a VarColumn of {n + 1} writable int64 offsets and a "
                                     "writable uint8 buffer")
            elif (f.nullable or f.kind == "null" or arr.shape != (n, *f.shape) or arr.dtype != f.np_dtype
                    or not arr.flags.c_contiguous or not arr.flags.writeable):
                raise ValueError(f"out[{name!r}] must be a writable C-contiguous {f.np_dtype} array of "
                                 f"shape {(n, *f.shape)}")

    def _gather(self, idx: np.ndarray, fields, out) -> dict[str, np.ndarray | VarColumn]:
        out = out or {}
        self._check_out(out, len(idx))
        if fields is None:
            wanted = self._layouts
        else:
            wanted = [self._layouts[self.schema.index(name)] for name in fields]
        if not idx.size:
            return {lay.name: out.get(lay.name, empty_column(lay)) for lay in wanted}
        if not len(self):  # no shard to look in: the fast path's C check would see bad tables
            raise IndexError(f"index {int(idx[0])} is out of range for an empty dataset")
        fast = self._gather_fixed_fast(idx, wanted, out)  # checks bounds itself; None: not applicable
        if fast is not None:
            return fast
        n_total = len(self)
        if idx.size and (idx.min() < -n_total or idx.max() >= n_total):
            bad = int(idx[(idx < -n_total) | (idx >= n_total)][0])
            raise IndexError(f"index {bad} is out of range for a dataset of {n_total} records")
        idx = np.where(idx < 0, idx + n_total, idx)
        nullable = [k for k, lay in enumerate(wanted) if lay.nullable]
        plan = self._plan(idx, [lay.column for lay in wanted], [wanted[k].column for k in nullable])
        valid = gather_bits(plan) if nullable else None
        cols = {}
        for k, lay in enumerate(wanted):
            col = self._gather_field(lay, plan.col_base[:, k], plan, idx, out.get(lay.name))
            if lay.nullable:
                col = NullableColumn.of(col, valid[:, nullable.index(k)])
            cols[lay.name] = col
        return cols

    # -- the gather ------------------------------------------------------------------------
    def _gather_fixed_fast(self, idx: np.ndarray, wanted: list[FieldLayout],
                           out_arrays: dict[str, np.ndarray]) -> dict | None:
        """Fields without nulls from raw shards: one C call per field, whatever the shard count
        (a variable field fills ``out``'s VarColumn when given, see :func:`var_output`).

        A shard joins the global block tables when first read, if all its blocks are stored raw.
        Checksums stay per block: the gather reports the block of every record, and blocks not
        yet verified are checked after the copy, before the batch is returned (so a first
        epoch never hashes more than the blocks it reads, and a corrupt block still raises).
        """
        if self.verify == "always" or any(not lay.fast for lay in wanted):
            return None
        tables = self._fast_tables
        if not tables.complete:
            shard_of = np.searchsorted(self._starts, idx, side="right") - 1
            if shard_of.min() < 0 or shard_of.max() >= self.n_shards:
                return None  # negative or out-of-range indices: the general path explains
            new = np.unique(shard_of[~tables.registered[shard_of]])
            for s in new:
                reader = self.shard(int(s))
                if not reader.all_raw:
                    return None
                tables.register(int(s), reader)
        touched = None if tables.all_verified else np.empty(len(idx), dtype=np.int64)
        out = {}
        for k, lay in enumerate(wanted):
            arr = out_arrays.get(lay.name)
            tables_args = (idx, self._starts, tables.shard_lo, tables.shard_hi, tables.block_first,
                           tables.column_addr[lay.column], tables.block_lo, tables.block_hi)
            try:  # the first field's call also reports each record's block; the others share them
                if not lay.fixed:
                    arr = gather_var_fast(tables_args, arr, touched if k == 0 else None)
                else:
                    if arr is None:
                        arr = np.empty((len(idx), *lay.shape), dtype=lay.dtype)
                    _native.gather_multi(*tables_args, lay.itemsize, arr, touched if k == 0 else None)
            except IndexError:
                return None
            except ValueError as exc:  # the C bounds check: the tables disagree with a shard's index
                if not lay.fixed:
                    return None  # a payload's offsets: the planned path names the record and the fault
                raise FormatError(f"dataset {self.root}: field {lay.name!r}: {exc}; refusing to read "
                                  "outside a block") from exc
            out[lay.name] = arr
        if touched is not None and wanted:
            self._verify_global_blocks(tables, touched)
        return out

    def _verify_global_blocks(self, tables: GatherTables, rows: np.ndarray) -> None:
        todo = np.unique(rows[~tables.verified[rows]])
        for row in todo.tolist():
            s, b = tables.shard_block(row)
            self.shard(s).check_block(b)  # raises FormatError if corrupt
        if todo.size:
            tables.mark_verified(todo)

    def _plan(self, idx: np.ndarray, columns: list[int], bitmaps: list[int] = ()) -> BatchPlan:
        """For every requested record: its column addresses, position in its block, block size,
        and the bitmap addresses of the nullable fields ``bitmaps`` (-1: none in that block)."""
        n = len(idx)
        shard_of = np.searchsorted(self._starts, idx, side="right") - 1
        keep_alive: list[np.ndarray] = []
        first = int(shard_of[0])
        if (shard_of == first).all():  # the common case with block shuffling: one shard
            parts = [self._plan_shard(first, idx, keep_alive, columns, bitmaps)]
            return BatchPlan.from_single(*parts[0], keep_alive)
        plan = BatchPlan.empty(n, len(columns), len(bitmaps), keep_alive)
        order = np.argsort(shard_of, kind="stable")
        bounds = np.flatnonzero(np.diff(shard_of[order])) + 1
        for group in np.split(order, bounds):  # one step per distinct shard in the batch
            col_base, within, block_n, block_start, block_end, bitmap_base = self._plan_shard(
                int(shard_of[group[0]]), idx[group], keep_alive, columns, bitmaps)
            plan.col_base[group] = col_base
            plan.within[group] = within
            plan.block_n[group] = block_n
            plan.block_start[group] = block_start
            plan.block_end[group] = block_end
            if bitmaps:
                plan.bitmap_base[group] = bitmap_base
        return plan

    def _plan_shard(self, s: int, idx: np.ndarray, keep_alive: list, columns: list[int], bitmaps: list[int]):
        reader = self.shard(s)
        blocks, within = reader.locate(idx - self._starts[s])
        reader.check_blocks(blocks)
        if reader.all_raw:
            base = reader.base_address + reader.block_offset[blocks]
        else:
            base = self._block_bases(s, reader, blocks, keep_alive)
        col_base = base[:, None] + reader.col_offsets64[blocks][:, columns]
        bitmap_base = None
        if bitmaps:  # fields without nulls pay nothing here
            bitmap = reader.bitmap_offsets64[blocks][:, bitmaps]
            bitmap_base = np.where(bitmap >= 0, base[:, None] + bitmap, -1)
        return col_base, within, reader.block_records[blocks], base, base + reader.block_raw_size[blocks], bitmap_base

    def _block_bases(self, s: int, reader: ShardReader, blocks: np.ndarray, keep_alive: list) -> np.ndarray:
        uniq, inverse = np.unique(blocks, return_inverse=True)
        addrs = np.empty(len(uniq), dtype=np.int64)
        for k, b in enumerate(uniq):
            b = int(b)
            if reader.block_codec[b] == CODEC_NONE:
                addrs[k] = reader.block_address(b)
            else:
                raw = self._cache.get((s, b), lambda: reader.raw_block(b))
                keep_alive.append(raw)
                addrs[k] = raw.ctypes.data
        return addrs[inverse]

    def _gather_field(self, layout: FieldLayout, col_base: np.ndarray, plan: BatchPlan, idx: np.ndarray,
                      out: np.ndarray | None = None):
        # every address below lies inside its block: the shard index was checked when the shard
        # was opened (ShardReader._check_columns); the C gathers check it again before each copy
        lo, hi, n = plan.block_start, plan.block_end, len(idx)
        if layout.fixed and layout.itemsize == 0:  # a null field stores nothing
            return empty_column(layout, n)
        if layout.fixed:
            if out is None:
                out = np.empty((n, *layout.shape), dtype=layout.dtype)
            _native.gather_fixed(col_base + plan.within * layout.itemsize, layout.itemsize, out, lo, hi)
            return out
        data_addr, lengths = self._var_addresses(layout, col_base, plan, idx)
        col = var_output(lengths, out)
        _native.gather_var(data_addr, lengths, col.data, lo, hi)
        return col

    def _var_addresses(self, layout: FieldLayout, col_base: np.ndarray, plan: BatchPlan,
                       idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Address and byte length of each record's payload of a variable field, checked to lie
        inside its block (``plan.block_start``/``block_end``)."""
        lo, hi, n = plan.block_start, plan.block_end, len(idx)
        pairs = np.empty((n, 2), dtype=VAR_OFFSET_DTYPE)
        _native.gather_fixed(col_base + plan.within * VAR_OFFSET_DTYPE.itemsize, 8, pairs, lo, hi)
        start = pairs[:, 0].astype(np.int64)
        lengths = pairs[:, 1].astype(np.int64) - start
        data_addr = col_base + (plan.block_n + 1) * VAR_OFFSET_DTYPE.itemsize + start
        bad = (lengths < 0) | (data_addr + lengths > hi)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            what = "decreasing offsets" if lengths[k] < 0 else "offsets pointing past its block"
            raise FormatError(f"{self.locate(int(idx[k]))}: field {layout.name!r}: a variable-size column holds "
                              f"{what} (corrupt block)")
        return data_addr, lengths

    @contextmanager
    def var_payloads(self, indices: Sequence[int] | np.ndarray, field: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``with ds.var_payloads(idx, "tokens") as (addresses, nbytes):`` where each record's
        payload of a variable field lies, for native copies of parts of records (sequence
        packing). The addresses stay valid (shards mapped, decompressed blocks held) until the
        ``with`` block ends; blocks are checksummed as for :meth:`gather`."""
        lay = self._layouts[self.schema.index(field)]
        if lay.fixed:
            raise ValueError(f"field {field!r} is fixed-size: var_payloads is for variable fields")
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n_total = len(self)
        if idx.size and (idx.min() < 0 or idx.max() >= n_total):
            bad = int(idx[(idx < 0) | (idx >= n_total)][0])
            raise IndexError(f"index {bad} is out of range for a dataset of {n_total} records")
        with self._open_lock:
            self._active += 1
            if self._max_open is not None:
                self._release_unneeded(self._batch_shards(idx))
        try:
            if not idx.size:
                yield np.zeros(0, np.int64), np.zeros(0, np.int64)
                return
            plan = self._plan(idx, [lay.column])
            yield self._var_addresses(lay, plan.col_base[:, 0], plan, idx)
            del plan  # holds the decompressed blocks the addresses point into
        finally:
            with self._open_lock:
                self._active -= 1

    # -- integrity -------------------------------------------------------------------------
    def verify_all(self, progress=None) -> None:
        """Check every shard's whole-file checksum and every block checksum; raise FormatError
        (see :func:`fastload.format.integrity.verify_dataset`)."""
        from .integrity import verify_dataset

        verify_dataset(self, progress)


class BatchRows(list):
    """The rows of ``Dataset.__getitems__``: a list of dicts, with the gathered columns kept."""

    gathered: dict
