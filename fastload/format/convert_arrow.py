"""Convert one Arrow column to its stored form, mostly without a Python loop per value.

Numbers, dates and times, decimals, strings and binaries are read from the Arrow buffers (nulls
zeroed, their mask kept); numeric lists go through the list offsets; a nested field's values
are each written as a one-row Arrow IPC record batch. Values that must change type are cast by
Arrow with its overflow and truncation checks; when a cast fails, each row is tried alone so
that the bad ones can be named. ``None`` from :func:`convert_arrow` means: convert this column
value by value (its ``to_pylist()``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.types as pt

from ..errors import SchemaError
from .lossless import drops_fields, truncation
from .numeric import cast_numbers
from .schema import Field
from .varcolumn import VarColumn

Result = tuple[Any, "np.ndarray | None", dict[int, str]]
_CAST_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OverflowError)


def arrow_storage_type(f: Field) -> pa.DataType:
    """The Arrow type that holds this field's values before they are stored."""
    if f.kind == "null":
        return pa.null()
    if f.logical is not None:
        return f.logical_type.arrow_type()
    if f.kind == "scalar":
        return pa.from_numpy_dtype(f.np_dtype.newbyteorder("="))
    if f.kind == "str":
        return pa.large_string()
    if f.kind == "arrow":
        return f.pa_type
    raise SchemaError(f"field {f.name!r} ({f.spec}) has no single Arrow type")


def null_field_reason(f: Field) -> str:
    return (f"a value in a null field (every value of the first rows was null); give its type with "
            f"--schema {f.name}:TYPE")


def python_reason(f: Field, v: Any, exc: BaseException) -> str:
    """Why the Python value ``v`` cannot be stored in field ``f``."""
    text = repr(v)
    text = text if len(text) <= 60 else text[:57] + "..."
    if f.kind == "null":
        return null_field_reason(f)
    if f.kind == "str":
        if isinstance(v, str):
            return "string is not valid Unicode (a lone surrogate)"
        if isinstance(v, (bytes, bytearray, memoryview)):
            try:
                bytes(v).decode("utf-8")
            except UnicodeDecodeError as err:
                return f"string is not valid UTF-8 (byte {err.start}: {err.reason})"
        return f"expected str, got {type(v).__name__}"
    if f.kind == "scalar" and f.logical is None:
        if isinstance(v, (str, bytes, bytearray, list, tuple, dict)):
            return f"expected a number, got {type(v).__name__}"
        return f"value {text} does not fit {f.dtype}"
    return f"{type(v).__name__} value {text} does not fit {f.spec} ({exc})"


def convert_arrow(f: Field, col: Any, n: int) -> Result | None:
    """Field ``f``'s Arrow column ``col`` in stored form (None: convert it value by value)."""
    arr = _plain(col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col)
    valid = arr.is_valid().to_numpy(zero_copy_only=False) if arr.null_count else None
    if f.kind == "null":
        bad = {} if valid is None else {int(i): null_field_reason(f) for i in np.flatnonzero(valid)}
        return np.zeros((n, 0), np.uint8), None, bad
    if f.logical is not None:
        return _logical(f, arr, n, valid)
    if f.kind == "scalar":
        return _scalar(f, arr, n, valid)
    if f.kind == "str":
        return _str(f, arr, n, valid)
    if f.kind == "bytes":
        return _bytes(f, arr, n, valid)
    if f.kind == "arrow":
        return _nested(f, arr, n, valid)
    if f.kind == "array":
        return _array(f, arr, n, valid)
    return None  # json and image: value by value


def _plain(arr: pa.Array) -> pa.Array:
    """Dictionary columns decoded; extension columns as their storage."""
    while True:
        if pt.is_dictionary(arr.type):
            arr = arr.dictionary_decode()
        elif isinstance(arr, pa.ExtensionArray):
            arr = arr.storage
        else:
            return arr


