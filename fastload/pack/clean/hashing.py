"""Content hashes of records for exact deduplication: XXH3-128 over canonical bytes.

A field's canonical bytes are its stored bytes: a text's UTF-8, a bytes/image/json payload, a
number or fixed array in its stored dtype, little-endian (with ``-0.0`` made ``0.0`` and every
NaN the same NaN, so equal numbers hash equal, as ``pandas.drop_duplicates`` compares them). A
record's hash is

* one field: ``xxh3_128(canonical bytes)``;
* several fields: ``xxh3_128`` of the concatenated 16-byte digests (``xxh3_128_digest``, big
  endian) of each field in the order given, so no two different records frame the same bytes;
* a null: :data:`NULL_DIGEST` in place of the field's digest, unlike any value's (an empty text
  or a zero hashes as its bytes).

Text can be normalised for the hash only (the stored text is unchanged), in this order: ``nfc``
(Unicode NFC, Arrow's ``utf8_normalize``, run only on rows holding a code point from U+0300 up),
``case`` (Arrow's ``utf8_lower``) and ``whitespace`` (each run of Python's ``str.isspace``
characters as one space, none at the ends: ``" ".join(text.split())``). Hashes are ``(n, 2)``
uint64 arrays: column 0 is the digest's high half, column 1 its low half.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from ... import _row_hash
from ..._kernels.text_norm import collapse_whitespace, rows_with_byte_at_least
from ...format.columns import VarColumn
from ...format.schema import Field, Schema
from .arrow_view import arrow_array, row_masks

NORMALIZATIONS = ("nfc", "case", "whitespace")  # in the order they apply
# a null's digest: XXH3-128 with another seed, so it equals no value's (short of a 2^-128 collision)
NULL_DIGEST = xxhash.xxh3_128_intdigest(b"fastload null", seed=0x6E756C6C)
_NFC_STABLE_BELOW = 0xCC  # lead byte of U+0300: every code point below it is NFC on its own and combines with nothing
_NULL_PAIR = np.array([NULL_DIGEST >> 64, NULL_DIGEST & (2**64 - 1)], dtype=np.uint64)
_NULL_PAIR.flags.writeable = False


def record_hashes(schema: Schema, conv: Any, n: int, fields: Sequence[str],
                  normalize: Sequence[str] = ()) -> np.ndarray:
    """``(n, 2)`` uint64: the hash of each of ``n`` converted rows over ``fields``."""
    masks = row_masks(conv)
    per_field = [field_hashes(schema[name], conv[name], n, masks.get(name), normalize) for name in fields]
    if len(per_field) == 1:
        return per_field[0]
    digests = np.empty((n, 2 * len(per_field)), dtype=">u8")  # each field's digest, big endian
    for j, h in enumerate(per_field):
        digests[:, 2 * j : 2 * j + 2] = h
    out = np.empty((n, 2), dtype=np.uint64)
    _row_hash.fixed(digests.view(np.uint8).reshape(-1), 16 * len(per_field), out)
    return out


def field_hashes(f: Field, col: Any, n: int, valid: np.ndarray | None = None,
                 normalize: Sequence[str] = ()) -> np.ndarray:
    """``(n, 2)`` uint64: the hash of one field's canonical bytes in each row (nulls: NULL_DIGEST)."""
    out = np.empty((n, 2), dtype=np.uint64)
    if isinstance(col, VarColumn):
        if f.kind == "str" and normalize:
            col = normalized_text(f, col, n, normalize)
        elif f.kind == "array" and f.np_dtype.kind == "f":
            col = _canonical_var_floats(f, col, n)
        _row_hash.rows(col.data, col.offsets, out)
    else:
        values = np.ascontiguousarray(col, dtype=f.np_dtype.newbyteorder("<"))
        if values.dtype.kind == "f":
            values = _canonical_floats(values)
        width = values.dtype.itemsize * (values.size // n if n else 0)
        _row_hash.fixed(values.view(np.uint8).reshape(-1), width, out)
    if valid is not None:
        out[~valid] = _NULL_PAIR
    return out


def normalized_text(f: Field, col: VarColumn, n: int, normalize: Sequence[str]) -> VarColumn:
    """A text column after the normalisations, as offsets and UTF-8 bytes."""
    if "nfc" in normalize:
        may_change = np.empty(n, dtype=np.bool_)
        rows_with_byte_at_least(col.data, col.offsets, _NFC_STABLE_BELOW, may_change)
        if may_change.any():
            arr = arrow_array(f, col, n)
            done = pc.utf8_normalize(arr.filter(pa.array(may_change)), form="NFC")
            col = _var_column(pc.replace_with_mask(arr, pa.array(may_change), done), n)
    if "case" in normalize:
        col = _var_column(pc.utf8_lower(arrow_array(f, col, n)), n)
    if "whitespace" in normalize:
        data = np.empty(len(col.data), dtype=np.uint8)
        offsets = np.empty(n + 1, dtype=np.int64)
        collapse_whitespace(col.data, col.offsets, data, offsets)
        col = VarColumn(offsets, data[: offsets[-1]])
    return col


def _var_column(arr: pa.Array, n: int) -> VarColumn:
    """An Arrow string array's offsets and bytes (rebased to start at 0)."""
    arr = arr.cast(pa.large_string())
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + n + 1]
    data = arr.buffers()[2]
    data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    return VarColumn(offsets - offsets[0], data[offsets[0] : offsets[-1]])


def _canonical_floats(values: np.ndarray) -> np.ndarray:
    """-0.0 as 0.0 and every NaN as one NaN (a copy only when some value needs it)."""
    zero_or_nan = (values == 0) | np.isnan(values)
    if not zero_or_nan.any():
        return values
    out = values.copy()
    out[values == 0] = 0
    out[np.isnan(values)] = np.nan
    return out


def _canonical_var_floats(f: Field, col: VarColumn, n: int) -> VarColumn:
    if len(f.shape) == 1:
        values = col.data.view(f.np_dtype.newbyteorder("<"))
        fixed = _canonical_floats(values)
        return col if fixed is values else VarColumn(col.offsets, fixed.view(np.uint8))
    data = col.data.copy()  # each payload: its shape (int64 per dimension), then the values
    prefix = 8 * len(f.shape)
    for i in range(n):
        start, stop = int(col.offsets[i]) + prefix, int(col.offsets[i + 1])
        row = np.frombuffer(data[start:stop].tobytes(), f.np_dtype.newbyteorder("<"))
        data[start:stop] = _canonical_floats(row).view(np.uint8)
    return VarColumn(col.offsets, data)
