"""Epoch orders: which record sits at each position of an epoch's global sample sequence.

An order is a bijection from positions [0, n) to record indices [0, n), evaluated on whole
arrays of positions, so a loader asks for a batch's (or a chunk's) records in one call and never
holds a permutation of the dataset.
"""

from __future__ import annotations

import numbers
from typing import Protocol, runtime_checkable

import numpy as np

from .bijection import (STREAM_BLOCKS, STREAM_FULL, STREAM_GROUPS, bit_widths, derive_keys, permutation, permute,
                        round_keys)
from .walk import WindowedWalk, keyed_walk

VIRTUAL_BLOCK = 1024  # records per block when "block" is asked for without real block starts
MAX_N = 1 << 62  # the Feistel works on uint64 with a spare bit for cycle-walking
SHUFFLE_MODES = ("full", "block", "shards", "none")
# Positions are mapped in pieces whose temporaries stay in L2: a full shuffle of 10**6
# positions takes 31 ms in 32k pieces against 46 ms in one piece.
_CHUNK = 1 << 15


@runtime_checkable
class Order(Protocol):
    """Maps positions of an epoch's global sample sequence to record indices."""

    n: int

    def indices(self, positions: np.ndarray) -> np.ndarray:
        """int64 record indices for int64 positions in [0, n), same shape."""
        ...


class SequentialOrder:
    """No shuffle: position p is record p."""

    def __init__(self, n: int):
        self.n = _check_int("n", n, 0, MAX_N)

    def indices(self, positions: np.ndarray) -> np.ndarray:
        """The positions themselves, as a new int64 array."""
        return _positions(positions, self.n).copy()

    def __repr__(self) -> str:
        return f"SequentialOrder(n={self.n})"


class FullShuffle:
    """A uniform-looking random permutation of [0, n), computed per position in O(1) memory.

    It holds only n and six 64-bit round keys, whatever n is: a dataset far larger than memory
    is shuffled without materialising its permutation.
    """

    def __init__(self, n: int, seed: int, epoch: int):
        self.n = _check_int("n", n, 0, MAX_N)
        self.seed = _check_int("seed", seed)
        self.epoch = _check_int("epoch", epoch, 0)
        self._keys = round_keys(self.seed, self.epoch, STREAM_FULL)
        self._low, self._high = bit_widths(self.n)

    @property
    def feistel(self) -> tuple[np.ndarray, int, int]:
        """The round keys and the bit widths of the halves: what evaluates the permutation
        elsewhere (batch_formula.py)."""
        return self._keys.copy(), int(self._low), int(self._high)

    def indices(self, positions: np.ndarray) -> np.ndarray:
        """The records at these positions of the shuffled epoch."""
        return _chunked(self._indices, _positions(positions, self.n))

    def permutation(self) -> np.ndarray:
        """The whole order, ``indices(arange(n))``, computed at once (several times faster)."""
        return permutation(self.n, self._low, self._high, self._keys).astype(np.int64)

    def _indices(self, pos: np.ndarray) -> np.ndarray:
        out = permute(pos.astype(np.uint64), np.uint64(self.n), self._low, self._high, self._keys)
        return out.astype(np.int64)

    def __repr__(self) -> str:
        return f"FullShuffle(n={self.n}, seed={self.seed}, epoch={self.epoch})"


class BlockShuffle(WindowedWalk):
    """Quasi-random order keeping reads sequential: shuffled blocks, samples mixed per window.

    The blocks are walked in a random order; each run of ``window`` consecutive walked blocks
    forms a window whose samples are permuted among themselves. A batch therefore draws from
    about ``window`` blocks (a handful of sequential reads) rather than from ``batch_size``
    blocks. Memory is O(blocks): a few int64 per block and ROUNDS keys per window.

    With ``group_starts`` (the first record of each shard), the walk is group-major: the groups
    are walked in a random order and each group's blocks in a random order within it, so a window
    lies in one or two shards and each shard is read in one stretch of the epoch. That is what a
    remote dataset needs: the first batch waits for one shard, not ``window`` of them, and a cache
    smaller than the dataset holds each shard once per epoch instead of re-downloading it.
    ``partitions`` > 1 cuts the walk in that many stretches read in turn (see walk.py).
    """

    def __init__(self, block_starts: np.ndarray, n: int, seed: int, epoch: int, window: int = 8,
                 group_starts: np.ndarray | None = None, partitions: int = 1):
        self.n = _check_int("n", n, 0, MAX_N)
        self.seed = _check_int("seed", seed)
        self.epoch = _check_int("epoch", epoch, 0)
        self.window = _check_int("window", window, 1)
        partitions = _check_int("partitions", partitions, 1)
        starts, sizes = _blocks(block_starts, self.n)
        self.n_blocks = len(starts)
        # walk order of the blocks: a keyed bijection too, so it is NumPy-version independent
        if group_starts is None:
            walk = keyed_walk(self.n_blocks, self.seed, self.epoch, STREAM_BLOCKS)
        else:
            walk = _group_major_walk(starts, _groups(group_starts, self.n), self.seed, self.epoch)
        self.grouped = group_starts is not None
        super().__init__(starts, sizes, walk, n=self.n, seed=self.seed, epoch=self.epoch, window=self.window,
                         partitions=partitions)

    def __repr__(self) -> str:
        return (f"BlockShuffle(n={self.n}, blocks={self.n_blocks}, seed={self.seed}, "
                f"epoch={self.epoch}, window={self.window}, grouped={self.grouped}, "
                f"partitions={self.partitions})")