def _cast_rows(f: Field, arr: pa.Array, target: pa.DataType) -> tuple[pa.Array, dict[int, str]]:
    """``arr`` cast to ``target``; rows that do not cast (or would lose something) are reported
    and become null."""
    if arr.type == target:
        return arr, {}
    bad: dict[int, str] = {}
    if drops_fields(arr.type, target):  # Arrow's cast would drop these struct fields silently
        bad = {i: f"{why}: it does not fit {f.spec}" for i, why in
               ((i, truncation(v, target)) for i, v in enumerate(arr.to_pylist())) if why is not None}
        arr = _null_rows(arr, bad)
    try:
        return pc.cast(arr, target, safe=True), bad
    except pa.ArrowNotImplementedError:
        raise SchemaError(f"field {f.name!r}: an Arrow {arr.type} column cannot be stored as {f.spec}") from None
    except _CAST_ERRORS:
        pass
    for i in np.flatnonzero(arr.is_valid().to_numpy(zero_copy_only=False)).tolist():
        try:
            pc.cast(arr.slice(i, 1), target, safe=True)
        except _CAST_ERRORS as exc:
            bad[i] = f"value {_short(arr[i])} does not fit {f.spec} ({exc})"
    try:
        return pc.cast(_null_rows(arr, bad), target, safe=True), bad
    except _CAST_ERRORS as exc:  # no row fails alone: the column as a whole does not convert
        raise SchemaError(f"field {f.name!r}: an Arrow {arr.type} column cannot be stored as {f.spec} "
                          f"({exc})") from None


def _null_rows(arr: pa.Array, rows: dict[int, str]) -> pa.Array:
    """``arr`` with the given rows null (bad rows, dropped before anything is stored)."""
    if not rows:
        return arr
    keep = np.ones(len(arr), dtype=bool)
    keep[list(rows)] = False
    return pc.if_else(pa.array(keep), arr, pa.scalar(None, arr.type))


def _short(scalar: pa.Scalar) -> str:
    try:
        text = repr(scalar.as_py())
    except (ValueError, OverflowError, pa.ArrowException):  # e.g. a date past year 9999
        text = str(scalar)
    return text if len(text) <= 60 else text[:57] + "..."


def _filled(arr: pa.Array) -> np.ndarray:
    """A primitive Arrow array's values as NumPy, nulls as zero (False)."""
    if arr.null_count:
        zero = pa.scalar(False) if pt.is_boolean(arr.type) else pa.array(np.zeros(1, arr.type.to_pandas_dtype()))[0]
        arr = pc.fill_null(arr, zero)
    # numbers without nulls are a view of the Arrow buffer; bools are bit-packed and need a copy
    return arr.to_numpy(zero_copy_only=not pt.is_boolean(arr.type))


# -- numbers, dates, times, decimals ------------------------------------------------------------------
def _scalar(f: Field, arr: pa.Array, n: int, valid) -> Result:
    bad: dict[int, str] = {}
    if not (pt.is_integer(arr.type) or pt.is_floating(arr.type) or pt.is_boolean(arr.type)):
        arr, bad = _cast_rows(f, arr, arrow_storage_type(f))
        valid = arr.is_valid().to_numpy(zero_copy_only=False) if arr.null_count else None
    values, cast_bad = cast_numbers(f, _filled(arr), n)
    return values, valid, {**cast_bad, **bad}


def _logical(f: Field, arr: pa.Array, n: int, valid) -> Result:
    lt = f.logical_type
    arr, bad = _cast_rows(f, arr, lt.arrow_type())
    if bad:
        valid = arr.is_valid().to_numpy(zero_copy_only=False)
    if lt.is_temporal:  # the integer count of the unit, as Arrow stores it
        values = _filled(arr.view(pa.from_numpy_dtype(np.dtype(lt.dtype))))
        return np.ascontiguousarray(values), valid, bad
    width = lt.shape[0]  # a decimal: its 16 or 32 little-endian bytes
    raw = np.frombuffer(arr.buffers()[1], np.uint8)[arr.offset * width:(arr.offset + n) * width]
    values = raw.reshape(n, width).copy()
    if valid is not None:
        values[~valid] = 0
    return values, valid, bad


