"""What pack stores is what it was given: UTF-8 checked for str, integers never rounded through a
float, nulls kept in every kind of field, logical types at their own unit."""

from __future__ import annotations

import datetime
import decimal

import numpy as np
import pyarrow as pa
import pytest

import fastload
from fastload import SchemaError, Writer
from fastload.format.columns import convert_columns
from fastload.format.schema import Schema


def invalid_utf8_strings() -> pa.Array:
    """A string array whose second value is not UTF-8 (Arrow's file readers let such through)."""
    data = b"ok" + b"\xff\xfe" + "é".encode()
    offsets = np.array([0, 2, 4, 6], np.int32)
    return pa.Array.from_buffers(pa.string(), 3, [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data)])


def test_invalid_utf8_in_an_arrow_string_column_is_a_bad_row(tmp_path):
    table = pa.table({"id": [0, 1, 2], "s": invalid_utf8_strings()})
    with pytest.raises(SchemaError, match=r"record 1: field 's': string is not valid UTF-8 \(byte 0"):
        with Writer(tmp_path / "raise") as w:
            w.write_batch(table)
    with Writer(tmp_path / "skip", on_error="skip") as w:
        w.write_batch(table)
    assert [r for r, _ in w.skipped] == [1]
    ds = fastload.open(tmp_path / "skip")
    assert [ds[i] for i in range(len(ds))] == [{"id": 0, "s": "ok"}, {"id": 2, "s": "é"}]


def test_invalid_utf8_in_a_jsonl_file_names_file_line_and_field(tmp_path):
    path = tmp_path / "u.jsonl"
    path.write_bytes(b'{"id": 0, "s": "ok"}\n{"id": 1, "s": "\xff\xfe"}\n{"id": 2, "s": "fine"}\n')
    with pytest.raises(fastload.SourceError, match=r"u\.jsonl line 2: field 's': string is not valid UTF-8"):
        fastload.pack(path, tmp_path / "raise", progress=False)
    report = fastload.pack(path, tmp_path / "skip", on_error="skip", progress=False)
    assert report.skipped == 1
    assert [r["id"] for r in fastload.open(tmp_path / "skip")] == [0, 2]


@pytest.mark.parametrize("values, spec, want, bad", [
    ([9007199254740993, 1.0, None], "int64", [9007199254740993, 1, None], {}),  # never via float64
    ([2**64 - 1, 1], "uint64", [2**64 - 1, 1], {}),
    ([2**63, 1], "int64", None, {0: "value 9223372036854775808 does not fit int64"}),
    ([1, 1.5], "int16", None, {1: "value 1.5 does not fit int16"}),
    ([2**53 + 1, 0.5], "float64", None, {0: "value 9007199254740993 does not fit float64"}),
    ([float("nan")], "int32", None, {0: "value nan does not fit int32"}),
    ([True, 2], "bool", None, {1: "value 2 does not fit bool"}),
])
def test_python_numbers_are_stored_exactly_or_refused(values, spec, want, bad):
    schema = Schema.parse(f"x:{spec}")
    conv, got_bad = convert_columns(schema, {"x": values}, len(values))
    assert got_bad == {row: f"field 'x': {reason}" for row, reason in bad.items()}
    if want is not None:
        valid = conv.valid.get("x", np.ones(len(values), bool))
        assert [int(v) if ok else None for v, ok in zip(conv["x"].tolist(), valid)] == want


def test_arrow_numbers_are_cast_with_checks():
    schema = Schema.parse("a:int64,b:uint8,c:float32")
    columns = {"a": pa.array([2.0, 2.5, None]), "b": pa.array([255, 256, 1]), "c": pa.array([1, 2**40 + 1, 3])}
    conv, bad = convert_columns(schema, columns, 3)
    assert bad == {1: "field 'a': value 2.5 does not fit int64"}
    conv, bad = convert_columns(schema, {**columns, "a": pa.array([2.0, 3.0, None])}, 3)
    assert bad == {1: "field 'b': value 256 does not fit uint8"}
    conv, bad = convert_columns(schema, {**columns, "a": pa.array([2.0, 3.0, None]), "b": pa.array([1, 2, 3])}, 3)
    assert bad == {1: "field 'c': value 1099511627777 is not exactly representable as float32"}


def test_logical_types_convert_between_units_only_exactly():
    schema = Schema.parse("t:timestamp[s],d:date32,p:decimal128(6, 2)")
    ok = {"t": pa.array([1000, 2000], pa.timestamp("ms")), "d": pa.array(["2024-02-29", None]),
          "p": pa.array([decimal.Decimal("1.5"), decimal.Decimal("-2.25")])}
    conv, bad = convert_columns(schema, ok, 2)
    assert not bad and conv["t"].tolist() == [1, 2] and conv["d"].tolist()[0] == 19782
    lossy = {**ok, "t": pa.array([1000, 1500], pa.timestamp("ms")), "p": pa.array([decimal.Decimal("1.255"), None])}
    _, bad = convert_columns(schema, lossy, 2)
    assert set(bad) == {0, 1} and "field 'p'" in bad[0] and "field 't'" in bad[1]


