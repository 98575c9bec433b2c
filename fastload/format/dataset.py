"""Open a dataset and read records: one at a time, or a whole batch through the native gather.

Opening reads only the manifest (O(shards)); a shard is mapped the first time a record in it is
asked for. A batch is read by computing every requested value's address with vectorised NumPy
and copying them with one C call per field (``fastload._native``), so the cost per record is a
few nanoseconds of index arithmetic and the copy itself.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Iterator, Sequence

import numpy as np

from .. import _native
from .._sizes import parse_size
from ..errors import FormatError
from .block_cache import BlockCache
from .decode import batch_entries, decode_var, record_values
from .local_shards import LocalShards
from .schema import Field, Schema
from .shard_reader import VERIFY_MODES, ShardReader
from .spec import CODEC_NONE, VAR_OFFSET_DTYPE
from .varcolumn import NullableColumn, VarColumn

__all__ = ["Dataset", "decode_var"]


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
        if verify not in VERIFY_MODES:
            raise ValueError(f"verify must be one of {VERIFY_MODES}, not {verify!r}")
        self.verify = verify
        self._block_cache_option = block_cache
        self._max_open = self.locator.max_open
        self._last_needed: dict[int, int] = {}  # shard -> gather number that last needed it
        self._n_gathers = 0
        self._active = 0  # gathers in progress: shards are released only when none is
        self._starts = np.zeros(self.manifest.n_shards + 1, dtype=np.int64)
        np.cumsum(self.manifest.shard_records, out=self._starts[1:])
        self._readers: dict[int, ShardReader] = {}
        self._open_lock = threading.Lock()
        self._cache = BlockCache(parse_size(block_cache, what="block_cache"))
        self._layouts = [_FieldLayout.of(j, f) for j, f in enumerate(self.schema)]
        self._fast_tables = _FastTables(self.manifest.shard_blocks, self._layouts)

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
        """``<shard path or URL> record <k>``: where dataset record ``index`` is stored (for errors)."""
        s = int(self.shard_of(np.asarray(index)))
        return f"{self.locator.where(self.manifest.shard_names[s])} record {index - int(self._starts[s])}"

    def release(self, s: int) -> None:
        """Forget shard ``s``'s reader so its map can go (and a cache may evict it); reopened on use."""
        with self._open_lock:
            self._drop(s)

    def _drop(self, s: int) -> None:  # the caller holds _open_lock
        if self._readers.pop(s, None) is not None:
            self._fast_tables.unregister(s)

    def _release_unneeded(self, idx: np.ndarray) -> None:
        """Keep at most ``max_open`` shards mapped: drop the least recently needed ones this batch
        does not need, before it is planned (addresses of a batch in flight stay valid)."""
        self._n_gathers += 1
        shards = np.unique(self.shard_of(idx[(idx >= 0) & (idx < len(self))]))
        for s in shards.tolist():
            self._last_needed[s] = self._n_gathers
        keep = set(shards.tolist())
        excess = len(keep.union(self._readers)) - max(self._max_open, len(keep))  # counted after this batch opens its own
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
        reader = ShardReader(self.locator.map(s), path, verify=self.verify)
        if reader.n_records != int(self.manifest.shard_records[s]):
            raise FormatError(f"shard {path} holds {reader.n_records} records, the manifest says "
                              f"{int(self.manifest.shard_records[s])}")
        if reader.schema != self.schema.without_nullable():
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
        cols = self.gather(np.array([i], dtype=np.int64))
        return {f.name: record_values(f, cols[f.name])[0] for f in self.schema}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        step = 1024
        for start in range(0, len(self), step):
            stop = min(start + step, len(self))
            cols = self.gather(np.arange(start, stop))
            values = [record_values(f, cols[f.name]) for f in self.schema]
            for k in range(stop - start):
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
        for name, col in cols.items():
            out.update(batch_entries(self.schema[name], col, pad))
        return out

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """Batched fetch for torch's DataLoader: one native gather, then one dict per record."""
        batch = self.get_batch(indices)
        # NumPy scalars, not Python ones, so torch's default_collate keeps each field's dtype
        return [{name: value[k] for name, value in batch.items()} for k in range(len(indices))]

    def gather(self, indices: Sequence[int] | np.ndarray, fields: Sequence[str] | None = None,
               out: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray | VarColumn]:
        """Fixed fields as stacked arrays and variable ones as :class:`VarColumn` (offsets + bytes).

        ``out`` maps fixed field names to preallocated C-contiguous ``(n, *shape)`` arrays of the
        field's dtype (for example views of a shared-memory batch slot), filled in place. A field
        with nulls comes back as a :class:`NullableColumn` (its values, nulls zeroed, and a bool
        mask); ``out`` cannot take one.
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if self._max_open is None:
            return self._gather(idx, fields, out)
        with self._open_lock:
            self._active += 1
            self._release_unneeded(idx)
        try:
            return self._gather(idx, fields, out)
        finally:
            with self._open_lock:
                self._active -= 1
            self.locator.note_memory(self._cache.hits, self._cache.misses)

    def _gather(self, idx: np.ndarray, fields, out) -> dict[str, np.ndarray | VarColumn]:
        out = out or {}
        for name, arr in out.items():
            f = self.schema[name]
            if (not f.is_fixed or f.nullable or f.kind == "null" or arr.shape != (len(idx), *f.shape)
                    or arr.dtype != f.np_dtype
                    or not arr.flags.c_contiguous or not arr.flags.writeable):
                raise ValueError(f"out[{name!r}] must be a writable C-contiguous {f.np_dtype} array of "
                                 f"shape {(len(idx), *f.shape)}")
        if fields is None:
            wanted = self._layouts
        else:
            wanted = [self._layouts[self.schema.index(name)] for name in fields]
        if not idx.size:
            return {lay.name: out.get(lay.name, _empty_column(lay)) for lay in wanted}
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
        valid = _gather_bits(plan.bitmap_base, plan.within) if nullable else None
        cols = {}
        for k, lay in enumerate(wanted):
            col = self._gather_field(lay, plan.col_base[:, k], plan, len(idx), out.get(lay.name))
            if lay.nullable:
                col = NullableColumn.of(col, valid[:, nullable.index(k)])
            cols[lay.name] = col
        return cols

    # -- the gather ------------------------------------------------------------------------
    def _gather_fixed_fast(self, idx: np.ndarray, wanted: list["_FieldLayout"],
                           out_arrays: dict[str, np.ndarray]) -> dict | None:
        """Fixed fields from raw shards: one C call per field, whatever the shard count.

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
                tables.register(int(s), reader, self._layouts)
        touched = None if tables.all_verified else np.empty(len(idx), dtype=np.int64)
        out = {}
        for k, lay in enumerate(wanted):
            arr = out_arrays.get(lay.name)
            if arr is None:
                arr = np.empty((len(idx), *lay.shape), dtype=lay.dtype)
            try:  # the first field's call also reports each record's block; the others share them
                _native.gather_multi(idx, self._starts, tables.shard_block, tables.block_first,
                                     tables.column_addr[lay.column], lay.itemsize, arr,
                                     touched if k == 0 else None)
            except IndexError:
                return None
            out[lay.name] = arr
        if touched is not None and wanted:
            self._verify_global_blocks(tables, touched)
        return out

    def _verify_global_blocks(self, tables: "_FastTables", blocks: np.ndarray) -> None:
        todo = np.unique(blocks[~tables.verified[blocks]])
        for gb in todo.tolist():
            s = int(np.searchsorted(tables.shard_block, gb, side="right")) - 1
            self.shard(s).check_block(gb - int(tables.shard_block[s]))  # raises FormatError if corrupt
            tables.verified[gb] = True
        if todo.size and tables.verified.all():
            tables.all_verified = True

    def _plan(self, idx: np.ndarray, columns: list[int], bitmaps: list[int]) -> "_BatchPlan":
        """For every requested record: its column addresses, position in its block, block size."""
        n = len(idx)
        shard_of = np.searchsorted(self._starts, idx, side="right") - 1
        keep_alive: list[np.ndarray] = []
        first = int(shard_of[0])
        if (shard_of == first).all():  # the common case with block shuffling: one shard
            parts = [self._plan_shard(first, idx, keep_alive, columns, bitmaps)]
            return _BatchPlan.from_single(*parts[0], keep_alive)
        plan = _BatchPlan.empty(n, len(columns), len(bitmaps), keep_alive)
        order = np.argsort(shard_of, kind="stable")
        bounds = np.flatnonzero(np.diff(shard_of[order])) + 1
        for group in np.split(order, bounds):  # one step per distinct shard in the batch
            col_base, within, block_n, block_end, bitmap_base = self._plan_shard(
                int(shard_of[group[0]]), idx[group], keep_alive, columns, bitmaps)
            plan.col_base[group] = col_base
            plan.within[group] = within
            plan.block_n[group] = block_n
            plan.block_end[group] = block_end
            if bitmaps:
                plan.bitmap_base[group] = bitmap_base
        return plan

    def _plan_shard(self, s: int, idx: np.ndarray, keep_alive: list, columns: list[int], bitmaps: list[int]):
        """Per record: column starts (``columns``), bitmap starts of the nullable ``bitmaps``
        (-1 where the block has none), position in the block, block records and block end."""
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
        return col_base, within, reader.block_records[blocks], base + reader.block_raw_size[blocks], bitmap_base

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

    def _gather_field(self, layout: "_FieldLayout", col_base: np.ndarray, plan: "_BatchPlan", n: int,
                      out: np.ndarray | None = None):
        if layout.itemsize == 0 and layout.fixed:  # a null field stores nothing
            return _empty_column(layout, n)
        if layout.fixed:
            if out is None:
                out = np.empty((n, *layout.shape), dtype=layout.dtype)
            _native.gather_fixed(col_base + plan.within * layout.itemsize, layout.itemsize, out)
            return out
        pairs = np.empty((n, 2), dtype=VAR_OFFSET_DTYPE)
        _native.gather_fixed(col_base + plan.within * VAR_OFFSET_DTYPE.itemsize, 8, pairs)
        start = pairs[:, 0].astype(np.int64)
        lengths = pairs[:, 1].astype(np.int64) - start
        if (lengths < 0).any():
            raise FormatError(f"field {layout.name!r}: a variable-size column holds decreasing offsets (corrupt block)")
        data_addr = col_base + (plan.block_n + 1) * VAR_OFFSET_DTYPE.itemsize + start
        if (data_addr + lengths > plan.block_end).any():
            raise FormatError(f"field {layout.name!r}: a record's offsets point past its block (corrupt block)")
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        data = np.empty(int(offsets[-1]), dtype=np.uint8)
        _native.gather_var(data_addr, lengths, data)
        return VarColumn(offsets, data)

    # -- integrity -------------------------------------------------------------------------
    def verify_all(self, progress=None) -> None:
        """Check every shard's whole-file checksum and every block checksum; raise FormatError."""
        from .codec import checksum

        for s, name in enumerate(self.manifest.shard_names):
            reader = self.shard(s)
            if f"{checksum(reader.buf):016x}" != self.manifest.shard_checksums[s]:
                reader.verify_all()  # names the corrupt block when one is
                raise FormatError(f"shard {self.locator.where(name)}: file checksum differs from the manifest")
            reader.verify_all()
            if self._max_open is not None:
                del reader
                self.release(s)  # a cache smaller than the dataset must be able to evict it
            if progress is not None:
                progress(s, name)


