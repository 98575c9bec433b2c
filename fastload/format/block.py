"""Lay rows out as blocks: columnar raw bytes, then compressed and checksummed.

Raw block layout (see docs/format.md): for each field in schema order, 8-byte aligned, either a
fixed column (``n * itemsize`` bytes) or a variable column (``n+1`` uint32 offsets followed by the
payload bytes). The column start offsets go to the shard's index, not into the block, so a reader
can gather a field from many blocks without touching anything but the rows it wants.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SchemaError
from .codec import checksum, compress
from .columns import Converted, VarColumn, row_bytes, slice_converted
from .schema import Schema
from .spec import COLUMN_ALIGN, MAX_BLOCK_RAW, VAR_OFFSET_DTYPE, align_up


@dataclass
class EncodedBlock:
    """One block ready to be appended to a shard."""

    stored: bytes | np.ndarray  # the bytes written to the file (picklable for pack workers)
    raw_size: int
    n_records: int
    codec: int
    checksum: int
    col_offsets: np.ndarray  # uint32 per field: column start within the raw bytes


def layout(schema: Schema, conv: Converted, n: int) -> tuple[np.ndarray, int]:
    """Column start offsets within the raw block, and the raw size."""
    offsets = np.zeros(len(schema), dtype=np.uint32)
    pos = 0
    for j, f in enumerate(schema):
        pos = align_up(pos, COLUMN_ALIGN)
        offsets[j] = pos
        if f.is_fixed:
            pos += n * f.itemsize
        else:
            col: VarColumn = conv[f.name]
            pos += (n + 1) * VAR_OFFSET_DTYPE.itemsize + int(col.offsets[-1])
        if pos > MAX_BLOCK_RAW:
            raise SchemaError(
                f"a block would exceed 4 GiB at field {f.name!r}; a single record this large is not supported"
            )
    return offsets, pos


def encode_block(schema: Schema, conv: Converted, n: int, codec: int, level: int) -> EncodedBlock:
    """Write ``n`` converted rows into one block's raw bytes, then compress and checksum them."""
    col_offsets, raw_size = layout(schema, conv, n)
    raw = np.zeros(raw_size, dtype=np.uint8)
    for j, f in enumerate(schema):
        start = int(col_offsets[j])
        if f.is_fixed:
            arr = np.ascontiguousarray(conv[f.name])
            nbytes = n * f.itemsize
            raw[start : start + nbytes] = arr.view(np.uint8).reshape(-1)
        else:
            col = conv[f.name]
            head = (n + 1) * VAR_OFFSET_DTYPE.itemsize
            raw[start : start + head].view(VAR_OFFSET_DTYPE)[:] = col.offsets
            raw[start + head : start + head + int(col.offsets[-1])] = col.data
    used_codec, stored = compress(raw, codec, level)
    return EncodedBlock(
        stored=stored,
        raw_size=raw_size,
        n_records=n,
        codec=used_codec,
        checksum=checksum(stored),
        col_offsets=col_offsets,
    )


class BlockBuilder:
    """Accumulates converted rows and cuts a block each time ``block_size`` raw bytes are reached."""

    def __init__(self, schema: Schema, block_size: int, codec: int, level: int):
        self.schema = schema
        self.block_size = block_size
        self.codec = codec
        self.level = level
        self._pending: list[tuple[Converted, int]] = []
        self._pending_sizes: list[np.ndarray] = []
        self._pending_bytes = 0

    def add(self, conv: Converted, n: int) -> list[EncodedBlock]:
        """Add rows; return the blocks completed by them (in order)."""
        if n == 0:
            return []
        sizes = row_bytes(self.schema, conv, n)
        self._pending.append((conv, n))
        self._pending_sizes.append(sizes)
        self._pending_bytes += int(sizes.sum())
        blocks = []
        while self._pending_bytes >= self.block_size:
            blocks.append(self._cut(self._rows_for_block()))
        return blocks

    def flush(self) -> list[EncodedBlock]:
        """Emit the remaining rows as a final (smaller) block."""
        total = sum(n for _, n in self._pending)
        return [self._cut(total)] if total else []

    def _rows_for_block(self) -> int:
        """Smallest number of pending rows whose bytes reach the block size (at least one row)."""
        sizes = np.concatenate(self._pending_sizes)
        cum = np.cumsum(sizes)
        return int(np.searchsorted(cum, self.block_size, side="left")) + 1

    def _cut(self, rows: int) -> EncodedBlock:
        pieces: list[Converted] = []
        taken = 0
        while taken < rows:
            conv, n = self._pending[0]
            take = min(n, rows - taken)
            pieces.append(slice_converted(conv, 0, take))
            if take == n:
                self._pending.pop(0)
                self._pending_sizes.pop(0)
            else:
                self._pending[0] = (slice_converted(conv, take, n), n - take)
                self._pending_sizes[0] = self._pending_sizes[0][take:]
            taken += take
        self._pending_bytes = int(sum(s.sum() for s in self._pending_sizes))
        merged = pieces[0] if len(pieces) == 1 else _concat(self.schema, pieces)
        return encode_block(self.schema, merged, rows, self.codec, self.level)


def _concat(schema: Schema, pieces: list[Converted]) -> Converted:
    out: Converted = {}
    for f in schema:
        parts = [p[f.name] for p in pieces]
        if f.is_fixed:
            out[f.name] = np.concatenate(parts)
        else:
            lengths = np.concatenate([p.lengths() for p in parts])
            offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets[1:])
            out[f.name] = VarColumn(offsets, np.concatenate([p.data for p in parts]))
    return out