class ShardWindows(WindowedWalk):
    """Shards in a keyed random order, samples permuted uniformly within each window of
    ``window`` consecutive walked shards: the order for a remote dataset larger than its cache.

    A window's shards are all read throughout the window's stretch of the epoch, so a cache that
    holds a window (and the next one arriving) downloads each shard once per epoch, while a batch
    mixes samples of ``window`` shards. ``window`` >= the shard count is a uniform shuffle of
    a random shard order (not :class:`FullShuffle`'s numbers).
    """

    def __init__(self, group_starts: np.ndarray, n: int, seed: int, epoch: int, window: int,
                 partitions: int = 1):
        self.n = _check_int("n", n, 0, MAX_N)
        self.seed = _check_int("seed", seed)
        self.epoch = _check_int("epoch", epoch, 0)
        self.window = _check_int("window", window, 1)
        partitions = _check_int("partitions", partitions, 1)
        starts, sizes = _blocks(_groups(group_starts, self.n), self.n)
        self.n_shards = len(starts)
        super().__init__(starts, sizes, keyed_walk(self.n_shards, self.seed, self.epoch), n=self.n,
                         seed=self.seed, epoch=self.epoch, window=self.window, partitions=partitions)

    def __repr__(self) -> str:
        return (f"ShardWindows(n={self.n}, shards={self.n_shards}, seed={self.seed}, epoch={self.epoch}, "
                f"window={self.window}, partitions={self.partitions})")


class PartitionedShuffle(WindowedWalk):
    """``partitions`` > 1 stretches of a random shard order, each permuted uniformly: the full
    shuffle when nodes read only their own partitions. ``shuffle=False`` keeps the records in
    order within partitions of the unshuffled shards (the sequential order, partitioned)."""

    def __init__(self, group_starts: np.ndarray | None, n: int, seed: int, epoch: int, partitions: int,
                 shuffle: bool = True):
        self.n = _check_int("n", n, 0, MAX_N)
        self.seed = _check_int("seed", seed)
        self.epoch = _check_int("epoch", epoch, 0)
        partitions = _check_int("partitions", partitions, 1)
        if group_starts is None:
            group_starts = np.arange(0, max(self.n, 1), VIRTUAL_BLOCK, dtype=np.int64)
        starts, sizes = _blocks(_groups(group_starts, self.n), self.n)
        walk = keyed_walk(len(starts), self.seed, self.epoch) if shuffle else np.arange(len(starts))
        self.shuffled = shuffle
        super().__init__(starts, sizes, walk, n=self.n, seed=self.seed, epoch=self.epoch, window=None,
                         partitions=partitions, shuffle_windows=shuffle)

    def __repr__(self) -> str:
        return (f"PartitionedShuffle(n={self.n}, seed={self.seed}, epoch={self.epoch}, "
                f"partitions={self.partitions}, shuffle={self.shuffled})")


