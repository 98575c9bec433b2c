"""A batch gathered shard by shard, each shard released as soon as its rows are copied.

A remote dataset read under a cache limit smaller than the data (a shuffled batch may touch every
shard) must not keep all of a batch's shards mapped at once: a mapped shard cannot be evicted, so
readers holding many would fill the cache and wait on each other. Gathered this way, a reader
holds one shard at a time, and the shards a node must hold at once are about one per reader plus
the prefetch window (docs/storage.md).
"""

from __future__ import annotations

import numpy as np

from .. import _native
from .varcolumn import NullableColumn, VarColumn


def visit_order(shards: np.ndarray, held) -> list[int]:
    """The order a reader visits a batch's ``shards`` (unique, ascending): those it already holds
    first (no second mapping), then ascending. The I/O forecast replays this order."""
    held = set(held)
    first = [s for s in shards.tolist() if s in held]
    return first + [s for s in shards.tolist() if s not in held]


def gather_by_shard(ds, idx: np.ndarray, fields, out: dict | None) -> dict:
    """``ds.gather(idx, fields, out)`` one shard at a time."""
    out = out or {}
    n = len(idx)
    ds._check_out(out, n)
    n_total = len(ds)
    if idx.min() < -n_total or idx.max() >= n_total:
        bad = int(idx[(idx < -n_total) | (idx >= n_total)][0])
        raise IndexError(f"index {bad} is out of range for a dataset of {n_total} records")
    idx = np.where(idx < 0, idx + n_total, idx)
    shard_of = ds.shard_of(idx)
    names = list(fields) if fields is not None else ds.schema.names
    fixed: dict[str, np.ndarray] = {}
    pieces: dict[str, list[tuple[np.ndarray, VarColumn]]] = {}
    valid: dict[str, np.ndarray] = {}  # fields with nulls: their validity, in batch order
    for s in visit_order(np.unique(shard_of), ds.mapped_shards()):
        rows = np.flatnonzero(shard_of == s)
        ds.hold_only(s)
        for name, col in ds._gather(idx[rows], names, None).items():
            if isinstance(col, NullableColumn):  # values already zeroed at nulls
                valid.setdefault(name, np.zeros(n, dtype=bool))[rows] = col.valid
                col = col.values
            if isinstance(col, VarColumn):
                pieces.setdefault(name, []).append((rows, col))
            else:
                if name not in fixed:
                    fixed[name] = out.get(name)
                    if fixed[name] is None:
                        fixed[name] = np.empty((n, *col.shape[1:]), dtype=col.dtype)
                fixed[name][rows] = col
    cols = {name: fixed[name] if name in fixed else merge_var(n, pieces[name]) for name in names}
    return {name: NullableColumn(col, valid[name]) if name in valid else col for name, col in cols.items()}


def merge_var(n: int, pieces: list[tuple[np.ndarray, VarColumn]]) -> VarColumn:
    """One VarColumn of ``n`` rows from per-shard pieces (rows of the batch, their column): one
    native copy of every payload into batch order, each checked against its piece's buffer."""
    lengths = np.zeros(n, dtype=np.int64)
    src = np.zeros(n, dtype=np.int64)
    lo = np.zeros(n, dtype=np.int64)
    hi = np.zeros(n, dtype=np.int64)
    for rows, col in pieces:
        base = col.data.ctypes.data
        lengths[rows] = np.diff(col.offsets)
        src[rows] = base + col.offsets[:-1]
        lo[rows], hi[rows] = base, base + col.data.size
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    data = np.empty(int(offsets[-1]), dtype=np.uint8)
    _native.gather_var(src, lengths, data, lo, hi)  # the pieces stay referenced until it returns
    return VarColumn(offsets, data)