class _FieldLayout:
    """Per-field constants the gather needs, computed once per dataset."""

    __slots__ = ("name", "column", "fixed", "shape", "dtype", "itemsize", "nullable", "fast")

    @classmethod
    def of(cls, column: int, f: Field) -> "_FieldLayout":
        lay = cls()
        lay.name, lay.column, lay.fixed, lay.nullable = f.name, column, f.is_fixed, f.nullable
        lay.shape = f.shape if f.kind != "null" else (0,)
        lay.dtype = f.np_dtype if f.dtype else (np.dtype(np.uint8) if f.kind == "null" else None)
        lay.itemsize = f.itemsize if f.is_fixed else 0
        # on the one-C-call-per-field path: stored bytes, no bitmap to read
        lay.fast = lay.fixed and lay.itemsize > 0 and not lay.nullable
        return lay


class _FastTables:
    """Global block tables of the shards that are raw and verified, for :func:`_native.gather_multi`.

    Sized from the manifest's per-shard block counts; a shard's rows are filled when it joins.
    """

    def __init__(self, shard_blocks: np.ndarray, layouts: list[_FieldLayout]):
        self.shard_block = np.zeros(len(shard_blocks) + 1, dtype=np.int64)
        np.cumsum(shard_blocks, out=self.shard_block[1:])
        total = int(self.shard_block[-1])
        self.block_first = np.zeros(total, dtype=np.int64)
        self.column_addr = {lay.column: np.zeros(total, dtype=np.int64) for lay in layouts if lay.fast}
        self.registered = np.zeros(len(shard_blocks), dtype=bool)
        self.verified = np.zeros(total, dtype=bool)
        self.all_verified = total == 0
        self.complete = len(shard_blocks) == 0
        self._lock = threading.Lock()

    def register(self, s: int, reader: ShardReader, layouts: list[_FieldLayout]) -> None:
        lo, hi = int(self.shard_block[s]), int(self.shard_block[s + 1])
        if hi - lo != reader.n_blocks:
            raise FormatError(f"shard {reader.name} has {reader.n_blocks} blocks, the manifest says {hi - lo}")
        with self._lock:
            self.block_first[lo:hi] = reader.first_record
            for column, addr in self.column_addr.items():
                addr[lo:hi] = reader.column_address(column)
            self.verified[lo:hi] = reader.verified_blocks()
            self.registered[s] = True  # set last: readers of the tables check this flag first
            self.complete = bool(self.registered.all())

    def unregister(self, s: int) -> None:
        """Shard ``s``'s map is going away: its rows must be filled again before use."""
        lo, hi = int(self.shard_block[s]), int(self.shard_block[s + 1])
        with self._lock:
            self.registered[s] = False
            self.complete = False
            self.verified[lo:hi] = False  # a new reader checks its blocks again
            self.all_verified = hi == lo and self.all_verified


