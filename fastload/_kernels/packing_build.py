"""Packing-index build kernels: document lengths from offset tables, and the laid-out stream bounds.

Each replaces a chain of whole-array NumPy steps (each of which reads and writes every document
once more): at 2.5 M documents the lengths take ~0.4 ms here (their tables in memory) against
20 ms in NumPy, and the bounds of a grid layout 3.5 ms in one thread (lay_grid, then
running_sum; the caller lays stretches of rows in threads) against 32 ms for materialising the
order, gathering the lengths in it and summing them.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types

# libc's pread, linked by name (unlike a ctypes pointer, this keeps the kernel cacheable)
_pread = types.ExternalFunction("pread", types.intp(types.intc, types.voidptr, types.uintp, types.int64))


@njit(nogil=True, cache=True)
def block_lengths(words, table_at, records, payload, itemsize, out, fds=None):
    """Token counts of the records of consecutive blocks, from their variable column's offset tables.

    Block b's table is ``records[b] + 1`` u4 offsets at ``words[table_at[b]:]`` (a shard's map
    read in place as u4 words, or the tables copied out of decompressed blocks), or, given files
    ``fds`` (one per block), at byte ``table_at[b]`` of file ``fds[b]``: each is then read with one
    ``pread`` into ``words`` (room for the largest table) and counted while in cache, without the
    GIL (~1.3-2 us a table, most of it the kernel's page-cache read; the blocks of several shards
    in one call, so a dataset's scan is one call per thread). ``payload[b]`` is the bytes the
    block holds after its table. Writes each record's tokens (bytes / ``itemsize``, a power of
    two) into ``out`` and returns ``(status, where, total tokens)``: status 0, or 1 for a block
    whose table leaves ``words`` or whose offsets do not start at 0, decrease or pass its payload
    (``where`` is the block), or 2 for a record holding a partial token (``where`` is the record),
    or 3 for a table not read whole from its file (an error or the file's end; ``where`` is the
    block: the caller reads it again to say which).
    """
    shift = 0
    while (1 << shift) < itemsize:
        shift += 1
    r = 0
    total = 0
    for b in range(len(records)):
        n = records[b]
        at = table_at[b]
        if fds is not None:
            if n + 1 > len(words) or _pread(fds[b], words.ctypes.data, (n + 1) * 4, at) != (n + 1) * 4:
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


LAY_ROWS = 8  # walk rows laid together: 3.5 ms at 2.5 M documents, against 4.0 ms for 4 and 4.4 ms for 16


@njit(nogil=True, cache=True)
def lay_grid(lengths, row_order, column_piece, full_cols, partial_at, separator, i0, i1, laid):
    """Walk rows ``i0:i1`` of a grid layout (:class:`fastload.plan.document_order.GridOrder`):
    ``laid[piece] = lengths[d] + separator`` for each of their cells (document d = row * cols +
    column), the piece being ``column_piece[column] + i``, less one past ``partial_at`` in a
    column without a cell in the partial last row (``column >= full_cols``).

    LAY_ROWS walk rows at a time, column by column: each column's cells of these rows are
    consecutive pieces (one write of 32 bytes) and the rows are read as a few sequential streams.
    The walk column by column, a row away from the last at each step, took 8-10 ms in one thread
    at 2.5 M documents (a cache miss per document) against 3 ms for this. Returns False when a
    laid value does not fit ``laid``'s u4 (a length of 2**32 - 1 with a separator), else True.
    """
    n = len(lengths)
    cols = len(column_piece)
    wide = np.int64(0)
    for a in range(i0, i1, LAY_ROWS):
        b = min(a + LAY_ROWS, i1)
        if a <= partial_at < b:  # the rows holding the partial last row: cell by cell
            for c in range(cols):
                for i in range(a, b):
                    d = row_order[i] * cols + c
                    if d < n:
                        v = np.int64(lengths[d]) + separator
                        wide |= v >> 32
                        laid[column_piece[c] + i - (1 if c >= full_cols and i > partial_at else 0)] = v
            continue
        rows = row_order[a:b] * cols
        shift = 1 if a > partial_at else 0
        for c in range(cols):
            at = column_piece[c] + a - (shift if c >= full_cols else 0)
            cells = laid[at:at + b - a]  # indexed from 0: no negative-index wrap to check
            for t in range(b - a):
                v = np.int64(lengths[rows[t] + c]) + separator
                wide |= v >> 32
                cells[t] = v
    return wide == 0


@njit(nogil=True, cache=True)
def running_sum(cells):
    """``cells[k]`` (u4) becomes the low 32 bits of ``cells[1] + ... + cells[k]``, in place, for k
    from 1; returns the whole sum. No check per step (a sum past 31 bits is seen at the end), so
    the loop is one add and one store: 0.7 ms at 2.5 M documents."""
    acc = np.int64(0)
    for k in range(1, len(cells)):
        acc += cells[k]
        cells[k] = acc & 0xFFFFFFFF
    return acc