def test_nulls_in_every_kind_from_python(tmp_path):
    rows = [{"i": 1, "f": 1.5, "b": True, "s": "x", "y": b"\x00", "a": [1, 2], "v": [1.0, 2.0],
             "t": datetime.datetime(2024, 1, 1, 12), "m": {"k": [1]}, "j": {"any": "json"}},
            {k: None for k in "ifbsyavtmj"}]
    schema = "v:float32[2],j:json"
    fastload.pack(rows, tmp_path / "ds", schema=schema, progress=False)
    ds = fastload.open(tmp_path / "ds")
    assert [f.name for f in ds.schema if f.nullable] == ["i", "f", "b", "s", "y", "a", "v", "t", "m"]
    assert ds[1] == {k: None for k in "ifbsyavtmj"}  # a json None is JSON null
    assert ds[0]["t"] == datetime.datetime(2024, 1, 1, 12) and ds[0]["m"] == {"k": [1]}
    batch = ds.get_batch([0, 1])
    assert batch["i"].tolist() == [1, 0] and batch["i.valid"].tolist() == [True, False]
    assert batch["v"].tolist() == [[1.0, 2.0], [0.0, 0.0]] and batch["v.valid"].tolist() == [True, False]
    assert batch["s"] == ["x", None] and batch["a"][1] is None and "s.valid" not in batch
    padded, lengths = ds.get_batch([0, 1], ["a"], pad=True)["a"]
    assert padded.tolist() == [[1, 2], [0, 0]] and lengths.tolist() == [2, 0]


def test_a_column_without_nulls_stores_no_bitmap(tmp_path):
    table = pa.table({"x": [1, 2, 3, 4], "y": pa.array([1.0, None, 3.0, 4.0])})
    fastload.pack(table, tmp_path / "ds", block_size=16, progress=False)  # one record a block... about
    ds = fastload.open(tmp_path / "ds")
    reader = ds.shard(0)
    assert reader.null_fields == ("y",) and [f.nullable for f in ds.schema] == [False, True]
    has = reader.bitmap_offsets != 0xFFFFFFFF
    assert not has[:, 0].any()  # x: never
    assert has[:, 1].sum() == 1  # y: only the block holding the null


def test_an_arrow_column_of_another_kind_is_a_schema_error(tmp_path):
    with pytest.raises(SchemaError, match=r"field 'x': an Arrow struct<a: int64> column cannot be stored as int64"):
        with Writer(tmp_path / "w", "x:int64") as w:
            w.write_batch(pa.table({"x": pa.array([{"a": 1}])}))
    schema = Schema.parse("d:date32")  # a day past Python's dates is named without failing itself
    _, bad = convert_columns(schema, {"d": pa.array(["2024-01-01", "not a date"])}, 2)
    assert list(bad) == [1] and "'not a date'" in bad[1]


@pytest.mark.parametrize("spec_or_type, value, reason", [
    (pa.struct([("a", pa.int64())]), {"a": 1.5}, "1.5 is not an integer"),
    (pa.struct([("a", pa.int64())]), {"a": 1, "b": 2}, "keys ['b'] are not fields"),
    (pa.list_(pa.int16()), [1, 2.5], "2.5 is not an integer"),
    (pa.map_(pa.string(), pa.int8()), {"k": 0.5}, "0.5 is not an integer"),
    ("timestamp[s]", datetime.datetime(2024, 1, 1, 0, 0, 0, 500), "finer than timestamp[s]"),
    ("timestamp[ms]", 1.5, "1.5 is not a whole number"),
    ("time32[ms]", datetime.time(1, 2, 3, 4), "finer than time32[ms]"),
    ("duration[s]", datetime.timedelta(milliseconds=1), "finer than duration[s]"),
    ("date32", datetime.datetime(2024, 1, 1, 12), "has a time of day"),
])
def test_python_values_pyarrow_would_truncate_are_bad_rows(spec_or_type, value, reason):
    """pa.array(values, type) silently truncates these; storing them would be a silent wrong answer."""
    from fastload.format.schema import Field, encode_arrow_type

    if isinstance(spec_or_type, str):
        field = Field.parse("x", spec_or_type)
    else:
        field = Field("x", "arrow", arrow_type=encode_arrow_type(spec_or_type))
    _, bad = convert_columns(Schema((field,)), {"x": [None, value]}, 2)
    assert list(bad) == [1] and reason in bad[1], bad


def test_an_arrow_struct_with_a_key_the_field_lacks_is_a_bad_row():
    """Arrow's struct cast drops the fields the target lacks; the rows that hold one are bad."""
    from fastload.format.schema import Field, encode_arrow_type

    field = Field("x", "arrow", arrow_type=encode_arrow_type(pa.struct([("a", pa.int64())])))
    col = pa.array([{"a": 1, "b": None}, {"a": 2, "b": 5}, None])  # struct<a, b>
    conv, bad = convert_columns(Schema((field,)), {"x": col}, 3)
    assert list(bad) == [1] and "keys ['b'] are not fields" in bad[1]


def test_nested_values_are_stored_compactly():
    """pyarrow writes a row slice's whole child buffers when the row holds an empty list; each
    stored value must still be about the size of the row, not of its chunk."""
    from fastload.format.schema import Field, encode_arrow_type

    n = 20_000
    col = pa.array([{"a": i, "tags": ["x" * 20] * (i % 3)} for i in range(n)])
    field = Field("x", "arrow", arrow_type=encode_arrow_type(col.type))
    conv, bad = convert_columns(Schema((field,)), {"x": col.slice(1000, 5000)}, 5000)
    assert not bad and conv["x"].lengths().max() < 1024
