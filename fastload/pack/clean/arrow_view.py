"""Converted rows (the stored forms) seen as Arrow arrays, without copying the values.

Filters run as ``pyarrow.compute`` expressions and text normalisation as Arrow string kernels, so
both need the rows as Arrow arrays: a variable column's int64 offsets and bytes are exactly a
``large_string``/``large_binary`` array's buffers, and numeric columns are NumPy buffers Arrow
wraps as they are. A null (a field's row mask, when the conversion found nulls) is an Arrow null.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from ...errors import FilterError
from ...format.columns import VarColumn
from ...format.schema import Field, Schema


def row_masks(conv: Any) -> dict[str, np.ndarray]:
    """The null masks (True = a value) of fields with nulls in these rows; none in a plain dict."""
    return getattr(conv, "valid", {})


def filterable(f: Field) -> bool:
    """Whether a field can be seen as an Arrow array here (variable arrays of rank > 1 cannot)."""
    return not (f.kind == "array" and not f.is_fixed and len(f.shape) > 1)


def arrow_table(schema: Schema, conv: Any, n: int, names: Sequence[str] | None = None) -> pa.Table:
    """The fields ``names`` (default: every field that can be) of ``n`` converted rows as a table."""
    masks = row_masks(conv)
    wanted = [f for f in schema if (names is None and filterable(f)) or (names is not None and f.name in names)]
    arrays = [arrow_array(f, conv[f.name], n, masks.get(f.name)) for f in wanted]
    return pa.Table.from_arrays(arrays, names=[f.name for f in wanted])


def arrow_array(f: Field, col: Any, n: int, valid: np.ndarray | None = None) -> pa.Array:
    """One converted column as an Arrow array (zero-copy where the layouts agree)."""
    nulls = None if valid is None else pa.py_buffer(np.packbits(valid, bitorder="little"))
    if isinstance(col, VarColumn):
        if f.kind == "array":
            if len(f.shape) > 1:
                raise FilterError(f"field {f.name!r} ({f.spec}) is an array of variable shape with more "
                                  "than one dimension, which filters cannot read")
            item = f.np_dtype.itemsize
            offsets = pa.array(col.offsets // item, pa.int64())
            values = pa.array(col.data.view(f.np_dtype))
            arr = pa.LargeListArray.from_arrays(offsets, values)
            return arr if valid is None else pa.LargeListArray.from_arrays(offsets, values, mask=pa.array(~valid))
        typ = pa.large_string() if f.kind in ("str", "json") else pa.large_binary()
        return pa.Array.from_buffers(typ, n, [nulls, pa.py_buffer(col.offsets), pa.py_buffer(col.data)])
    values = np.ascontiguousarray(col)
    if f.kind == "scalar":
        return pa.array(values, mask=None if valid is None else ~valid)
    arr = pa.array(values.reshape(-1))
    for size in reversed(f.shape):  # the innermost dimension first
        arr = pa.FixedSizeListArray.from_arrays(arr, size)
    if valid is not None:
        arr = pa.Array.from_buffers(arr.type, n, [nulls], children=[arr.values])
    return arr
