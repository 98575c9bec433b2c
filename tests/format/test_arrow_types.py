"""Arrow type -> fastload field mapping, and fixed-size lists -> dense NumPy arrays."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastload.errors import SchemaError
from fastload.format.arrow_types import field_from_arrow, fixed_array_from_arrow, schema_from_arrow
from fastload.format.schema import Field

MAPPING = [
    (pa.int8(), "int8"), (pa.int16(), "int16"), (pa.int32(), "int32"), (pa.int64(), "int64"),
    (pa.uint8(), "uint8"), (pa.uint16(), "uint16"), (pa.uint32(), "uint32"),
    (pa.uint64(), "uint64"), (pa.float16(), "float16"), (pa.float32(), "float32"),
    (pa.float64(), "float64"), (pa.bool_(), "bool"),
    (pa.string(), "str"), (pa.large_string(), "str"),
    (pa.binary(), "bytes"), (pa.large_binary(), "bytes"),
    (pa.list_(pa.float32(), 3), "float32[3]"),
    (pa.list_(pa.list_(pa.uint8(), 3), 2), "uint8[2,3]"),
    (pa.list_(pa.int64()), "int64[-1]"),
    (pa.large_list(pa.float64()), "float64[-1]"),
    (pa.list_(pa.list_(pa.int8(), 4)), "int8[-1,4]"),
    # a list of variable lists can be ragged: kept as its exact Arrow type
    (pa.list_(pa.list_(pa.int8())), "arrow<list<item: list<item: int8>>>"),
    (pa.list_(pa.list_(pa.int16()), 2), "arrow<fixed_size_list<item: list<item: int16>>[2]>"),
    (pa.struct([("x", pa.int8())]), "arrow<struct<x: int8>>"),
    (pa.map_(pa.string(), pa.int32()), "arrow<map<string, int32>>"),
    (pa.list_(pa.string()), "arrow<list<item: string>>"),
    (pa.list_(pa.field("element", pa.large_string())), "arrow<list<item: large_string>>"),
    (pa.timestamp("ms"), "timestamp[ms]"),
    (pa.timestamp("ns", tz="America/New_York"), "timestamp[ns, tz=America/New_York]"),
    (pa.date32(), "date32[day]"), (pa.date64(), "date64[ms]"),
    (pa.time32("s"), "time32[s]"), (pa.time64("ns"), "time64[ns]"),
    (pa.duration("us"), "duration[us]"),
    (pa.decimal128(10, 2), "decimal128(10, 2)"), (pa.decimal256(50, -3), "decimal256(50, -3)"),
    (pa.binary(4), "bytes"),
    (pa.null(), "null"),
    (pa.dictionary(pa.int8(), pa.string()), "str"),
    (pa.dictionary(pa.int16(), pa.float32()), "float32"),
    (pa.fixed_shape_tensor(pa.float32(), (2, 3)), "float32[2,3]"),
]
if hasattr(pa, "string_view"):  # pyarrow >= 16
    MAPPING += [(pa.string_view(), "str"), (pa.binary_view(), "bytes")]


@pytest.mark.parametrize("typ, spec", MAPPING, ids=[str(t) for t, _ in MAPPING])
def test_field_from_arrow(typ, spec):
    assert field_from_arrow("col", typ).spec == spec


def test_schema_keeps_names_and_order():
    schema = schema_from_arrow(pa.schema([("b", pa.int32()), ("a", pa.string())]))
    assert schema.names == ["b", "a"]
    assert schema.describe() == "b: int32, a: str"


def test_numeric_lists_with_null_elements_in_the_sample_stay_nested():
    schema = pa.schema([("a", pa.list_(pa.int64())), ("b", pa.list_(pa.int64()))])
    sample = pa.table({"a": [[1, None], None], "b": [[1, 2], None]}, schema=schema)
    fields = schema_from_arrow(schema, sample)
    assert fields["a"].spec == "arrow<list<item: int64>>"  # keeps the null element
    assert fields["b"].spec == "int64[-1]"  # a null row is a null, not a null element
    assert schema_from_arrow(schema)["a"].spec == "int64[-1]"  # by type alone


def _fixed(values: np.ndarray) -> pa.Array:
    """A (nested) FixedSizeListArray holding ``values`` row by row."""
    arr = pa.array(values.reshape(-1))
    for size in reversed(values.shape[1:]):
        arr = pa.FixedSizeListArray.from_arrays(arr, size)
    return arr


def test_nested_fixed_list_is_zero_copy():
    values = np.arange(24, dtype=np.float32).reshape(4, 2, 3)
    arr = _fixed(values)
    out = fixed_array_from_arrow(arr, Field("x", "array", dtype="float32", shape=(2, 3)))
    np.testing.assert_array_equal(out, values)
    leaf_buffer = arr.flatten().flatten().buffers()[1]
    assert out.ctypes.data == leaf_buffer.address


def test_sliced_and_chunked_arrays():
    values = np.arange(20, dtype=np.int32).reshape(10, 2)
    arr = _fixed(values)
    field = Field("x", "array", dtype="int32", shape=(2,))
    np.testing.assert_array_equal(fixed_array_from_arrow(arr.slice(3, 4), field), values[3:7])
    chunked = pa.chunked_array([arr.slice(0, 6), arr.slice(6)])
    np.testing.assert_array_equal(fixed_array_from_arrow(chunked, field), values)
    empty = fixed_array_from_arrow(pa.chunked_array([], arr.type), field)
    assert empty.shape == (0, 2) and empty.dtype == np.int32


def test_cast_to_the_field_dtype_checks_overflow():
    field = Field("tokens", "array", dtype="uint16", shape=(2,))
    out = fixed_array_from_arrow(_fixed(np.array([[1, 65535]], dtype=np.int64)), field)
    assert out.dtype == np.uint16 and out.tolist() == [[1, 65535]]
    with pytest.raises(SchemaError, match="'tokens'"):
        fixed_array_from_arrow(_fixed(np.array([[1, 65536]], dtype=np.int64)), field)


def test_uniform_variable_lists_become_fixed():
    field = Field("tokens", "array", dtype="int64", shape=(3,))
    arr = pa.array([[1, 2, 3], [4, 5, 6]], pa.list_(pa.int64()))
    assert fixed_array_from_arrow(arr, field).tolist() == [[1, 2, 3], [4, 5, 6]]
    with pytest.raises(SchemaError, match="lengths differ.*row 1"):
        fixed_array_from_arrow(pa.array([[1, 2, 3], [4, 5]], pa.list_(pa.int64())), field)


def test_nulls_are_refused_with_their_row():
    field = Field("x", "array", dtype="int8", shape=(2,))
    with pytest.raises(SchemaError, match="row 1"):
        fixed_array_from_arrow(pa.array([[1, 2], None], pa.list_(pa.int8(), 2)), field)
    with pytest.raises(SchemaError, match="null"):
        fixed_array_from_arrow(pa.array([[1, None]], pa.list_(pa.int8(), 2)), field)


def test_bool_leaves_and_tensor_extension():
    flags = fixed_array_from_arrow(pa.array([[True, False]], pa.list_(pa.bool_(), 2)),
                                   Field("f", "array", dtype="bool", shape=(2,)))
    assert flags.dtype == np.bool_ and flags.tolist() == [[True, False]]
    values = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
    tensor = pa.FixedShapeTensorArray.from_numpy_ndarray(values)
    field = field_from_arrow("t", tensor.type)
    np.testing.assert_array_equal(fixed_array_from_arrow(tensor, field), values)


def test_refuses_what_it_cannot_make_fixed():
    with pytest.raises(SchemaError, match="not a fixed-shape array"):
        fixed_array_from_arrow(pa.array([[1]], pa.list_(pa.int8())),
                               Field("v", "array", dtype="int8", shape=(-1,)))
    with pytest.raises(SchemaError, match="needs 4 values per row"):
        fixed_array_from_arrow(_fixed(np.zeros((2, 3), np.int8)),
                               Field("v", "array", dtype="int8", shape=(4,)))
    with pytest.raises(SchemaError, match="cannot be read"):
        fixed_array_from_arrow(pa.array([1, 2], pa.int8()), Field("v", "array", dtype="int8", shape=(1,)))


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 5),
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    dtype=st.sampled_from(["uint8", "int16", "int64", "float32", "float64"]),
    data=st.data(),
)
def test_fixed_round_trip(n, shape, dtype, data):
    size = n * int(np.prod(shape))
    flat = data.draw(st.lists(st.integers(0, 100), min_size=size, max_size=size))
    values = np.array(flat, dtype=dtype).reshape((n, *shape))
    arr = _fixed(values)
    field = field_from_arrow("v", arr.type)
    assert field.shape == tuple(shape) and field.dtype == dtype
    out = fixed_array_from_arrow(arr, field)
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, values)
