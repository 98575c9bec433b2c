"""Open a dataset and read records: one at a time, or a whole batch through the native gather.

Opening reads only the manifest (O(shards)); a shard is mapped the first time a record in it is
asked for. A batch is read by computing every requested value's address with vectorised NumPy
and copying them with one C call per field (``fastload._native``), so the cost per record is a
few nanoseconds of index arithmetic and the copy itself.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .. import _native
from .._sizes import parse_size
from ..errors import FormatError
from .block_cache import BlockCache
from .columns import VarColumn
from .manifest import Manifest
from .schema import Field, Schema
from .shard_reader import ShardReader
from .spec import CODEC_NONE, MANIFEST_NAME, VAR_OFFSET_DTYPE


class Dataset:
    """A fastload dataset on local storage: ``len(ds)``, ``ds[i]``, ``ds.get_batch(indices)``."""

    def __init__(self, root: str | os.PathLike, *, verify: str = "first",
                 block_cache: int | str = "64MB"):
        self.root = Path(root)
        path = self.root / MANIFEST_NAME
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise FormatError(f"{self.root} is not a fastload dataset (no {MANIFEST_NAME})") from None
        self.manifest = Manifest.loads(data, str(path))
        self.schema: Schema = self.manifest.schema
        self.verify = verify
        self._starts = np.zeros(self.manifest.n_shards + 1, dtype=np.int64)
        np.cumsum(self.manifest.shard_records, out=self._starts[1:])
        self._readers: dict[int, ShardReader] = {}
        self._open_lock = threading.Lock()
        self._cache = BlockCache(parse_size(block_cache, what="block_cache"))

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
        name = self.manifest.shard_names[s]
        path = self.root / name
        expected = int(self.manifest.shard_bytes[s])
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise FormatError(f"shard {path} is missing (listed in the manifest)") from None
        if size != expected:
            raise FormatError(f"shard {path} is {size} bytes but the manifest says {expected}: truncated or replaced")
        reader = ShardReader.open(path, verify=self.verify)
        if reader.n_records != int(self.manifest.shard_records[s]):
            raise FormatError(f"shard {path} holds {reader.n_records} records, the manifest says "
                              f"{int(self.manifest.shard_records[s])}")
        if reader.schema != self.schema:
            raise FormatError(f"shard {path} has schema ({reader.schema.describe()}), the manifest "
                              f"({self.schema.describe()})")
        return reader

    # -- reading ---------------------------------------------------------------------------
    def __getitem__(self, i: int) -> dict[str, Any]:
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"dataset indices must be integers, not {type(i).__name__}; use get_batch for many")
        cols = self.gather(np.array([i], dtype=np.int64))
        return {f.name: _decode_one(f, cols[f.name]) for f in self.schema}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        step = 1024
        for start in range(0, len(self), step):
            batch = self.get_batch(np.arange(start, min(start + step, len(self))))
            for k in range(len(next(iter(batch.values())))):
                yield {name: _pick(value, k) for name, value in batch.items()}

    def get_batch(self, indices: Sequence[int] | np.ndarray, fields: Sequence[str] | None = None,
                  *, pad: bool = False) -> dict[str, Any]:
        """Read many records at once.

        Fixed-size fields come back stacked, ``(n, *shape)``. Variable fields come back as lists
        (str, bytes, parsed JSON, NumPy arrays); with ``pad=True`` 1-D variable arrays come back as
        ``(padded (n, max_len) array, lengths)`` instead.
        """
        cols = self.gather(indices, fields)
        out: dict[str, Any] = {}
        for name, col in cols.items():
            f = self.schema[name]
            out[name] = col if f.is_fixed else _decode_var(f, col, pad)
        return out

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """Batched fetch for torch's DataLoader: one native gather, then one dict per record."""
        batch = self.get_batch(indices)
        return [{name: _pick(value, k) for name, value in batch.items()} for k in range(len(indices))]

    def gather(self, indices: Sequence[int] | np.ndarray,
               fields: Sequence[str] | None = None) -> dict[str, np.ndarray | VarColumn]:
        """Fixed fields as stacked arrays and variable ones as :class:`VarColumn` (offsets + bytes)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n_total = len(self)
        if idx.size and (idx.min() < -n_total or idx.max() >= n_total):
            bad = int(idx[(idx < -n_total) | (idx >= n_total)][0])
            raise IndexError(f"index {bad} is out of range for a dataset of {n_total} records")
        idx = np.where(idx < 0, idx + n_total, idx)
        wanted = [self.schema[name] for name in fields] if fields is not None else list(self.schema)
        plan = self._plan(idx)
        return {f.name: self._gather_field(f, plan, len(idx)) for f in wanted}

    # -- the gather ------------------------------------------------------------------------
    def _plan(self, idx: np.ndarray) -> "_BatchPlan":
        """For every requested record: its block's raw base address, block size and position."""
        n = len(idx)
        shard_of = np.searchsorted(self._starts, idx, side="right") - 1
        base = np.empty(n, dtype=np.int64)
        within = np.empty(n, dtype=np.int64)
        block_n = np.empty(n, dtype=np.int64)
        col_offsets = np.empty((n, len(self.schema)), dtype=np.int64)
        keep_alive: list[np.ndarray] = []
        order = np.argsort(shard_of, kind="stable")
        sorted_shards = shard_of[order]
        bounds = np.flatnonzero(np.diff(sorted_shards)) + 1
        for group in np.split(order, bounds):  # one step per distinct shard in the batch
            if not group.size:
                continue
            s = int(shard_of[group[0]])
            reader = self.shard(s)
            blocks, pos = reader.locate(idx[group] - self._starts[s])
            reader.check_blocks(np.unique(blocks))
            within[group] = pos
            block_n[group] = reader.block_records[blocks]
            col_offsets[group] = reader.col_offsets[blocks]
            if reader.all_raw:
                base[group] = reader.buf.ctypes.data + reader.blocks["offset"][blocks].astype(np.int64)
            else:
                base[group] = self._block_bases(s, reader, blocks, keep_alive)
        return _BatchPlan(base, within, block_n, col_offsets, keep_alive)

    def _block_bases(self, s: int, reader: ShardReader, blocks: np.ndarray, keep_alive: list) -> np.ndarray:
        uniq, inverse = np.unique(blocks, return_inverse=True)
        addrs = np.empty(len(uniq), dtype=np.int64)
        for k, b in enumerate(uniq):
            b = int(b)
            if int(reader.blocks["codec"][b]) == CODEC_NONE:
                addrs[k] = reader.block_address(b)
            else:
                raw = self._cache.get((s, b), lambda: reader.raw_block(b))
                keep_alive.append(raw)
                addrs[k] = raw.ctypes.data
        return addrs[inverse]

    def _gather_field(self, f: Field, plan: "_BatchPlan", n: int):
        j = self.schema.index(f.name)
        col_base = plan.base + plan.col_offsets[:, j]
        if f.is_fixed:
            out = np.empty((n, *f.shape), dtype=f.np_dtype)
            _native.gather_fixed(col_base + plan.within * f.itemsize, f.itemsize, out)
            return out
        pairs = np.empty((n, 2), dtype=VAR_OFFSET_DTYPE)
        _native.gather_fixed(col_base + plan.within * VAR_OFFSET_DTYPE.itemsize, 8, pairs)
        start = pairs[:, 0].astype(np.int64)
        lengths = pairs[:, 1].astype(np.int64) - start
        if (lengths < 0).any():
            raise FormatError("a variable-size column holds decreasing offsets (corrupt block index)")
        data_addr = col_base + (plan.block_n + 1) * VAR_OFFSET_DTYPE.itemsize + start
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
                raise FormatError(f"shard {self.root / name}: file checksum differs from the manifest")
            reader.verify_all()
            if progress is not None:
                progress(s, name)