def _group_major_walk(starts: np.ndarray, group_starts: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """Block walk: groups in a keyed random order, each group's blocks keyed-shuffled within it."""
    n_blocks = len(starts)
    group = np.searchsorted(group_starts, starts, side="right") - 1  # blocks are sorted: groups are runs
    first = np.searchsorted(group, np.arange(len(group_starts)), side="left")
    size = np.diff(np.append(first, n_blocks))  # blocks per group (0 for an empty group)
    local = (np.arange(n_blocks) - first[group]).astype(np.uint64)
    low, high = bit_widths(size[group])
    keys = derive_keys(round_keys(seed, epoch, STREAM_BLOCKS), group)
    shuffled_local = permute(local, size[group].astype(np.uint64), low, high, keys).astype(np.int64)
    n_groups = len(group_starts)
    group_walk = keyed_walk(n_groups, seed, epoch, STREAM_GROUPS)
    offset = np.empty(n_groups, dtype=np.int64)  # first walk position of each group
    offset[group_walk] = np.concatenate([[0], np.cumsum(size[group_walk])[:-1]])
    walk = np.empty(n_blocks, dtype=np.int64)
    walk[offset[group] + shuffled_local] = np.arange(n_blocks)
    return walk


def _groups(group_starts, n: int) -> np.ndarray:
    """Validated group (shard) starts: sorted, from 0, within [0, n]; repeats (empty shards) kept."""
    g = np.asarray(group_starts)
    if g.ndim != 1 or g.size == 0 or g.dtype.kind not in "iu":
        raise ValueError("group_starts must be a non-empty 1-D array of integer record indices")
    g = g.astype(np.int64)
    if g[0] != 0 or np.any(np.diff(g) < 0) or g[-1] > max(n, 0):
        raise ValueError(f"group_starts must begin with 0, be sorted and lie within [0, n={n}]")
    return g


def make_order(mode: str | bool | None, n: int, seed: int, epoch: int,
               block_starts: np.ndarray | None = None, window: int = 8,
               group_starts: np.ndarray | None = None, partitions: int = 1) -> Order:
    """The order for a shuffle mode: "full" (or True), "block", "shards", or "none" (or False/None).

    ``group_starts`` (the first record of each shard) makes "block" walk shard by shard; "shards"
    needs it (its ``window`` counts shards, "block"'s counts blocks). ``partitions`` > 1 splits
    the epoch in that many stretches of shards read in turn (walk.py); 1 keeps the orders whose
    numbers are pinned by the resume contract.
    """
    if mode is True:
        mode = "full"
    elif mode is False or mode is None:
        mode = "none"
    if not isinstance(mode, str) or mode not in SHUFFLE_MODES:
        raise ValueError(
            f"shuffle must be one of 'full', 'block', 'shards', 'none', True, False or None; got {mode!r}")
    partitions = _check_int("partitions", partitions, 1)
    if mode == "block":
        if block_starts is None:
            block_starts = np.arange(0, max(n, 1), VIRTUAL_BLOCK, dtype=np.int64)
        return BlockShuffle(block_starts, n, seed, epoch, window, group_starts=group_starts, partitions=partitions)
    if mode == "shards":
        if group_starts is None:
            raise ValueError("shuffle 'shards' needs group_starts, the first record of each shard")
        return ShardWindows(group_starts, n, seed, epoch, window, partitions)
    if partitions > 1:
        return PartitionedShuffle(group_starts, n, seed, epoch, partitions, shuffle=mode == "full")
    if mode == "full":
        return FullShuffle(n, seed, epoch)
    return SequentialOrder(n)


def _chunked(fn, pos: np.ndarray) -> np.ndarray:
    """fn over the flattened positions in cache-sized pieces, reshaped back."""
    flat = pos.ravel()
    if flat.size == 0:
        return np.empty(pos.shape, dtype=np.int64)
    if flat.size <= _CHUNK:
        return fn(flat).reshape(pos.shape)
    out = np.empty(flat.shape, dtype=np.int64)
    for i in range(0, flat.size, _CHUNK):
        out[i:i + _CHUNK] = fn(flat[i:i + _CHUNK])
    return out.reshape(pos.shape)


def _positions(positions, n: int) -> np.ndarray:
    pos = np.asarray(positions)
    if pos.dtype.kind not in "iu":
        if pos.size:
            raise TypeError(f"positions must be integers, got dtype {pos.dtype}")
        pos = pos.astype(np.int64)
    if pos.size and (pos.min() < 0 or pos.max() >= n):
        raise IndexError(f"positions must be in [0, {n}); got values in "
                         f"[{pos.min()}, {pos.max()}]")
    return pos.astype(np.int64, copy=False)


def _blocks(block_starts, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Validated (starts, sizes) of the non-empty blocks."""
    starts = np.asarray(block_starts)
    if starts.ndim != 1 or (starts.size and starts.dtype.kind not in "iu"):
        raise ValueError("block_starts must be a 1-D array of integer record indices")
    starts = starts.astype(np.int64)
    if n == 0:
        return starts[:0], starts[:0]
    if starts.size == 0 or starts[0] != 0:
        raise ValueError("block_starts must begin with 0 (the first block's first record)")
    if np.any(np.diff(starts) < 0) or starts[-1] > n:
        raise ValueError(f"block_starts must be sorted and within [0, n={n}]")
    sizes = np.diff(np.append(starts, n))
    keep = sizes > 0  # repeated starts (empty shards, say) are empty blocks: nothing to walk
    return starts[keep], sizes[keep]


def _check_int(name: str, value, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {bounds}, got {value}")
    return value


__all__ = ["BlockShuffle", "FullShuffle", "Order", "PartitionedShuffle", "SequentialOrder", "ShardWindows",
           "make_order", "SHUFFLE_MODES", "VIRTUAL_BLOCK"]
