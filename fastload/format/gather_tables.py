"""Global block tables of the raw shards a dataset has mapped, for :func:`fastload._native.gather_multi`.

One row per block of every shard that has joined: its first record, the address of each fixed
field's column in it, and the address range of its bytes, which the C gather checks every read
against. A shard's rows are allocated when it first joins, sized by its own (validated) index, and
kept for it when its map goes and comes back; so memory follows the shards actually read, never the
block counts a manifest claims (a crafted ``blocks: 2**40`` allocates nothing).
"""

from __future__ import annotations

import threading

import numpy as np

from .shard_reader import ShardReader


class GatherTables:
    """Rows of the joined shards; ``registered[s]`` says whether shard ``s``'s rows are usable now."""

    def __init__(self, n_shards: int, fixed_columns: list[int]):
        self.shard_lo = np.zeros(n_shards, dtype=np.int64)  # shard s's rows: [shard_lo[s], shard_hi[s])
        self.shard_hi = np.zeros(n_shards, dtype=np.int64)  # an empty range: never joined
        self.registered = np.zeros(n_shards, dtype=bool)
        self.complete = n_shards == 0
        self.all_verified = True  # every block of every registered shard has been checked
        self._columns = list(fixed_columns)
        self._rows = 0
        self._alloc(0)
        self._lock = threading.Lock()

    def _alloc(self, capacity: int) -> None:
        """(Re)allocate the per-block arrays with room for ``capacity`` rows, keeping the rows so far.

        New arrays replace the old ones, which a gather running in another thread keeps alive and
        may finish reading: rows only ever move to a larger copy, so both hold the same values.
        """
        def grow(old: np.ndarray | None, dtype) -> np.ndarray:
            new = np.zeros(capacity, dtype=dtype)
            if old is not None:
                new[: self._rows] = old[: self._rows]
            return new

        self.block_first = grow(getattr(self, "block_first", None), np.int64)
        self.block_lo = grow(getattr(self, "block_lo", None), np.int64)  # first byte of the block
        self.block_hi = grow(getattr(self, "block_hi", None), np.int64)  # one past its last byte
        self.row_shard = grow(getattr(self, "row_shard", None), np.int64)
        self.verified = grow(getattr(self, "verified", None), bool)
        self.live = grow(getattr(self, "live", None), bool)  # the row's shard is registered
        old_addr = getattr(self, "column_addr", {})
        self.column_addr = {c: grow(old_addr.get(c), np.int64) for c in self._columns}

    def register(self, s: int, reader: ShardReader) -> None:
        """Shard ``s`` (all blocks stored raw) joins, or joins again after :meth:`unregister`."""
        n = reader.n_blocks
        with self._lock:
            lo = int(self.shard_lo[s])
            if int(self.shard_hi[s]) - lo != n:  # first join: rows at the end
                lo = self._rows
                if lo + n > len(self.block_first):
                    self._alloc(max(2 * len(self.block_first), lo + n, 64))
                self._rows = lo + n
            hi = lo + n
            start = reader.base_address + reader.block_offset
            self.block_first[lo:hi] = reader.first_record
            self.block_lo[lo:hi] = start
            self.block_hi[lo:hi] = start + reader.block_raw_size  # raw blocks: stored bytes are raw bytes
            self.row_shard[lo:hi] = s
            for column, addr in self.column_addr.items():
                addr[lo:hi] = reader.column_address(column)
            self.verified[lo:hi] = reader.verified_blocks()
            self.live[lo:hi] = True
            self.shard_lo[s], self.shard_hi[s] = lo, hi
            self.all_verified = self.all_verified and bool(self.verified[lo:hi].all())
            self.registered[s] = True  # set last: readers of the tables check this flag first
            self.complete = bool(self.registered.all())

    def unregister(self, s: int) -> None:
        """Shard ``s``'s map is going away: its rows must be filled again before use."""
        with self._lock:
            lo, hi = int(self.shard_lo[s]), int(self.shard_hi[s])
            self.registered[s] = False
            self.complete = False
            self.live[lo:hi] = False
            self.verified[lo:hi] = False  # a new reader checks its blocks again
            self.block_lo[lo:hi] = self.block_hi[lo:hi] = 0  # a stale row can never pass the C bounds check

    def shard_block(self, row: int) -> tuple[int, int]:
        """(shard, block within it) of a global row."""
        s = int(self.row_shard[row])
        return s, row - int(self.shard_lo[s])

    def mark_verified(self, rows: np.ndarray) -> None:
        with self._lock:
            self.verified[rows] = True
            self.all_verified = bool(self.verified[self.live].all())
