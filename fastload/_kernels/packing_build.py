"""Packing-index build kernels: document lengths from offset tables, and the laid-out stream bounds.

Each is one pass that replaces a chain of whole-array NumPy steps (each of which reads and
writes every document once more): at 2.5 M documents the lengths take ~0.4 ms here (their
tables in memory) against 20 ms in NumPy, and the bounds of a grid layout 9 ms in one thread (the caller runs stretches of
columns in threads) against 32 ms for materialising the order, gathering the lengths in it and
summing them.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types

# libc's pread, linked by name (unlike a ctypes pointer, this keeps the kernel cacheable)
_pread = types.ExternalFunction("pread", types.intp(types.intc, types.voidptr, types.uintp, types.int64))


@njit(nogil=True, cache=True)
def block_lengths(words, table_at, records, payload, itemsize, out, fd=-1):
    """Token counts of the records of consecutive blocks, from their variable column's offset tables.

    Block b's table is ``records[b] + 1`` u4 offsets at ``words[table_at[b]:]`` (a shard's map
    read in place as u4 words, or the tables copied out of decompressed blocks), or, given a file
    ``fd``, at its byte ``table_at[b]``: each is then read with one ``pread`` into ``words`` (room
    for the largest table) and counted while in cache, without the GIL (2.8 ms for 2,000 blocks at
    2.5 M documents in one thread, where a Python loop of reads into one array took 4.5 ms).
    ``payload[b]`` is the bytes the block holds after its table. Writes each record's tokens
    (bytes / ``itemsize``, a power of two) into ``out`` and returns ``(status, where, total
    tokens)``: status 0, or 1 for a block whose table leaves ``words`` or whose offsets do not
    start at 0, decrease or pass its payload (``where`` is the block), or 2 for a record holding
    a partial token (``where`` is the record), or 3 for a table not read whole from ``fd`` (an
    error or the file's end; ``where`` is the block: the caller reads them again to say which).
    """
    shift = 0
    while (1 << shift) < itemsize:
        shift += 1
    r = 0
    total = 0
    for b in range(len(records)):
        n = records[b]
        at = table_at[b]
        if fd >= 0:
            if n + 1 > len(words) or _pread(fd, words.ctypes.data, (n + 1) * 4, at) != (n + 1) * 4:
                return 3, b, total
            at = 0
        elif at < 0 or at + n + 1 > len(words):
            return 1, b, total
        status, where, tokens = _table_lengths(words, at, n, payload[b], itemsize, shift, b, r, out)
        if status:
            return status, where, total
        total += tokens
        r += n
    return 0, -1, total


@njit(nogil=True, cache=True)
def _table_lengths(words, at, n, payload, itemsize, shift, b, r, out):
    """Block b's ``n`` token counts into ``out[r:]`` from its table at ``words[at:]``: (0, -1,
    tokens), or block_lengths' fault."""
    if words[at] != 0:
        return 1, b, 0
    # each size from its two offsets, the checks OR-ed together: no value carried from one record
    # to the next, so the loop vectorises (0.35 ms for 2.5 M records, against 4 ms when each
    # offset was kept for the next step). Offsets that never decrease from 0 and end within the
    # payload all lie within it; a bad block is walked again to name its first fault.
    table = words[at:at + n + 1]
    lengths = out[r:r + n]  # indexed from 0 by the loop's counter: no negative-index wrap to check
    seen = np.int64(0)
    for i in range(n):
        size = np.int64(table[i + 1]) - np.int64(table[i])
        seen |= size
        lengths[i] = size >> shift
    last = np.int64(table[n])
    if seen < 0 or last > payload or seen & (itemsize - 1):
        return _first_fault(words, at, n, payload, itemsize, b, r)
    return 0, -1, last >> shift


@njit(nogil=True, cache=True)
def _first_fault(words, at, n, payload, itemsize, b, r):
    """block_lengths' answer for a block known to be bad: its first record whose offset decreases
    or passes the payload (status 1, the block), or holds a partial token (status 2, the record)."""
    prev = 0
    for i in range(n):
        cur = np.int64(words[at + i + 1])
        if cur < prev or cur > payload:
            return 1, b, 0
        if (cur - prev) % itemsize:
            return 2, r + i, 0
        prev = cur
    return 1, b, 0


@njit(nogil=True, cache=True)
def grid_walk(lengths, col_order, row_order, j0, j1, token, piece, separator, out):
    """Stream bounds of walked columns ``j0:j1`` of a grid layout
    (:class:`fastload.plan.document_order.GridOrder`): column ``col_order[j]``'s cells in the
    order of ``row_order``, skipping those past the last document. The first of these pieces
    starts at stream position ``token`` and is piece ``piece``; writes ``out[k + 1] = out[k] +
    tokens of piece k (+ 1 with a separator)`` for each.

    Each step reads a length a grid row away from the last (a cache miss that the next steps'
    independent loads overlap): ~3 ns a document. A tiled walk reading 64 columns' cells of a
    row together was slower (12 ms against 8 ms at 2.5 M documents), and so was laying the
    lengths out column by column first (4.5 + 4 ms).
    """
    n = len(lengths)
    cols = len(col_order)
    acc = token
    k = piece + 1
    for j in range(j0, j1):
        c = col_order[j]
        for i in range(len(row_order)):
            d = row_order[i] * cols + c
            if d < n:
                acc += lengths[d] + separator
                out[k] = acc
                k += 1
