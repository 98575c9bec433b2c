"""Infer a schema from the first rows written: NumPy dtypes, Arrow types or Python values."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import SchemaError
from .schema import Field, Schema


def infer_schema(columns: dict[str, Any]) -> Schema:
    """A schema for these columns; arrays are fixed-shape when every sample row agrees."""
    return Schema(tuple(infer_field(name, col) for name, col in columns.items()))


def infer_field(name: str, col: Any) -> Field:
    if type(col).__module__.startswith("pyarrow"):
        import pyarrow as pa

        from .arrow_types import schema_from_arrow

        return schema_from_arrow(pa.schema([pa.field(name, col.type)])).fields[0]
    if isinstance(col, np.ndarray) and col.dtype.kind in "biuf":
        if col.ndim == 1:
            return Field(name, "scalar", dtype=_dtype_name(col.dtype))
        return Field(name, "array", dtype=_dtype_name(col.dtype), shape=col.shape[1:])
    values = [v for v in col if v is not None]
    if not values:
        raise SchemaError(f"cannot infer the type of field {name!r}: no non-null value; pass a schema")
    first = values[0]
    if isinstance(first, (bool, np.bool_)):
        return Field(name, "scalar", dtype="bool")
    if isinstance(first, (int, np.integer)) and all(isinstance(v, (int, np.integer)) for v in values):
        return Field(name, "scalar", dtype="int64" if not isinstance(first, np.integer) else _dtype_name(first.dtype))
    if isinstance(first, (int, float, np.integer, np.floating)) and all(
        isinstance(v, (int, float, np.integer, np.floating)) for v in values
    ):
        return Field(name, "scalar", dtype="float64" if not isinstance(first, np.floating) else _dtype_name(first.dtype))
    if isinstance(first, str):
        return Field(name, "str")
    if isinstance(first, (bytes, bytearray, memoryview)):
        return Field(name, "bytes")
    if isinstance(first, np.ndarray) and first.dtype.kind in "biuf":
        shapes = {np.shape(v) for v in values}
        ndims = {len(s) for s in shapes}
        if len(ndims) != 1:
            raise SchemaError(f"field {name!r}: arrays of different ranks; pass a schema")
        if len(shapes) == 1:
            return Field(name, "array", dtype=_dtype_name(first.dtype), shape=first.shape or (1,))
        shape = tuple(d if len({s[k] for s in shapes}) == 1 else -1 for k, d in enumerate(first.shape))
        return Field(name, "array", dtype=_dtype_name(first.dtype), shape=shape)
    if isinstance(first, (dict, list, tuple)) or first is None:
        return Field(name, "json")
    raise SchemaError(f"cannot infer the type of field {name!r} from {type(first).__name__}; pass a schema")


def _dtype_name(dt: np.dtype) -> str:
    return np.dtype(dt).name
