"""The ``--drop-invalid`` rules: find records whose values are unusable, to drop them, not fail.

* ``image``: an image field's bytes do not decode (with the decoder the loader uses);
* ``utf8``: a text field's value is not valid UTF-8 (bytes given for text, or a lone surrogate);
* ``empty``: a text field holds "" or only whitespace (a null is not empty: it is a missing value);
* ``nan``: a float field (scalar or array) holds NaN or an infinity.

``image`` and ``utf8`` look at the source values before conversion, because the conversion
would otherwise reject the row (an error, or a skipped row under ``on_error="skip"``); ``empty``
and ``nan`` look at the converted values, vectorised. Each function returns a bool mask of
invalid rows per field it checked.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...format.columns import VarColumn
from ...format.schema import Field, Schema
from .arrow_view import arrow_array, row_masks

RULES = ("image", "utf8", "empty", "nan")  # also the order in which a record's drop is attributed
BEFORE_CONVERSION = ("image", "utf8")


def applicable(rule: str, f: Field) -> bool:
    if rule == "image":
        return f.kind == "image"
    if rule in ("utf8", "empty"):
        return f.kind == "str"
    return f.kind in ("scalar", "array") and f.np_dtype.kind == "f"


def invalid_source_rows(rule: str, schema: Schema, columns: dict[str, Any], n: int) -> np.ndarray:
    """Rows of source ``columns`` (aligned to the schema) that ``rule`` ('image' or 'utf8') rejects."""
    bad = np.zeros(n, dtype=bool)
    for f in schema:
        if applicable(rule, f) and f.name in columns:
            check = _decodes if rule == "image" else _is_utf8
            for i, value in enumerate(_source_values(columns[f.name])):
                if value is not None and not bad[i] and not check(value):
                    bad[i] = True
    return bad


def invalid_converted_rows(rule: str, schema: Schema, conv: Any, n: int) -> np.ndarray:
    """Rows of converted ``conv`` that ``rule`` ('empty' or 'nan') rejects."""
    bad = np.zeros(n, dtype=bool)
    masks = row_masks(conv)
    for f in schema:
        if not applicable(rule, f):
            continue
        valid = masks.get(f.name)
        field_bad = _empty_text(f, conv[f.name], n) if rule == "empty" else _non_finite(f, conv[f.name], n)
        if valid is not None:
            field_bad &= valid  # a null holds no value to judge
        bad |= field_bad
    return bad


# -- before conversion ----------------------------------------------------------------------------
def _source_values(col: Any) -> Iterator[Any]:
    """A source column's values as Python objects; Arrow text arrays are checked in C first, so
    only a column holding an invalid value is walked value by value."""
    if type(col).__module__.startswith("pyarrow"):
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        t = col.type
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            try:
                col.validate(full=True)
                return iter(())  # every value is valid UTF-8 (and these are not images)
            except pa.ArrowInvalid:
                col = col.view(pa.large_binary() if pa.types.is_large_string(t) else pa.binary())
        return iter(col.to_pylist())
    return iter(col)


def _is_utf8(value: Any) -> bool:
    if isinstance(value, str):
        if value.isascii():
            return True
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True
    return True  # not text at all: the conversion reports it


def _decodes(value: Any) -> bool:
    from ...image.decode import decode_rgb, probe

    if isinstance(value, np.ndarray):
        value = value.tobytes()
    if not isinstance(value, (bytes, bytearray, memoryview)):
        return True  # not bytes at all: the conversion reports it
    try:
        decode_rgb(value, probe(value))
    except ImportError:
        raise
    except Exception:  # Pillow and simplejpeg raise OSError, ValueError, SyntaxError...
        return False
    return True


# -- after conversion ----------------------------------------------------------------------------
def _empty_text(f: Field, col: VarColumn, n: int) -> np.ndarray:
    empty = col.lengths() == 0
    spaces = pc.utf8_is_space(arrow_array(f, col, n)).fill_null(False).to_numpy(zero_copy_only=False)
    return empty | spaces


def _non_finite(f: Field, col: Any, n: int) -> np.ndarray:
    if not isinstance(col, VarColumn):
        return ~np.isfinite(col.reshape(n, -1)).all(axis=1)
    if len(f.shape) == 1:  # element counts per row from the byte offsets
        values = col.data.view(f.np_dtype)
        bad_before = np.concatenate([[0], np.cumsum(~np.isfinite(values))])
        bounds = col.offsets // f.np_dtype.itemsize
        return bad_before[bounds[1:]] > bad_before[bounds[:-1]]
    prefix = 8 * len(f.shape)  # each payload starts with its shape (int64 per dimension)
    out = np.zeros(n, dtype=bool)
    for i in range(n):
        start, stop = int(col.offsets[i]) + prefix, int(col.offsets[i + 1])
        out[i] = not np.isfinite(np.frombuffer(col.data[start:stop].tobytes(), f.np_dtype)).all()
    return out
