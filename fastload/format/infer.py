"""Infer a schema from the first rows written: NumPy dtypes, Arrow types or Python values.

Python values are typed the way pyarrow types them (``pa.array(values)``), then mapped like any
Arrow column (:func:`.arrow_types.field_from_arrow`), so the same values give the same schema
whether they arrive as dicts, a torch Dataset, a DataFrame, a Table or a file. Two additions:
integers above int64's range that fit uint64 make a uint64 column (pyarrow refuses them), and
NumPy arrays (what a torch Dataset's tensors become) keep their dtype and shape.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import SchemaError
from .schema import Field, Schema

_INT64_MAX = 2**63 - 1
_UINT64_MAX = 2**64 - 1


def infer_schema(columns: dict[str, Any], given: dict[str, str] | None = None) -> Schema:
    """A schema for these columns; arrays are fixed-shape when every sample row agrees. Columns
    named in ``given`` (name -> type text) take that type and are not inferred, so a column whose
    values have no common type can still be packed, e.g. as json."""
    given = given or {}
    return Schema(tuple(Field.parse(name, given[name]) if name in given else infer_field(name, col)
                        for name, col in columns.items()))


def infer_field(name: str, col: Any) -> Field:
    from .arrow_types import field_from_arrow

    if type(col).__module__.startswith("pyarrow"):
        return field_from_arrow(name, col.type, col)
    if isinstance(col, np.ndarray) and col.dtype.kind in "biuf":
        if col.ndim == 1:
            return Field(name, "scalar", dtype=_dtype_name(col.dtype))
        return Field(name, "array", dtype=_dtype_name(col.dtype), shape=col.shape[1:])
    values = list(col)
    arrays = [v for v in values if isinstance(v, np.ndarray) and v.ndim > 0]
    if arrays:
        return _array_field(name, values, arrays)
    arr = python_to_arrow(name, _without_unrepresentable_ints(values))
    return field_from_arrow(name, arr.type, arr)


def python_to_arrow(name: str, values: list, typ: Any = None) -> Any:
    """``values`` as one pyarrow Array (of ``typ``, or of the type pyarrow infers).

    Raises SchemaError naming the field when the values have no common type.
    """
    import pyarrow as pa

    try:
        return pa.array(values, type=typ)
    except OverflowError:
        if typ is None and _fits_uint64(values):
            return pa.array(values, type=pa.uint64())
        raise SchemaError(f"field {name!r}: an integer does not fit "
                          f"{typ if typ is not None else 'int64 or uint64'}") from None
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, ValueError) as exc:
        kinds = sorted({type(v).__name__ for v in values if v is not None})
        raise SchemaError(
            f"field {name!r}: its values have no common type (Python types {kinds}: {exc}); "
            f"give one with --schema (for example {name}:json to store them as JSON)"
        ) from None


def _without_unrepresentable_ints(values: list) -> list:
    """An integer column's values with those no integer type holds (below int64's minimum or above
    uint64's maximum) as None: the type is inferred from the others, and such a row is a bad row at
    encoding, named by its place and skippable, rather than a schema that cannot be found."""
    ints = [v for v in values if v is not None]
    if not ints or not all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in ints):
        return values
    kept = [v if v is not None and -_INT64_MAX - 1 <= v <= _UINT64_MAX else None for v in values]
    # none in range: nothing to infer from, and python_to_arrow's error says why
    return kept if any(v is not None for v in kept) else values


def _fits_uint64(values: list) -> bool:
    ints = [v for v in values if v is not None]
    return bool(ints) and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and 0 <= v <= _UINT64_MAX
        for v in ints) and any(v > _INT64_MAX for v in ints)


def _array_field(name: str, values: list, arrays: list[np.ndarray]) -> Field:
    """A field for NumPy array values: fixed shape when all agree, -1 where they differ."""
    if len(arrays) != sum(v is not None for v in values):
        raise SchemaError(f"field {name!r}: mixes NumPy arrays with other values; pass a schema")
    first = arrays[0]
    if first.dtype.kind not in "biuf":
        raise SchemaError(f"field {name!r}: NumPy arrays of dtype {first.dtype} are not numeric; pass a schema")
    shapes = {v.shape for v in arrays}
    if len({len(s) for s in shapes}) != 1:
        raise SchemaError(f"field {name!r}: arrays of different ranks; pass a schema")
    dtype = np.result_type(*{v.dtype for v in arrays})
    if dtype.kind not in "biuf":
        raise SchemaError(f"field {name!r}: arrays of dtypes {sorted({str(v.dtype) for v in arrays})}; "
                          "pass a schema")
    shape = tuple(d if len({s[k] for s in shapes}) == 1 else -1 for k, d in enumerate(first.shape))
    return Field(name, "array", dtype=_dtype_name(dtype), shape=shape)


def _dtype_name(dt: np.dtype) -> str:
    return np.dtype(dt).name
