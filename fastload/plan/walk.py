"""The walk behind the shard-aware orders: records taken unit by unit (blocks or shards) in a
keyed walk order, the walk cut into partitions and windows, samples permuted within each window.

Positions map to records in three steps, each a bijection, evaluated on arrays of positions:

1. **Partitions.** With ``partitions`` P > 1, position p belongs to partition p % P, at place
   p // P in it; partition j is the j-th of P consecutive, near-equal stretches of the walk
   (sizes differ by at most one record). Consecutive positions therefore cycle through the
   partitions, and positions with one residue modulo P read one stretch of the walk: what lets
   a node read only its own shards (see epoch.py). A shard that straddles two stretches is read
   by both partitions.
2. **Windows.** The walk is cut into windows of ``window`` units (and at every partition
   boundary); a position's place in its window goes through the window's keyed permutation.
   One window per partition (``window=None``) is a uniform shuffle of the partition.
3. **Walk.** The walked place falls in some unit; the record is that unit's first record plus
   the offset in it.
"""

from __future__ import annotations

import numpy as np

from .bijection import STREAM_GROUPS, STREAM_WINDOWS, bit_widths, derive_keys, permute, round_keys

_MAX_RUNS = 16  # above this many windows in a piece of positions, use per-element keys


class WindowedWalk:
    """An order over units (``starts``/``sizes``, non-empty, together covering [0, n)) walked in
    the order ``walk``, cut in ``partitions`` and windows of ``window`` units, windows permuted
    (keyed by seed and epoch) unless ``shuffle_windows`` is False.

    Memory is O(units + windows): a few int64 per unit and the round keys of each window.
    """

    def __init__(self, starts: np.ndarray, sizes: np.ndarray, walk: np.ndarray, *, n: int, seed: int,
                 epoch: int, window: int | None, partitions: int = 1, shuffle_windows: bool = True):
        self.n, self.partitions = n, partitions
        self._src = starts[walk]  # first record of the j-th walked unit
        self._end = np.cumsum(sizes[walk])  # end place of the j-th walked unit
        self._begin = self._end - sizes[walk]
        self._part_start = partition_starts(n, partitions)
        cuts = self._begin[:: window] if window is not None else self._begin[:1]
        begins = np.union1d(cuts, self._part_start[:-1])
        self._win_begin = begins[begins < n].astype(np.int64)
        self._win_end = np.append(self._win_begin[1:], n).astype(np.int64)
        self._shuffled = shuffle_windows
        win_size = (self._win_end - self._win_begin).astype(np.uint64)
        self._win_size = win_size
        self._win_low, self._win_high = bit_widths(win_size)
        self._win_keys = derive_keys(round_keys(seed, epoch, STREAM_WINDOWS), np.arange(len(self._win_begin)))

    @property
    def n_windows(self) -> int:
        return len(self._win_begin)

    def window_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(begin, end) places of every window in the walk."""
        return self._win_begin, self._win_end

    def stretch_sources(self, partitions) -> np.ndarray:
        """First records of the units that these partitions' stretches of the walk touch (a shard
        straddling two stretches belongs to both)."""
        parts = [np.zeros(0, dtype=np.int64)]
        for j in partitions:
            a, b = self._part_start[j], self._part_start[j + 1]
            if a < b:
                first = np.searchsorted(self._end, a, side="right")
                last = np.searchsorted(self._begin, b, side="left")
                parts.append(self._src[first:last])
        return np.concatenate(parts)

    def indices(self, positions: np.ndarray) -> np.ndarray:
        from .orders import _chunked, _positions  # orders builds on this module

        return _chunked(self._indices, _positions(positions, self.n))

    def _indices(self, flat: np.ndarray) -> np.ndarray:
        if self.partitions > 1:
            flat = self._part_start[flat % self.partitions] + flat // self.partitions
        if self._shuffled:
            flat = self._mix(flat)
        j = np.searchsorted(self._end, flat, side="right")
        return self._src[j] + (flat - self._begin[j])

    def _mix(self, flat: np.ndarray) -> np.ndarray:
        w = np.searchsorted(self._win_end, flat, side="right")
        offset = (flat - self._win_begin[w]).astype(np.uint64)
        runs = np.flatnonzero(w[1:] != w[:-1]) + 1
        if len(runs) < _MAX_RUNS:
            # Loaders ask for consecutive positions, so a piece spans a few windows: a
            # shared-key pass per window maps 10**6 positions in 59 ms, per-element keys 105.
            mixed = np.empty_like(offset)
            for a, b in zip([0, *runs], [*runs, len(w)]):
                g = w[a]
                mixed[a:b] = permute(offset[a:b], self._win_size[g], self._win_low[g],
                                     self._win_high[g], self._win_keys[:, g])
        else:
            mixed = permute(offset, self._win_size[w], self._win_low[w], self._win_high[w],
                            self._win_keys[:, w])
        return self._win_begin[w] + mixed.astype(np.int64)


def partition_starts(n: int, partitions: int) -> np.ndarray:
    """The P + 1 bounds of P near-equal consecutive stretches of [0, n): the first n % P hold one
    more record, which is what makes p -> (p % P, p // P) a bijection onto them."""
    j = np.arange(partitions + 1, dtype=np.int64)
    return j * (n // partitions) + np.minimum(j, n % partitions)


def keyed_walk(n_units: int, seed: int, epoch: int, stream: int = STREAM_GROUPS) -> np.ndarray:
    """A keyed random order of [0, n_units) (NumPy-version independent)."""
    walk = permute(np.arange(n_units, dtype=np.uint64), np.uint64(n_units), *bit_widths(n_units),
                   round_keys(seed, epoch, stream))
    return walk.astype(np.int64)
