"""Convert one source column to its stored form: the values, a row mask of nulls, and bad rows.

Arrow columns go to :mod:`.convert_arrow`. NumPy columns of numbers are cast (checked). Python
lists of values that Arrow types (numbers, strings, dates, nested values) are first made an Arrow
array of the field's type, so they follow the same path; numeric arrays, bytes, images and JSON
are converted value by value. ``None`` is a null, except in a ``json`` field, where it is JSON
``null``. A null stores zero bytes (fixed fields) or an empty payload (variable fields).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..errors import SchemaError
from .convert_arrow import arrow_storage_type, convert_arrow, python_reason
from .lossless import may_truncate, truncation
from .numeric import cast_numbers
from .schema import Field
from .varcolumn import VarColumn

_IMAGE_MAGIC = {
    "jpeg": (b"\xff\xd8\xff",),
    "png": (b"\x89PNG\r\n\x1a\n",),
}
_OTHER_IMAGE_MAGIC = (b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")

Result = tuple[Any, "np.ndarray | None", dict[int, str]]  # values, valid rows (None: all), bad rows
_EXACT = 2**53  # integers up to this magnitude are exact in a float64


def convert_field(f: Field, col: Any, n: int) -> Result:
    """Field ``f``'s column ``col`` of ``n`` rows in stored form."""
    if type(col).__module__.startswith("pyarrow"):
        return _arrow_column(f, col, n)
    if isinstance(col, np.ndarray):
        if col.dtype.kind in "biuf" and f.kind in ("scalar", "array") and f.logical is None:
            if f.kind == "scalar":
                values, bad = _numpy_scalar(f, col, n)
                return values, None, bad
            return _python_column(f, col, n)  # one row of ``col`` per record
        if col.dtype.kind in "mM":  # datetime64 / timedelta64: Arrow converts them exactly
            import pyarrow as pa

            return _arrow_column(f, pa.array(col), n)
        col = list(col)
    return _python_column(f, col if isinstance(col, list) else list(col), n)


def _python_column(f: Field, values: Any, n: int) -> Result:
    if f.logical is not None:
        return _via_arrow(f, values, n)
    if f.kind == "array":
        return _fixed_array(f, values, n) if f.is_fixed else _var_array(f, values, n)
    if f.kind in ("bytes", "image", "json"):
        return _var_payload(f, values)
    if f.kind == "scalar" and f.logical is None:
        return _python_numbers(f, values, n)
    return _via_arrow(f, values, n)


def _via_arrow(f: Field, values: list, n: int) -> Result:
    """Python values that Arrow types: one Arrow array of the field's type, then the Arrow path.
    If the whole column does not convert, each value is tried alone to name the bad rows."""
    import pyarrow as pa

    typ = arrow_storage_type(f)
    bad = {}
    if may_truncate(typ):  # values pyarrow would silently change are bad rows, not stored changed
        for i, v in enumerate(values):
            why = truncation(v, typ)
            if why is not None:
                bad[i] = f"{why}: it does not fit {f.spec}"
    try:
        arr = pa.array(values if not bad else _without(values, bad), type=typ)
    except (pa.ArrowException, OverflowError, TypeError, ValueError):
        for i, v in enumerate(values):
            try:
                if i not in bad:
                    pa.array([v], type=typ)
            except (pa.ArrowException, OverflowError, TypeError, ValueError) as exc:
                bad[i] = python_reason(f, v, exc)
        try:
            arr = pa.array(_without(values, bad), type=typ)
        except (pa.ArrowException, OverflowError, TypeError, ValueError) as exc:
            raise SchemaError(f"field {f.name!r}: its values do not convert to {f.spec} together "
                              f"({exc})") from None
    values_out, valid, more = _arrow_column(f, arr, n)
    return values_out, valid, {**more, **bad}


def _without(values: list, bad: dict[int, str]) -> list:
    """The values with the bad rows as None (they are dropped before the rows are stored)."""
    return [None if i in bad else v for i, v in enumerate(values)]