class _BatchPlan:
    __slots__ = ("base", "within", "block_n", "col_offsets", "keep_alive")

    def __init__(self, base, within, block_n, col_offsets, keep_alive):
        self.base, self.within, self.block_n = base, within, block_n
        self.col_offsets, self.keep_alive = col_offsets, keep_alive


# -- turning gathered bytes into Python values --------------------------------------------------
def _payloads(col: VarColumn) -> list[bytes]:
    data = col.data.tobytes()
    o = col.offsets.tolist()
    return [data[o[k] : o[k + 1]] for k in range(len(o) - 1)]


def _decode_var(f: Field, col: VarColumn, pad: bool) -> Any:
    if f.kind == "str":
        return [p.decode("utf-8") for p in _payloads(col)]
    if f.kind in ("bytes", "image"):
        return _payloads(col)
    if f.kind == "json":
        return [json.loads(p) for p in _payloads(col)]
    dtype = f.np_dtype
    if len(f.shape) == 1:
        values = col.data.view(dtype) if col.data.size % dtype.itemsize == 0 else None
        if values is None:
            raise FormatError(f"field {f.name!r}: payload size is not a multiple of {dtype.itemsize}")
        lengths = np.diff(col.offsets) // dtype.itemsize
        if pad:
            width = int(lengths.max()) if len(lengths) else 0
            out = np.zeros((len(lengths), width), dtype=dtype)
            mask = np.arange(width) < lengths[:, None]
            out[mask] = values
            return out, lengths
        return np.split(values, np.cumsum(lengths)[:-1]) if len(lengths) else []
    arrays = []
    ndim = len(f.shape)
    for p in _payloads(col):
        shape = tuple(np.frombuffer(p[: 8 * ndim], dtype="<i8"))
        arrays.append(np.frombuffer(p[8 * ndim :], dtype=dtype).reshape(shape))
    return arrays


def _decode_one(f: Field, col) -> Any:
    if f.is_fixed:
        return col[0].item() if f.kind == "scalar" else col[0]
    return _decode_var(f, col, False)[0]


def _pick(value: Any, k: int) -> Any:
    if isinstance(value, np.ndarray):
        v = value[k]
        return v.item() if v.ndim == 0 else v
    return value[k]


def open_dataset(url: str | os.PathLike, **options: Any) -> Dataset:
    """Open a dataset directory (a local path; remote URLs come with the storage layer)."""
    text = os.fspath(url)
    if "://" in text:
        scheme = text.split("://", 1)[0]
        if scheme != "file":
            raise NotImplementedError(
                f"{scheme}:// datasets are not readable yet in this version of fastload; copy the "
                "dataset to a local directory"
            )
        text = text.split("://", 1)[1]
    return Dataset(text, **options)
