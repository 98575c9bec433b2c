"""Hypothesis strategies over pyarrow's type space: random types (nested ones included) and
arrays of them with nulls at random, built by pyarrow itself from Python values."""

from __future__ import annotations

import datetime
import decimal

import pyarrow as pa
from hypothesis import strategies as st

UNITS = ("s", "ms", "us", "ns")
ZONES = (None, "UTC", "Europe/Paris", "America/New_York", "+05:30")
# a name as users write them: spaces, punctuation, quotes, brackets, leading digits, any script
NAMES = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=8)

PRIMITIVES = [
    pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64(),
    pa.float16(), pa.float32(), pa.float64(), pa.bool_(),
    pa.string(), pa.large_string(), pa.string_view(), pa.binary(), pa.large_binary(), pa.binary_view(),
    pa.binary(3), pa.date32(), pa.date64(), pa.time32("s"), pa.time32("ms"), pa.time64("us"),
    pa.time64("ns"), pa.null(),
]


LEAVES = PRIMITIVES + [pa.timestamp(u, tz=z) for u in UNITS for z in ZONES] + [pa.duration(u) for u in UNITS] + [
    pa.decimal128(1, 0), pa.decimal128(9, 3), pa.decimal128(38, 10), pa.decimal256(40, 5), pa.decimal256(76, 0),
]
leaf_types = st.sampled_from(LEAVES)  # uniform: one_of and integer picks lean towards the first choice


def nested_types(inner: st.SearchStrategy) -> st.SearchStrategy:
    keys = st.sampled_from([pa.string(), pa.int32()])
    return st.one_of(
        inner.map(pa.list_), inner.map(pa.large_list),
        st.tuples(inner, st.integers(1, 3)).map(lambda t: pa.list_(*t)),
        st.lists(st.tuples(NAMES, inner), min_size=1, max_size=3, unique_by=lambda f: f[0]).map(pa.struct),
        st.tuples(keys, inner).map(lambda t: pa.map_(*t)),
    )


arrow_types = st.one_of(leaf_types, st.recursive(leaf_types, nested_types, max_leaves=4))


def values(typ: pa.DataType, nullable: bool = True) -> st.SearchStrategy:
    """Python values pyarrow converts to ``typ`` (None among them when ``nullable``)."""
    base = _values(typ)
    return st.one_of(st.none(), base) if nullable and not pa.types.is_null(typ) else base


def _values(typ: pa.DataType) -> st.SearchStrategy:
    t = pa.types
    if t.is_null(typ):
        return st.none()
    if t.is_boolean(typ):
        return st.booleans()
    if t.is_integer(typ):
        bits = typ.bit_width
        lo, hi = (0, 2**bits - 1) if t.is_unsigned_integer(typ) else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        return st.integers(lo, hi)
    if t.is_floating(typ):
        return st.floats(width=typ.bit_width)
    if t.is_string(typ) or t.is_large_string(typ) or t.is_string_view(typ):
        return st.text(st.characters(exclude_categories=("Cs",)), max_size=5)
    if t.is_fixed_size_binary(typ):
        return st.binary(min_size=typ.byte_width, max_size=typ.byte_width)
    if t.is_binary(typ) or t.is_large_binary(typ) or t.is_binary_view(typ):
        return st.binary(max_size=6)
    if t.is_date(typ):
        return st.dates()
    if t.is_time(typ):
        step = {"s": 10**6, "ms": 10**3}.get(typ.unit, 1)
        return st.integers(0, 86_400 * 10**6 - 1).map(
            lambda us: (datetime.datetime.min + datetime.timedelta(microseconds=us // step * step)).time())
    if t.is_timestamp(typ):  # within what every unit (and Python's datetime) holds
        seconds = st.integers(-9 * 10**9, 9 * 10**9)
        return st.builds(lambda s, us: pa.scalar(s * 10**6 + us, pa.timestamp("us")).cast(typ).as_py(),
                         seconds, st.integers(0, 10**6 - 1) if typ.unit in ("us", "ns") else st.just(0))
    if t.is_duration(typ):
        return st.integers(-10**12, 10**12).map(lambda v: pa.scalar(v, pa.duration(typ.unit)).as_py())
    if t.is_decimal(typ):
        digits = st.integers(-(10**typ.precision) + 1, 10**typ.precision - 1)
        return digits.map(lambda d: decimal.Decimal(f"{d}E-{typ.scale}"))  # exact, whatever the context
    if t.is_fixed_size_list(typ):
        return st.lists(values(typ.value_type), min_size=typ.list_size, max_size=typ.list_size)
    if t.is_list(typ) or t.is_large_list(typ):
        return st.lists(values(typ.value_type), max_size=3)
    if t.is_struct(typ):
        return st.fixed_dictionaries({f.name: values(f.type) for f in typ})
    if t.is_map(typ):
        return st.lists(st.tuples(_values(typ.key_type), values(typ.item_type)), max_size=3,
                        unique_by=lambda kv: kv[0])
    raise NotImplementedError(str(typ))


@st.composite
def tables(draw, max_columns: int = 4, max_rows: int = 6) -> pa.Table:
    """A table of random columns (types, names), with nulls at random, some dictionary-encoded."""
    names = draw(st.lists(NAMES, min_size=1, max_size=max_columns, unique=True)
                 .filter(lambda ns: not any(n + ".valid" in ns for n in ns)))
    n = draw(st.integers(1, max_rows))
    columns = []
    for _ in names:
        typ = draw(arrow_types)
        nulls = draw(st.booleans())  # about half the columns hold no null at the top level
        col = pa.array(draw(st.lists(values(typ, nulls), min_size=n, max_size=n)), type=typ)
        if (pa.types.is_string(typ) or pa.types.is_int64(typ)) and draw(st.booleans()):
            col = col.dictionary_encode()
        columns.append(col)
    return pa.table(columns, names=names)