def _arrow_column(f: Field, col: Any, n: int) -> Result:
    done = convert_arrow(f, col, n)
    return done if done is not None else _python_column(f, col.to_pylist(), n)


# -- numbers ------------------------------------------------------------------------------------------
def _python_numbers(f: Field, values: list, n: int) -> Result:
    """Python numbers for a numeric field, with nulls. NumPy converts them at once when that is
    exact: every integer within +-2**53, so none is rounded on its way into a float64 array
    (NumPy makes one of ints past int64 mixed with small ones, or of ints mixed with floats:
    9007199254740993 -> 9007199254740992.0). Otherwise each value is converted alone."""
    valid = np.fromiter((v is not None for v in values), dtype=bool, count=n)
    present = values if valid.all() else [v for v in values if v is not None]
    if not any(isinstance(v, (int, np.integer)) and not -_EXACT <= v <= _EXACT for v in present):
        try:
            arr = np.asarray(present)
        except (TypeError, ValueError):
            arr = None
        if arr is not None and arr.ndim == 1 and arr.dtype.kind in "biuf":
            cast, bad = cast_numbers(f, arr, len(arr))
            return _with_nulls(f, cast, valid, bad)
    out = np.zeros(n, f.np_dtype)
    bad = {}
    for i, v in enumerate(values):
        if v is None:
            continue
        if not isinstance(v, (bool, int, float, np.bool_, np.integer, np.floating)):
            bad[i] = f"expected a number, got {type(v).__name__}"
            continue
        one = np.asarray([v])  # int64, uint64 or float64: exact for one Python number
        cast, sub = cast_numbers(f, one, 1) if one.dtype.kind in "biuf" else (None, {0: ""})
        if sub:
            bad[i] = f"value {v!r} does not fit {f.dtype}"
        else:
            out[i] = cast[0]
    return out, (None if valid.all() else valid), bad


def _with_nulls(f: Field, present: np.ndarray, valid: np.ndarray, bad: dict[int, str]) -> Result:
    """Values of the non-null rows spread back to all rows (nulls zero), bad rows renumbered."""
    if valid.all():
        return present, None, bad
    rows = np.flatnonzero(valid)
    out = np.zeros(len(valid), f.np_dtype)
    out[rows] = present
    return out, valid, {int(rows[i]): reason for i, reason in bad.items()}



def _numpy_scalar(f: Field, col: np.ndarray, n: int) -> tuple[np.ndarray, dict[int, str]]:
    if col.ndim != 1:
        col = col.reshape(n, -1)
        if col.shape[1] != 1:
            return np.zeros(n, f.np_dtype), {0: f"expected a scalar, got shape {col.shape[1:]}"}
        col = col[:, 0]
    return cast_numbers(f, col, n)


# -- numeric arrays, value by value ---------------------------------------------------------------
def _fixed_array(f: Field, col: Any, n: int) -> Result:
    if isinstance(col, np.ndarray) and col.dtype.kind in "biuf" and col.shape == (n, *f.shape):
        values, bad = cast_numbers(f, col, n)
        return values, None, bad
    rows, valid, bad = _array_rows(f, col, n)
    out = np.zeros((n, *f.shape), dtype=f.np_dtype)
    for i, row in enumerate(rows):
        if row is not None:
            out[i] = row
    return out, valid, bad


def _var_array(f: Field, col: Any, n: int) -> Result:
    rows, valid, bad = _array_rows(f, col, n)
    nd = len(f.shape) > 1  # N-D records start with their shape
    payloads = [b"" if row is None else
                (np.asarray(row.shape, dtype="<i8").tobytes() if nd else b"") + np.ascontiguousarray(row).tobytes()
                for row in rows]
    return VarColumn.from_payloads(payloads), valid, bad