# -- strings and binaries ---------------------------------------------------------------------------
def _str(f: Field, arr: pa.Array, n: int, valid) -> Result | None:
    t = arr.type
    if pt.is_binary(t) or pt.is_large_binary(t) or pt.is_fixed_size_binary(t):
        return None  # each value is checked as UTF-8 on its own
    if not (pt.is_string(t) or pt.is_large_string(t)):
        arr, bad = _cast_rows(f, arr, pa.large_string())  # views, and numbers given a str field
        col, valid2, more = _str(f, arr, n, arr.is_valid().to_numpy(zero_copy_only=False)
                                 if arr.null_count else None)
        return col, valid2, {**more, **bad}
    if valid is not None and not _nulls_are_empty(arr, valid):
        arr = pc.fill_null(arr, "")
    bad = _invalid_utf8(arr)
    return _offsets_column(arr), valid, bad


def _invalid_utf8(arr: pa.Array) -> dict[int, str]:
    """Rows of a string array that are not valid UTF-8 (Arrow trusts file readers on this)."""
    try:
        arr.validate(full=True)  # ~5 GB/s
        return {}
    except pa.ArrowInvalid:
        pass
    bad = {}
    col = _offsets_column(arr)
    data = col.data.tobytes()
    for i in range(len(arr)):
        try:
            data[col.offsets[i]:col.offsets[i + 1]].decode("utf-8")
        except UnicodeDecodeError as exc:
            bad[i] = f"string is not valid UTF-8 (byte {exc.start}: {exc.reason})"
    return bad


def _bytes(f: Field, arr: pa.Array, n: int, valid) -> Result | None:
    t = arr.type
    if not (pt.is_binary(t) or pt.is_large_binary(t) or pt.is_string(t) or pt.is_large_string(t)):
        if not (pt.is_fixed_size_binary(t) or (hasattr(pt, "is_binary_view") and pt.is_binary_view(t))
                or (hasattr(pt, "is_string_view") and pt.is_string_view(t))):
            return None  # each value is checked on its own (and refused)
        arr = arr.cast(pa.large_binary())
    if valid is not None and not _nulls_are_empty(arr, valid):
        arr = pc.fill_null(arr, pa.scalar(b"" if pt.is_binary(arr.type) or pt.is_large_binary(arr.type)
                                          else "", arr.type))
    return _offsets_column(arr), valid, {}


def _nulls_are_empty(arr: pa.Array, valid: np.ndarray) -> bool:
    """True when every null of an offsets-based array (string, binary, list) spans no values, as
    Arrow's writers leave them: then its buffers are read as they are. (``fill_null`` would copy
    the array: 15 ms for 200,000 int32 lists with 10% nulls, against 0.5 ms without nulls.)"""
    lengths = np.diff(_offsets(arr))
    return not lengths[~valid].any()


def _offsets(arr: pa.Array) -> np.ndarray:
    """The ``len(arr) + 1`` value offsets of a string, binary or list array (a view)."""
    t = arr.type
    large = pt.is_large_string(t) or pt.is_large_binary(t) or pt.is_large_list(t)
    raw = np.frombuffer(arr.buffers()[1], dtype=np.int64 if large else np.int32)
    return raw[arr.offset : arr.offset + len(arr) + 1]


def _offsets_column(arr: pa.Array) -> VarColumn:
    """A (large) string or binary array's values as a VarColumn, sharing its data buffer."""
    offsets = _offsets(arr).astype(np.int64)
    data = arr.buffers()[2]
    data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    data = data[offsets[0] : offsets[-1]]
    return VarColumn(offsets - offsets[0], data)


