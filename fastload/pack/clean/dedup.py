"""Exact deduplication decisions: which record hashes occur for the first time, in source order.

:class:`SeenHashes` is the single-machine form: the pack's writing process hands it each
segment's hashes in segment order and drops what it has seen before, so the first occurrence in
source order is kept whatever the number of workers. It is an ordered open-addressing table of
16-byte slots kept between 25% and 50% full: **32 to 64 bytes per distinct record**. Up to
``memory_limit`` the table is in memory; a larger one is a file in ``spill_dir``, mapped, which
the batches (sorted by hash first) walk from start to end.

:func:`partition_of` and :func:`first_in_partition` are the distributed form (a hash-partitioned
shuffle, see docs/cleaning.md): each record's ``(hash, segment, row)`` goes to the partition its
hash names; within a partition the smallest ``(segment, row)`` of each hash is its first
occurrence, whatever machine saw it. Both forms keep exactly the same records.
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path

import numpy as np

from ..._kernels.hash_table import count_new, insert_first, move_all
from ...format.shard_writer import temp_path_for

SLOT_BYTES = 16
MAX_LOAD = 0.5  # a table grows (doubles) before it is more than half full
MIN_BITS = 10  # 1,024 slots (16 KiB): the first table


class SeenHashes:
    """The set of record hashes seen so far; :meth:`first` answers, then remembers, a batch."""

    def __init__(self, *, memory_limit: int, spill_dir: str | os.PathLike | None = None):
        if memory_limit < 0:
            raise ValueError(f"memory_limit must be >= 0 bytes, not {memory_limit}")
        self.memory_limit = int(memory_limit)
        self.spill_dir = Path(spill_dir) if spill_dir is not None else None
        self.distinct = 0  # hashes in the set (the zero hash included)
        self.spilled = False  # the table has outgrown memory_limit and lives in a file
        self._zero_seen = False
        self._bits = 0
        self._path: Path | None = None
        self._table = self._new_table(MIN_BITS)
        self._finalizer = weakref.finalize(self, _remove, [self._path])

    @property
    def table_bytes(self) -> int:
        return int(self._table.nbytes)

    def first(self, hashes: np.ndarray) -> np.ndarray:
        """``keep[i]`` = whether ``hashes[i]`` (``(n, 2)`` uint64) appears neither earlier in
        this batch nor in an earlier batch; all of them are then in the set."""
        hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
        n = len(hashes)
        keep = np.zeros(n, dtype=bool)
        zero = (hashes[:, 0] == 0) & (hashes[:, 1] == 0)
        rows = np.flatnonzero(~zero) if zero.any() else np.arange(n)
        if len(rows) < n:  # the zero hash marks an empty slot, so it is tracked apart
            first_zero = int(np.flatnonzero(zero)[0])
            keep[first_zero] = not self._zero_seen
            self.distinct += int(not self._zero_seen)
            self._zero_seen = True
        done = 0
        while done < len(rows):
            live = self.distinct - self._zero_seen  # hashes in the table
            if self.spilled:
                # a mapped table takes the rest of the batch in hash order, so it is read from start
                # to end; the sort is stable and the rows before ``done`` all came first, so first
                # occurrences still win. It grows first by exactly what the rest adds.
                rest = rows[done:]
                rows = np.concatenate([rows[:done], rest[np.argsort(hashes[rest, 0], kind="stable")]])
                self._reserve(live + count_new(self._table, self._bits, hashes, rows, done))
                done, added = insert_first(self._table, self._bits, hashes, rows, keep, done, len(rows))
                self.distinct += added
                break
            room = int(MAX_LOAD * (1 << self._bits)) - live
            if room <= 0:  # half full: double it (it grows with the new hashes, not with the batch)
                self._reserve(live + 1)
                continue
            done, added = insert_first(self._table, self._bits, hashes, rows, keep, done, room)
            self.distinct += added
        return keep

    def close(self) -> None:
        """Drop the table (and delete its file, if it has one)."""
        self._table = np.zeros((0, 2), np.uint64)
        self._finalizer()

    def _reserve(self, count: int) -> None:
        """Grow (by doubling) until ``count`` hashes keep the table at most half full."""
        bits = self._bits
        while count > MAX_LOAD * (1 << bits):
            bits += 1
        if bits > self._bits:
            self._grow(bits)

    def _grow(self, bits: int) -> None:
        old, old_path = self._table, self._path
        self._table = self._new_table(bits)
        move_all(old, self._table, bits)
        del old
        if old_path is not None:
            old_path.unlink(missing_ok=True)

    def _new_table(self, bits: int) -> np.ndarray:
        self._bits = bits
        nbytes = (1 << bits) * SLOT_BYTES
        if nbytes <= self.memory_limit:
            return np.zeros((1 << bits, 2), dtype=np.uint64)
        if self.spill_dir is None:
            raise MemoryError(f"the dedup table needs {nbytes:,} bytes, more than its memory limit of "
                              f"{self.memory_limit:,}, and it has no spill directory")
        self.spilled = True
        self._path = temp_path_for(self.spill_dir / "dedup-table")
        if hasattr(self, "_finalizer"):
            self._finalizer.detach()
            self._finalizer = weakref.finalize(self, _remove, [self._path])
        # a new file reads as zeros without being written: the empty table costs no disk until used
        return np.memmap(self._path, dtype=np.uint64, mode="w+", shape=(1 << bits, 2))


def _remove(paths: list[Path | None]) -> None:
    for path in paths:
        if path is not None:
            path.unlink(missing_ok=True)


def partition_of(hashes: np.ndarray, n_partitions: int) -> np.ndarray:
    """The shuffle partition of each hash: its top bits scaled to ``n_partitions`` (int64)."""
    if n_partitions < 1:
        raise ValueError(f"n_partitions must be positive, not {n_partitions}")
    hi = np.ascontiguousarray(hashes[:, 0], dtype=np.uint64)
    # (hi >> 32) * n >> 32: a uniform split without 128-bit arithmetic, for n below 2^32
    return (((hi >> np.uint64(32)) * np.uint64(n_partitions)) >> np.uint64(32)).astype(np.int64)


def first_in_partition(hashes: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """``keep[i]`` = whether ``positions[i]`` is the smallest position among the rows holding
    ``hashes[i]``. ``positions`` is the records' source order (e.g. ``segment << 32 | row``); the
    rows may come in any order (as a shuffle delivers them)."""
    order = np.lexsort((positions, hashes[:, 1], hashes[:, 0]))
    h = hashes[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (h[1:, 0] != h[:-1, 0]) | (h[1:, 1] != h[:-1, 1])
    keep = np.empty(len(order), dtype=bool)
    keep[order] = new
    return keep