def _array_rows(f: Field, col: Any, n: int) -> tuple[list, np.ndarray, dict[int, str]]:
    """Each record's array (None for a null or a bad row), the valid mask and the bad rows."""
    rows: list = [None] * n
    valid = np.ones(n, dtype=bool)
    bad: dict[int, str] = {}
    for i, v in enumerate(col):
        if v is None:
            valid[i] = False
            continue
        rows[i], reason = _array_row(f, v)
        if reason is not None:
            bad[i] = reason
    return rows, valid, bad


def _array_row(f: Field, v: Any) -> tuple[np.ndarray | None, str | None]:
    """One record's array of the field's shape and dtype, or the reason it cannot be one."""
    a, reason = _numeric_array(f, v)
    if reason is not None:
        return None, reason
    if f.is_fixed:
        if a.shape != f.shape:
            return None, f"array of shape {list(a.shape)} where the schema declares {list(f.shape)}"
    else:
        if a.size == 0 and a.ndim == 1 and len(f.shape) > 1:
            # an empty list ([] from Python or Arrow) is zero rows: give it the field's rank
            a = a.reshape(tuple(0 if d == -1 else d for d in f.shape))
        if a.ndim != len(f.shape) or any(d != -1 and d != s for d, s in zip(f.shape, a.shape)):
            return None, f"array of shape {list(a.shape)} does not match the schema's {list(f.shape)}"
    cast, sub = cast_numbers(f, a.reshape(1, *a.shape), 1)
    return (None, f"values do not fit {f.dtype}") if sub else (cast[0], None)


def _numeric_array(f: Field, v: Any) -> tuple[np.ndarray | None, str | None]:
    """``v`` as a NumPy array of numbers, or the reason it is not one."""
    try:
        a = np.asarray(v)
    except (TypeError, ValueError) as exc:
        return None, f"not a numeric array ({exc})"
    if a.dtype.kind in "biuf":
        return a, None
    if a.dtype == object and any(x is None for x in a.reshape(-1).tolist()):
        return None, (f"a null element inside a numeric array ({f.spec} holds whole-row nulls only; "
                      f"to keep nulls inside lists, give this column --schema {f.name}:json)")
    return None, f"not a numeric array (elements of type {a.dtype})"


# -- bytes, images, JSON ----------------------------------------------------------------------------
def _var_payload(f: Field, col: list) -> Result:
    payloads: list[bytes] = []
    bad: dict[int, str] = {}
    valid = np.ones(len(col), dtype=bool)
    for i, v in enumerate(col):
        if v is None and f.kind != "json":
            valid[i] = False
            payloads.append(b"")
            continue
        try:
            payloads.append(_encode_value(f, v))
        except (ValueError, TypeError) as exc:
            bad[i] = str(exc)
            payloads.append(b"")
    return VarColumn.from_payloads(payloads), valid, bad


def _encode_value(f: Field, v: Any) -> bytes:
    if f.kind == "json":
        try:
            return json.dumps(v, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        except (TypeError, ValueError, RecursionError) as exc:
            raise ValueError(f"not JSON-serializable ({exc})") from None
    if isinstance(v, np.ndarray):
        v = v.tobytes()
    if isinstance(v, str) and f.kind == "bytes":
        return v.encode("utf-8")
    if not isinstance(v, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected bytes, got {type(v).__name__}")
    b = bytes(v)
    if f.kind == "image":
        check_image_magic(b, f.image_format or "any")
    return b


def check_image_magic(b: bytes, image_format: str) -> None:
    """Raise ValueError when ``b`` does not start like an encoded image of the given format."""
    if image_format in _IMAGE_MAGIC:
        if not b.startswith(_IMAGE_MAGIC[image_format]):
            raise ValueError(f"not a {image_format.upper()} image (bad magic bytes)")
        return
    known = sum(_IMAGE_MAGIC.values(), ()) + _OTHER_IMAGE_MAGIC
    if not (b.startswith(known) or (b[:4] == b"RIFF" and b[8:12] == b"WEBP")):
        raise ValueError("not an encoded image (unknown magic bytes)")