# -- nested values ------------------------------------------------------------------------------------
def _nested(f: Field, arr: pa.Array, n: int, valid) -> Result:
    """Each valid row as a one-row Arrow IPC record batch of one column ``item`` (~4 us a row)."""
    arr, bad = _cast_rows(f, arr, f.pa_type)
    if bad:
        valid = arr.is_valid().to_numpy(zero_copy_only=False)
    schema = pa.schema([pa.field("item", f.pa_type)])
    batch = pa.RecordBatch.from_arrays([arr], schema=schema)
    # pyarrow 26 writes a slice's whole child buffers for some rows (an empty list inside): 393 KB
    # for a row of ~400 B in a 65,536-row chunk. Such a row is copied alone (take) and written again.
    bloated = pa.RecordBatch.from_arrays([pa.array([], f.pa_type)], schema=schema).serialize().size + 1024
    rows = range(n) if valid is None else np.flatnonzero(valid).tolist()
    payloads = [b""] * n
    for i in rows:
        one = batch.slice(i, 1)
        payload = one.serialize()
        if payload.size > bloated + 2 * one.nbytes:
            payload = batch.take([i]).serialize()
        payloads[i] = payload.to_pybytes()
    return VarColumn.from_payloads(payloads), valid, bad


# -- numeric arrays ---------------------------------------------------------------------------------
def _array(f: Field, arr: pa.Array, n: int, valid) -> Result | None:
    """Numeric lists through their offsets and flat values; anything else value by value."""
    if valid is not None and not (pt.is_list(arr.type) or pt.is_large_list(arr.type)) or \
            (valid is not None and not _nulls_are_empty(arr, valid)):
        empty = _empty_row(f, arr.type)
        if empty is None:
            return None
        arr = pc.fill_null(arr, empty)
    fast = _numeric_lists(f, arr, n)
    if fast is None:
        return None
    values, bad = fast
    return values, valid, bad


def _empty_row(f: Field, typ: pa.DataType) -> pa.Scalar | None:
    """What a null row becomes before its list offsets are read: [] or a list of zeros."""
    if pt.is_list(typ) or pt.is_large_list(typ):
        return pa.scalar([], typ)
    if pt.is_fixed_size_list(typ):
        zeros = np.zeros(f.shape, f.np_dtype).tolist() if f.is_fixed else None
        try:
            return pa.scalar(zeros, typ) if zeros is not None else None
        except _CAST_ERRORS:
            return None
    return None


def _numeric_lists(f: Field, arr: pa.Array, n: int) -> tuple[Any, dict[int, str]] | None:
    """Zero-copy paths for the common Arrow list layouts; None means 'value by value'."""
    t = arr.type
    if f.is_fixed and pt.is_fixed_size_list(t):
        flat, shape = arr, []
        while pt.is_fixed_size_list(flat.type):
            if flat.null_count:
                return None  # a null inside: named value by value
            shape.append(flat.type.list_size)
            flat = flat.flatten()
        if tuple(shape) != f.shape or flat.null_count or not _is_number(flat.type):
            return None
        return cast_numbers(f, flat.to_numpy(zero_copy_only=False).reshape((n, *shape)), n)
    if len(f.shape) == 1 and (pt.is_list(t) or pt.is_large_list(t)):
        if not _is_number(t.value_type) or arr.values.null_count:
            return None  # null elements: named value by value
        offsets = arr.offsets.to_numpy().astype(np.int64)
        values = arr.values.to_numpy(zero_copy_only=False)[offsets[0] : offsets[-1]]
        if f.is_fixed:  # a plain list column feeding a fixed-shape field: every row must have shape[0]
            if not (np.diff(offsets) == f.shape[0]).all():
                return None
            return cast_numbers(f, values.reshape(n, f.shape[0]), n)
        cast, bad = cast_numbers(f, values, None)
        if bad:
            return None
        itemsize = f.np_dtype.itemsize
        return VarColumn((offsets - offsets[0]) * itemsize, cast.view(np.uint8).reshape(-1)), {}
    return None


def _is_number(typ: pa.DataType) -> bool:
    return pt.is_integer(typ) or pt.is_floating(typ) or pt.is_boolean(typ)
