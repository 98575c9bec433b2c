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
import math
from typing import Any, Callable

import numpy as np

from .. import _native
from ..errors import FormatError, RecordDecodeError
from .schema import VALID_SUFFIX, Field
from .varcolumn import NullableColumn, VarColumn

Where = Callable[[int], str]  # the place of the k-th record of a batch, for error messages


def batch_entries(f: Field, col: Any, pad: bool = False, where: Where | None = None) -> dict[str, Any]:
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
        return {f.name: record_values(f, col, where)}
    decoded = decode_var(f, values, pad, where)
    if valid is None:
        return {f.name: decoded}
    if isinstance(decoded, tuple):  # padded arrays: nulls are empty rows
        return {f.name: decoded, f.name + VALID_SUFFIX: valid}
    return {f.name: [v if ok else None for v, ok in zip(decoded, valid.tolist())]}


def record_values(f: Field, col: Any, where: Where | None = None) -> list[Any]:
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
        out = decode_var(f, values, False, where)
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


def _utf8_strings(col: VarColumn) -> list[str] | None:
    """The payloads as ``str`` through Arrow: one C pass validates the UTF-8 and makes the
    objects (16 us for 256 rows of ~200 B against 49 us decoding row by row in Python); None
    when a payload is not valid UTF-8."""
    import pyarrow as pa

    arr = pa.LargeStringArray.from_buffers(len(col), pa.py_buffer(np.ascontiguousarray(col.offsets, np.int64)),
                                           pa.py_buffer(np.ascontiguousarray(col.data, np.uint8)))
    try:
        arr.validate(full=True)
    except pa.ArrowInvalid:
        return None
    return arr.to_pylist()


def decode_var(f: Field, col: VarColumn, pad: bool = False, where: Where | None = None) -> Any:
    """Python values of a gathered variable column: str, bytes, parsed JSON, NumPy arrays or
    nested values (an empty nested payload, a null, reads as None).

    A payload that is not a value of its field (invalid UTF-8 or JSON, an array payload that does
    not hold whole elements or its shape, a nested value that is not an Arrow batch of its type)
    is a RecordDecodeError naming ``where(k)``, the record's place (its shard, block and record in
    a Dataset), or its position in the batch.
    """
    where = where or _in_batch
    if f.kind == "str":
        strings = _utf8_strings(col)
        if strings is not None:
            return strings
    if f.kind in ("str", "json"):  # json, or a str column with invalid UTF-8: the loop names the record
        values = []
        for k, p in enumerate(_payloads(col)):
            try:
                values.append(p.decode("utf-8") if f.kind == "str" else json.loads(p))
            except UnicodeDecodeError as exc:
                raise RecordDecodeError(f"{where(k)}: field {f.name!r} is not valid UTF-8 (byte {exc.start})") from None
            except (ValueError, RecursionError) as exc:
                raise RecordDecodeError(f"{where(k)}: field {f.name!r} is not valid JSON ({str(exc)[:80]})") from None
        return values
    if f.kind in ("bytes", "image"):
        return _payloads(col)
    if f.kind == "arrow":
        return _nested_values(f, _payloads(col), where)
    dtype = f.np_dtype
    if len(f.shape) == 1:
        partial = np.flatnonzero(np.diff(col.offsets) % dtype.itemsize)  # each record, not only the total
        if partial.size:
            k = int(partial[0])
            raise RecordDecodeError(f"{where(k)}: field {f.name!r}: a payload of {int(col.offsets[k + 1] - col.offsets[k])} "
                                    f"bytes is not a whole number of {dtype} elements")
        values = col.data.view(dtype)
        lengths = np.diff(col.offsets) // dtype.itemsize
        if pad:
            width = int(lengths.max()) if len(lengths) else 0
            out = np.empty((len(lengths), width), dtype=dtype)
            _native.gather_padded(col.data, col.offsets, width * dtype.itemsize, out)
            return out, lengths
        # slices by hand: np.split took 74 us for 64 rows, these 17 (a custom collate gets them per batch)
        ends = np.cumsum(lengths).tolist()
        return [values[a:b] for a, b in zip([0] + ends[:-1], ends)]
    return [_nd_array(f, p, lambda: where(k)) for k, p in enumerate(_payloads(col))]


def _nd_array(f: Field, payload: bytes, where: Callable[[], str]) -> np.ndarray:
    """An N-D variable array from its payload: N int64 sizes (the record's shape), then elements.

    The stored shape is checked against the field's fixed sizes and the payload's length with
    Python integers, so a crafted shape is an error, never a wrapped product or a NumPy exception.
    An empty payload is a null record's.
    """
    ndim, itemsize = len(f.shape), f.np_dtype.itemsize
    if not payload:
        return np.zeros((0,) * ndim, f.np_dtype)
    shape = tuple(int(d) for d in np.frombuffer(payload[: 8 * ndim], dtype="<i8")) if len(payload) >= 8 * ndim else None
    ok = (shape is not None and all(d >= 0 for d in shape)
          and all(want in (-1, d) for want, d in zip(f.shape, shape))
          and math.prod(shape) * itemsize == len(payload) - 8 * ndim)
    if not ok:
        raise RecordDecodeError(f"{where()}: field {f.name!r}: a payload of {len(payload)} bytes does not hold "
                                f"an array of shape {list(shape) if shape else '?'} matching {list(f.shape)}")
    return np.frombuffer(payload[8 * ndim :], dtype=f.np_dtype).reshape(shape)


def _in_batch(k: int) -> str:
    return f"record {k} of the batch"


def _nested_values(f: Field, payloads: list[bytes], where: Where) -> list[Any]:
    """Each payload is a one-row Arrow IPC record batch of one column ``item`` of the field's type."""
    import pyarrow as pa

    schema = pa.schema([pa.field("item", f.pa_type)])
    batches, rows = [], []
    for k, p in enumerate(payloads):
        if not p:
            continue
        try:
            batch = pa.ipc.read_record_batch(pa.py_buffer(p), schema)
            batch.validate(full=True)  # a crafted batch must not send to_pylist out of bounds
            if batch.num_rows != 1:
                raise ValueError(f"{batch.num_rows} rows where one is stored")
        except (ValueError, OverflowError, pa.ArrowException) as exc:
            raise RecordDecodeError(f"{where(k)}: field {f.name!r}: a stored nested value cannot be read "
                                    f"({str(exc)[:120]})") from None
        batches.append(batch)
        rows.append(k)
    try:
        values = pa.Table.from_batches(batches, schema).column(0).to_pylist() if batches else []
    except (ValueError, OverflowError, pa.ArrowException) as exc:
        raise RecordDecodeError(f"field {f.name!r}: a stored nested value has no Python form ({exc})") from None
    out: list[Any] = [None] * len(payloads)
    for k, v in zip(rows, values):
        out[k] = v
    return out
