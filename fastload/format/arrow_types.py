"""Map Arrow types to fastload fields, and Arrow fixed-size lists to dense NumPy arrays.

Numeric leaves become scalars or arrays (``fixed_size_list`` dimensions stay fixed, a ``list``
outermost dimension becomes -1), strings and binaries map to ``str``/``bytes``, dates, times,
timestamps, durations and decimals keep their logical type over a numeric storage
(:mod:`.logical`), an all-null column is a ``null`` field, and every other type (structs, maps,
lists of strings, ragged lists of lists, numeric lists holding null elements...) is a nested
``arrow`` field that keeps its exact Arrow type.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import SchemaError
from .logical import logical_of_arrow
from .schema import NUMERIC_DTYPES, Field, Schema, encode_arrow_type


def _type_tests(*names: str) -> tuple:
    # View types came in pyarrow 16; with an older pyarrow their columns cannot exist anyway.
    return tuple(getattr(pa.types, n) for n in names if hasattr(pa.types, n))


_STR_TESTS = _type_tests("is_string", "is_large_string", "is_string_view")
_BYTES_TESTS = _type_tests("is_binary", "is_large_binary", "is_binary_view", "is_fixed_size_binary")
_VAR_LIST_TESTS = _type_tests("is_list", "is_large_list", "is_list_view", "is_large_list_view")


def schema_from_arrow(pa_schema: pa.Schema, sample: Any = None) -> Schema:
    """The fastload schema of an Arrow schema, one field per column in column order.

    ``sample`` (a Table or RecordBatch of the same schema, e.g. the first rows) lets a numeric
    list column that holds null elements become a nested field, which keeps them.
    """
    columns = {} if sample is None else dict(zip(sample.schema.names, sample.columns))
    return Schema(tuple(field_from_arrow(f.name, f.type, columns.get(f.name)) for f in pa_schema))


def field_from_arrow(name: str, typ: pa.DataType, data: Any = None) -> Field:
    """The fastload field storing values of Arrow type ``typ``; ``data`` is optional sample values."""
    if isinstance(typ, pa.FixedShapeTensorType) and _is_identity(typ.permutation):
        dtype = _numeric_dtype(_unwrap(typ.value_type))
        if dtype is not None:
            return Field(name, "array", dtype=dtype, shape=tuple(typ.shape))
    typ = _unwrap(typ)
    if pa.types.is_null(typ):
        return Field(name, "null")
    dtype = _numeric_dtype(typ)
    if dtype is not None:
        return Field(name, "scalar", dtype=dtype)
    logical = logical_of_arrow(typ)
    if logical is not None:
        return Field(name, "array" if logical.shape else "scalar", dtype=logical.dtype,
                     shape=logical.shape, logical=logical.text)
    if any(test(typ) for test in _STR_TESTS):
        return Field(name, "str")
    if any(test(typ) for test in _BYTES_TESTS):
        return Field(name, "bytes")
    dims, leaf = _list_dims(typ)
    dtype = _numeric_dtype(leaf) if dims else None
    # Only the outermost dimension may vary: a list of variable lists can be ragged.
    if dtype is not None and -1 not in dims[1:] and not (data is not None and _inner_nulls(data)):
        return Field(name, "array", dtype=dtype, shape=dims)
    return Field(name, "arrow", arrow_type=encode_arrow_type(plain_type(typ)))


def table_from_pandas(df: Any) -> pa.Table:
    """A DataFrame as the Arrow table fastload stores (pandas' missing values become nulls); a
    column Arrow cannot type, such as mixed objects, is a SchemaError naming it."""
    errors = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError)
    try:
        return pa.Table.from_pandas(df, preserve_index=False)
    except errors as exc:
        first_error = exc
    for name in df.columns:  # name the column
        try:
            pa.array(df[name], from_pandas=True)
        except errors as exc:
            first_error = exc
            break
    else:
        name = "?"
    raise SchemaError(f"DataFrame column {name!r} has no single Arrow type ({first_error}); convert it "
                      f"(e.g. df[{name!r}].astype(str)) or drop it") from None


def needs_sample(pa_schema: pa.Schema) -> bool:
    """True when :func:`schema_from_arrow` would look at sample values: a numeric list column
    (nulls inside it make it nested). Other schemas need no data read."""
    for f in pa_schema:
        dims, leaf = _list_dims(_unwrap(f.type))
        if dims and _numeric_dtype(leaf) is not None:
            return True
    return False


def plain_type(typ: pa.DataType) -> pa.DataType:
    """``typ`` as a nested field stores it: dictionaries decoded, extension types as their storage,
    view types as plain ones, standard child names and no field metadata, so the same values
    from any source get the same type."""
    typ = _unwrap(typ)
    t = pa.types
    if hasattr(t, "is_string_view") and t.is_string_view(typ):
        return pa.string()
    if hasattr(t, "is_binary_view") and t.is_binary_view(typ):
        return pa.binary()
    if t.is_struct(typ):
        return pa.struct([pa.field(f.name, plain_type(f.type), f.nullable) for f in typ])
    if t.is_map(typ):
        return pa.map_(pa.field("key", plain_type(typ.key_type), False),
                       pa.field("value", plain_type(typ.item_type), typ.item_field.nullable),
                       keys_sorted=typ.keys_sorted)
    if t.is_fixed_size_list(typ):
        return pa.list_(_item(typ), typ.list_size)
    if t.is_large_list(typ) or (hasattr(t, "is_large_list_view") and t.is_large_list_view(typ)):
        return pa.large_list(_item(typ))
    if any(test(typ) for test in _VAR_LIST_TESTS):
        return pa.list_(_item(typ))
    return typ


def _item(typ: pa.DataType) -> pa.Field:
    return pa.field("item", plain_type(typ.value_type), typ.value_field.nullable)


def _inner_nulls(data: Any) -> bool:
    """True when a list column holds a null below its top level (an element or an inner list)."""
    chunks = data.chunks if isinstance(data, pa.ChunkedArray) else [data]
    for arr in chunks:
        arr = _unwrap_array(arr)
        while _is_list(arr.type):
            arr = _unwrap_array(arr.flatten())
            if arr.null_count:
                return True
    return False


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
