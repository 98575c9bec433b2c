"""Map Arrow types to fastload fields, and Arrow fixed-size lists to dense NumPy arrays.

Numeric leaves become scalars or arrays (``fixed_size_list`` dimensions stay fixed, ``list``
dimensions become -1), strings and binaries map to ``str``/``bytes``, and anything else
(structs, maps, lists of strings, temporal types...) is stored as ``json``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import SchemaError, SourceError
from .schema import NUMERIC_DTYPES, Field, Schema

def _type_tests(*names: str) -> tuple:
    # View types came in pyarrow 16; with an older pyarrow their columns cannot exist anyway.
    return tuple(getattr(pa.types, n) for n in names if hasattr(pa.types, n))


_STR_TESTS = _type_tests("is_string", "is_large_string", "is_string_view")
_BYTES_TESTS = _type_tests("is_binary", "is_large_binary", "is_binary_view", "is_fixed_size_binary")
_VAR_LIST_TESTS = _type_tests("is_list", "is_large_list", "is_list_view", "is_large_list_view")


def schema_from_arrow(pa_schema: pa.Schema) -> Schema:
    """The fastload schema of an Arrow schema, one field per column in column order."""
    return Schema(tuple(field_from_arrow(f.name, f.type) for f in pa_schema))


def field_from_arrow(name: str, typ: pa.DataType) -> Field:
    """The fastload field storing values of Arrow type ``typ``."""
    if isinstance(typ, pa.FixedShapeTensorType) and _is_identity(typ.permutation):
        dtype = _numeric_dtype(_unwrap(typ.value_type))
        if dtype is not None:
            return Field(name, "array", dtype=dtype, shape=tuple(typ.shape))
    typ = _unwrap(typ)
    if pa.types.is_null(typ):
        raise SourceError(
            f"column {name!r} holds only nulls (Arrow type null), so its type is unknown; "
            "give it with --schema or drop the column"
        )
    dtype = _numeric_dtype(typ)
    if dtype is not None:
        return Field(name, "scalar", dtype=dtype)
    if any(test(typ) for test in _STR_TESTS):
        return Field(name, "str")
    if any(test(typ) for test in _BYTES_TESTS):
        return Field(name, "bytes")
    dims, leaf = _list_dims(typ)
    if dims:
        if pa.types.is_null(leaf):
            # Every list seen was empty or null: the element type cannot be known.
            raise SourceError(
                f"column {name!r} is a list whose elements are all null or missing "
                f"(Arrow type {typ}); give its type with --schema"
            )
        dtype = _numeric_dtype(leaf)
        if dtype is not None:
            return Field(name, "array", dtype=dtype, shape=dims)
    return Field(name, "json")


def fixed_array_from_arrow(arr: pa.Array | pa.ChunkedArray, field: Field) -> np.ndarray:
    """The rows of ``arr`` as a read-only ``(n, *field.shape)`` array of ``field.dtype``.

    ``arr`` is a (nested) fixed-size list, or a list whose rows all have the same length (a
    JSON column of token lists declared ``uint16[2049]``). Numeric leaves of the field's dtype
    and without nulls come back zero-copy; other dtypes are cast with overflow checks.
    """
    if not field.is_fixed or field.kind != "array":
        raise SchemaError(f"field {field.name!r} ({field.spec}) is not a fixed-shape array")
    if isinstance(arr, pa.ChunkedArray):
        parts = [fixed_array_from_arrow(c, field) for c in arr.chunks]
        if len(parts) == 1:
            return parts[0]
        return np.concatenate(parts) if parts else np.empty((0, *field.shape), field.np_dtype)
    n = len(arr)
    leaf = _unwrap_array(arr)
    depth = 0
    while _is_list(leaf.type):
        if leaf.null_count:
            raise SchemaError(_null_message(field, leaf, depth))
        if not pa.types.is_fixed_size_list(leaf.type) and len(leaf):
            lengths = pc.list_value_length(leaf).to_numpy()
            if (lengths != lengths[0]).any():
                row = int(np.argmax(lengths != lengths[0]))
                raise SchemaError(
                    f"field {field.name!r} ({field.spec}): list lengths differ "
                    f"({lengths[0]} then {lengths[row]} at {_where(depth, row)})"
                )
        leaf = _unwrap_array(leaf.flatten())
        depth += 1
    if depth == 0 or _numeric_dtype(leaf.type) is None:
        raise SchemaError(
            f"field {field.name!r} ({field.spec}) cannot be read from Arrow type {arr.type}"
        )
    if leaf.null_count:
        raise SchemaError(_null_message(field, leaf, depth))
    per_row = int(np.prod(field.shape))
    if len(leaf) != n * per_row:
        raise SchemaError(
            f"field {field.name!r} ({field.spec}) needs {per_row} values per row; "
            f"Arrow type {arr.type} holds {len(leaf) // max(n, 1)}"
        )
    target = pa.from_numpy_dtype(np.dtype(field.dtype))
    if leaf.type != target:
        try:
            leaf = pc.cast(leaf, target, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise SchemaError(f"field {field.name!r} ({field.spec}): {exc}") from None
    # Bool leaves are bit-packed in Arrow, so they alone need a copy here.
    values = leaf.to_numpy(zero_copy_only=not pa.types.is_boolean(target))
    return values.reshape((n, *field.shape))


def _unwrap(typ: pa.DataType) -> pa.DataType:
    """The type values of ``typ`` really have: dictionary values, extension storage."""
    while True:
        if pa.types.is_dictionary(typ):
            typ = typ.value_type
        elif isinstance(typ, pa.ExtensionType):
            typ = typ.storage_type
        else:
            return typ


def _unwrap_array(arr: pa.Array) -> pa.Array:
    while True:
        if pa.types.is_dictionary(arr.type):
            arr = arr.dictionary_decode()
        elif isinstance(arr, pa.ExtensionArray):
            arr = arr.storage
        else:
            return arr


def _numeric_dtype(typ: pa.DataType) -> str | None:
    if pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_boolean(typ):
        name = np.dtype(typ.to_pandas_dtype()).name
        return name if name in NUMERIC_DTYPES else None
    return None


def _is_identity(permutation: list[int] | None) -> bool:
    # A permuted tensor stores its values in another dimension order than its logical shape.
    return permutation is None or list(permutation) == sorted(permutation)


def _is_list(typ: pa.DataType) -> bool:
    return pa.types.is_fixed_size_list(typ) or any(test(typ) for test in _VAR_LIST_TESTS)


def _list_dims(typ: pa.DataType) -> tuple[tuple[int, ...], pa.DataType]:
    """Dimensions of nested lists (-1 for variable ones) and the leaf type under them."""
    dims: list[int] = []
    while _is_list(typ):
        dims.append(typ.list_size if pa.types.is_fixed_size_list(typ) else -1)
        typ = _unwrap(typ.value_type)
    return tuple(dims), typ


def _null_message(field: Field, arr: Any, depth: int) -> str:
    first = int(np.argmax(arr.is_null().to_numpy(zero_copy_only=False)))
    return (
        f"field {field.name!r} ({field.spec}) cannot store nulls: "
        f"null at {_where(depth, first)}"
    )


def _where(depth: int, index: int) -> str:
    # Below the top level the index counts flattened values, which is all Arrow gives cheaply.
    return f"row {index}" if depth == 0 else f"value {index} of nesting level {depth}"
