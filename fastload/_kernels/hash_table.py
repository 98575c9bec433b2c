"""An open-addressing set of 128-bit hashes, ordered by hash: the seen set of dedup.

Slot = the hash's top bits, linear probing, an all-zero slot is empty (the zero hash itself is
kept apart by the caller). Because a slot's number grows with the hash, inserting a batch in
hash order walks the table from start to end, which is what keeps a table mapped from a file
(beyond the memory limit) usable: each batch touches its pages in ascending order once.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def insert_first(table, bits, hashes, order, keep, start, limit):
    """For ``i`` in ``order[start:]``: insert ``hashes[i]`` (high, low) into ``table``
    (``(2**bits, 2)`` uint64, ``bits`` >= 1); ``keep[i]`` = whether it was absent. Stops after
    ``limit`` insertions, so the caller can grow the table first. Returns ``(next, inserted)``:
    where in ``order`` to go on, and how many were new. The caller skips the zero hash. An equal
    hash later in ``order`` is found in the table, so the first occurrence in ``order`` wins."""
    mask = table.shape[0] - 1
    shift = np.uint64(64 - bits)
    added = 0
    j = start
    while j < len(order) and added < limit:
        i = order[j]
        j += 1
        hi, lo = hashes[i, 0], hashes[i, 1]
        s = np.int64(hi >> shift)
        while True:
            t_hi, t_lo = table[s, 0], table[s, 1]
            if t_hi == 0 and t_lo == 0:
                table[s, 0] = hi
                table[s, 1] = lo
                keep[i] = True
                added += 1
                break
            if t_hi == hi and t_lo == lo:
                keep[i] = False
                break
            s = (s + 1) & mask
    return j, added


@njit(nogil=True, cache=True)
def count_new(table, bits, hashes, order, start):
    """How many distinct hashes of ``order[start:]`` (sorted by hash) ``table`` lacks: the exact
    growth an insertion of them needs, so a sorted batch is inserted without stopping (inserting
    only the low part of a sorted batch piles it into the low part of the table, where linear
    probing then runs for thousands of slots)."""
    mask = table.shape[0] - 1
    shift = np.uint64(64 - bits)
    new = 0
    for j in range(start, len(order)):
        i = order[j]
        hi, lo = hashes[i, 0], hashes[i, 1]
        if j > start:
            p = order[j - 1]
            if hashes[p, 0] == hi and hashes[p, 1] == lo:
                continue
        s = np.int64(hi >> shift)
        while True:
            t_hi, t_lo = table[s, 0], table[s, 1]
            if t_hi == 0 and t_lo == 0:
                new += 1
                break
            if t_hi == hi and t_lo == lo:
                break
            s = (s + 1) & mask
    return new


@njit(nogil=True, cache=True)
def move_all(old, new, bits):
    """Insert every hash of table ``old`` into the empty, larger table ``new`` (``2**bits``
    slots), in slot order."""
    mask = new.shape[0] - 1
    shift = np.uint64(64 - bits)
    for j in range(old.shape[0]):
        hi, lo = old[j, 0], old[j, 1]
        if hi == 0 and lo == 0:
            continue
        s = np.int64(hi >> shift)
        while new[s, 0] != 0 or new[s, 1] != 0:
            s = (s + 1) & mask
        new[s, 0] = hi
        new[s, 1] = lo