class _BatchPlan:
    """Where each requested record's columns start, its position in its block, and the block size."""

    __slots__ = ("col_base", "within", "block_n", "block_end", "bitmap_base", "keep_alive")

    @classmethod
    def from_single(cls, col_base, within, block_n, block_end, bitmap_base, keep_alive) -> "_BatchPlan":
        plan = cls()
        plan.col_base, plan.within, plan.block_n = col_base, within, block_n
        plan.block_end, plan.bitmap_base, plan.keep_alive = block_end, bitmap_base, keep_alive
        return plan

    @classmethod
    def empty(cls, n: int, n_columns: int, n_bitmaps: int, keep_alive) -> "_BatchPlan":
        return cls.from_single(np.empty((n, n_columns), np.int64), np.empty(n, np.int64),
                               np.empty(n, np.int64), np.empty(n, np.int64),
                               np.empty((n, n_bitmaps), np.int64) if n_bitmaps else None, keep_alive)


def _empty_column(lay: "_FieldLayout", n: int = 0):
    if lay.fixed:
        col = np.zeros((n, *lay.shape), dtype=lay.dtype)
    else:
        col = VarColumn(np.zeros(n + 1, np.int64), np.zeros(0, np.uint8))
    return NullableColumn.of(col, np.zeros(n, bool)) if lay.nullable else col


def _gather_bits(bitmap_base: np.ndarray, within: np.ndarray) -> np.ndarray:
    """Each record's validity bit (LSB first) in each of several fields, ``(n, fields)`` bool:
    True where the record's block stores no bitmap for the field (no null there). One native call
    for all the fields; a record without a bitmap reads a constant all-ones byte instead, so no
    boolean compaction is needed (half the cost on 256 records x 6 fields)."""
    has = bitmap_base >= 0
    shift = (within % 8).astype(np.uint8)[:, None] * has
    addrs = np.where(has, bitmap_base + (within // 8)[:, None], _ALL_VALID.ctypes.data)
    octets = np.empty(addrs.shape, dtype=np.uint8)
    _native.gather_fixed(addrs.reshape(-1), 1, octets)
    return ((octets >> shift) & 1).astype(bool)


_ALL_VALID = np.full(1, 0xFF, dtype=np.uint8)  # read-only constant: the byte of a block with no null
_ALL_VALID.flags.writeable = False
