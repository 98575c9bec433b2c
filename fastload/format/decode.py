"""Turn gathered columns into values: the batch form (``get_batch``, the loader) and the record
form (``ds[i]``, iteration), which equals pyarrow's ``to_pylist()`` of the source values.

Batch form: a dense field (fixed numeric, no nulls; dates, times and timestamps as the integers
of their unit) is one ``(n, *shape)`` array. Other fields are lists: str, bytes, parsed JSON,
NumPy arrays, ``Decimal``, or Python values for nested fields. A field with nulls gives ``None``
in its list; where it is an array, nulls are zero and ``name + ".valid"`` holds the bool mask.

Dates, times, timestamps, durations, decimals and nested values are turned into Python values by
pyarrow itself, from the stored integers, bytes or IPC batches, so they are exactly the values
``to_pylist()`` gives for the source.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from .. import _native
from ..errors import FormatError, RecordDecodeError
from .schema import VALID_SUFFIX, Field
from .varcolumn import NullableColumn, VarColumn


def batch_entries(f: Field, col: Any, pad: bool = False) -> dict[str, Any]:
    """The batch-form entries of one gathered field: ``{name: values}``, plus ``name + ".valid"``
    when the values are an array and the field has nulls."""
    values, valid = (col.values, col.valid) if isinstance(col, NullableColumn) else (col, None)
    n = len(values)
    if f.kind == "null":
        return {f.name: [None] * n}
    logical = f.logical_type
    if f.is_fixed and (logical is None or logical.is_temporal):
        return {f.name: values} if valid is None else {f.name: values, f.name + VALID_SUFFIX: valid}
    if logical is not None:  # a decimal
        return {f.name: record_values(f, col)}
    decoded = decode_var(f, values, pad)
    if valid is None:
        return {f.name: decoded}
    if isinstance(decoded, tuple):  # padded arrays: nulls are empty rows
        return {f.name: decoded, f.name + VALID_SUFFIX: valid}
    return {f.name: [v if ok else None for v, ok in zip(decoded, valid.tolist())]}


def record_values(f: Field, col: Any) -> list[Any]:
    """Python values of a gathered field, one per record: what ``ds[i]`` returns."""
    values, valid = (col.values, col.valid) if isinstance(col, NullableColumn) else (col, None)
    n = len(values)
    if f.kind == "null":
        return [None] * n
    if f.logical is not None:
        out = _logical_values(f, values, valid)
    elif f.kind == "scalar":
        out = values.tolist()
    elif f.is_fixed:
        out = list(values)
    else:
        out = decode_var(f, values)
    if valid is None:
        return out
    return [v if ok else None for v, ok in zip(out, valid.tolist())]


def _logical_values(f: Field, values: np.ndarray, valid: np.ndarray | None) -> list[Any]:
    import pyarrow as pa

    lt = f.logical_type
    mask = None if valid is None else pa.array(valid).buffers()[1]
    data = pa.py_buffer(np.ascontiguousarray(values).tobytes())
    try:
        arr = pa.Array.from_buffers(lt.arrow_type(), len(values), [mask, data])
        return arr.to_pylist()
    except (ValueError, OverflowError, pa.ArrowException) as exc:
        raise RecordDecodeError(f"field {f.name!r}: a stored {lt.text} value has no Python form ({exc})") from None


# -- variable fields --------------------------------------------------------------------------------
def _payloads(col: VarColumn) -> list[bytes]:
    data = col.data.tobytes()
    o = col.offsets.tolist()
    return [data[o[k] : o[k + 1]] for k in range(len(o) - 1)]


def decode_var(f: Field, col: VarColumn, pad: bool = False) -> Any:
    """Python values of a gathered variable column: str, bytes, parsed JSON, NumPy arrays or
    nested values (an empty nested payload, a null, reads as None)."""
    if f.kind == "str":
        return [p.decode("utf-8") for p in _payloads(col)]
    if f.kind in ("bytes", "image"):
        return _payloads(col)
    if f.kind == "json":
        return [json.loads(p) for p in _payloads(col)]
    if f.kind == "arrow":
        return _nested_values(f, _payloads(col))
    dtype = f.np_dtype
    if len(f.shape) == 1:
        values = col.data.view(dtype) if col.data.size % dtype.itemsize == 0 else None
        if values is None:
            raise FormatError(f"field {f.name!r}: payload size is not a multiple of {dtype.itemsize}")
        lengths = np.diff(col.offsets) // dtype.itemsize
        if pad:
            width = int(lengths.max()) if len(lengths) else 0
            out = np.empty((len(lengths), width), dtype=dtype)
            _native.gather_padded(col.data.ctypes.data + col.offsets[:-1], np.diff(col.offsets),
                                  width * dtype.itemsize, out)
            return out, lengths
        return np.split(values, np.cumsum(lengths)[:-1]) if len(lengths) else []
    arrays = []
    ndim = len(f.shape)
    for p in _payloads(col):
        if not p:  # a null record
            arrays.append(np.zeros((0,) * ndim, dtype))
            continue
        shape = tuple(np.frombuffer(p[: 8 * ndim], dtype="<i8"))
        arrays.append(np.frombuffer(p[8 * ndim :], dtype=dtype).reshape(shape))
    return arrays


def _nested_values(f: Field, payloads: list[bytes]) -> list[Any]:
    """Each payload is a one-row Arrow IPC record batch of one column ``item`` of the field's type."""
    import pyarrow as pa

    schema = pa.schema([pa.field("item", f.pa_type)])
    batches, rows = [], []
    try:
        for k, p in enumerate(payloads):
            if p:
                batch = pa.ipc.read_record_batch(pa.py_buffer(p), schema)
                batch.validate(full=True)  # a crafted batch must not send to_pylist out of bounds
                if batch.num_rows != 1:
                    raise ValueError(f"{batch.num_rows} rows where one is stored")
                batches.append(batch)
                rows.append(k)
        values = pa.Table.from_batches(batches, schema).column(0).to_pylist() if batches else []
    except (ValueError, OverflowError, pa.ArrowException) as exc:
        raise RecordDecodeError(f"field {f.name!r}: a stored nested value cannot be read ({exc})") from None
    out: list[Any] = [None] * len(payloads)
    for k, v in zip(rows, values):
        out[k] = v
    return out
