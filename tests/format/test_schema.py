"""Field and Schema: validation messages, the short text form, and the JSON form."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings

from fastload import FastloadError, Field, Schema, SchemaError
from fastload.format.schema import (IMAGE_FORMATS, KINDS, NUMERIC_DTYPES, format_name, parse_overrides,
                                   parse_renames)

from .strategies import fields


# -- validation --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(name="", kind="str"), "invalid field name ''"),
        (dict(name=5, kind="str"), "invalid field name 5"),
        (dict(name="x" * 1025, kind="str"), "1025 bytes in UTF-8, at most 1024"),
        (dict(name="lone \ud800", kind="str"), "not valid Unicode"),
        (dict(name="x", kind="scalar", dtype="int32", logical="timestamp[ms]"), "is stored as int64"),
        (dict(name="x", kind="scalar", dtype="int64", logical="timestamp[fortnight]"), "unknown logical type"),
        (dict(name="x", kind="null", nullable="yes"), "nullable must be true or false"),
        (dict(name="x", kind="arrow"), "arrow_type must be a base64 Arrow schema"),
        (dict(name="x", kind="arrow", arrow_type="bm90IGFycm93"), "arrow_type is not an Arrow schema"),
        (dict(name="x", kind="str", arrow_type="bm90IGFycm93"), "only arrow fields have an arrow_type"),
        (dict(name="x", kind="tensor"), f"unknown kind 'tensor'; valid: {KINDS}"),
        (dict(name="x", kind="scalar", dtype="complex64"), f"is not one of {NUMERIC_DTYPES}"),
        (dict(name="x", kind="scalar"), "dtype None is not one of"),
        (dict(name="x", kind="array", dtype="int8[3]", shape=(3,)), "dtype 'int8[3]' is not one of"),
        (dict(name="x", kind="str", dtype="int8"), "kind 'str' takes no dtype"),
        (dict(name="x", kind="array", dtype="int8"), "an array needs a shape"),
        (dict(name="x", kind="array", dtype="int8", shape=(3, 0)), "must hold positive sizes or -1"),
        (dict(name="x", kind="array", dtype="int8", shape=(-2,)), "must hold positive sizes or -1"),
        (dict(name="x", kind="scalar", dtype="int8", shape=(1,)), "only arrays have a shape"),
        (dict(name="x", kind="image", image_format="gif"), f"is not one of {IMAGE_FORMATS}"),
        (dict(name="x", kind="bytes", image_format="png"), "only images have an image_format"),
    ],
)
def test_field_validation_names_the_problem_and_the_choices(kwargs, message):
    with pytest.raises(SchemaError) as info:
        Field(**kwargs)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, FastloadError)


@pytest.mark.parametrize("name", ["sepal length (cm)", "od280/od315_of_diluted_wines", "größe", "2nd",
                                  "Sample Number", " padded ", 'a "quoted": [name], here', "日本語", "x" * 1024,
                                  "\x00\n\t", "a.valid"])
def test_any_non_empty_unicode_name_is_kept_exactly(name):
    f = Field(name, "scalar", dtype="int8")
    assert f.name == name
    assert Field.from_json(json.loads(json.dumps(f.to_json()))).name == name
    schema = Schema((f, Field("other", "str")))
    assert Schema.parse(schema_text(schema)) == schema


def schema_text(schema: Schema) -> str:
    return ",".join(f"{format_name(f.name)}:{f.spec}" for f in schema)


def test_schema_validation():
    with pytest.raises(SchemaError, match="at least one field"):
        Schema(())
    with pytest.raises(SchemaError, match=r"duplicate field names: \['a', 'b'\]"):
        Schema((Field("a", "str"), Field("b", "str"), Field("a", "json"), Field("b", "bytes"),
                 Field("c", "str")))
    # a batch carries the validity of "x" under "x.valid"
    with pytest.raises(SchemaError, match=r"\['x.valid'\] clash with the validity of fields \['x'\]"):
        Schema.parse("x:float32,x.valid:bool")
    assert Schema.parse("y:float32,x.valid:bool").names == ["y", "x.valid"]


def test_field_layout_properties():
    tokens = Field("tokens", "array", dtype="uint16", shape=(2049,))
    assert tokens.is_fixed and tokens.itemsize == 4098
    assert tokens.np_dtype == np.dtype("<u2")
    assert Field("m", "array", dtype="float64", shape=(2, 3)).itemsize == 48
    assert Field("b", "scalar", dtype="bool").itemsize == 1
    var = Field("v", "array", dtype="float32", shape=(-1, 80))
    assert not var.is_fixed and not Field("s", "str").is_fixed
    with pytest.raises(SchemaError, match="variable-size"):
        var.itemsize
    with pytest.raises(SchemaError, match="has no numeric dtype"):
        Field("s", "str").np_dtype
    assert Field("i", "image").image_format == "any"
    schema = Schema((tokens, var, Field("id", "scalar", dtype="int64")))
    assert schema.fixed_row_bytes == 4098 + 8
    assert schema.names == ["tokens", "v", "id"] and len(schema) == 3
    assert "v" in schema and "w" not in schema and schema.index("id") == 2
    assert schema["v"] is var and list(schema) == list(schema.fields)
    with pytest.raises(KeyError):
        schema["w"]


# -- the short text form -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec, expected",
    [
        ("int64", Field("f", "scalar", dtype="int64")),
        ("bool", Field("f", "scalar", dtype="bool")),
        ("UINT16[2049]", Field("f", "array", dtype="uint16", shape=(2049,))),
        (" float32[ -1 , 80 ] ", Field("f", "array", dtype="float32", shape=(-1, 80))),
        ("int8[2,3,4]", Field("f", "array", dtype="int8", shape=(2, 3, 4))),
        ("str", Field("f", "str")),
        ("bytes", Field("f", "bytes")),
        ("json", Field("f", "json")),
        ("image", Field("f", "image")),
        ("image[jpeg]", Field("f", "image", image_format="jpeg")),
        ("image[PNG]", Field("f", "image", image_format="png")),
        ("null", Field("f", "null")),
        ("date32", Field("f", "scalar", dtype="int32", logical="date32[day]")),
        ("date64[ms]", Field("f", "scalar", dtype="int64", logical="date64[ms]")),
        ("time32[s]", Field("f", "scalar", dtype="int32", logical="time32[s]")),
        ("time64[ns]", Field("f", "scalar", dtype="int64", logical="time64[ns]")),
        ("duration[ms]", Field("f", "scalar", dtype="int64", logical="duration[ms]")),
        ("timestamp[us]", Field("f", "scalar", dtype="int64", logical="timestamp[us]")),
        ("timestamp[ns,tz=America/New_York]",
         Field("f", "scalar", dtype="int64", logical="timestamp[ns, tz=America/New_York]")),
        ("decimal128(10,2)", Field("f", "array", dtype="uint8", shape=(16,), logical="decimal128(10, 2)")),
        ("decimal256(60, -3)", Field("f", "array", dtype="uint8", shape=(32,), logical="decimal256(60, -3)")),
    ],
)
def test_field_parse(spec, expected):
    assert Field.parse("f", spec) == expected


@pytest.mark.parametrize(
    "spec, message",
    [
        ("str[3]", "str takes no [shape]"),
        ("complex64", "unknown type 'complex64'; valid:"),
        ("int8[a]", "bad shape in 'int8[a]'"),
        ("int8[", "cannot parse type 'int8['"),
        ("int8[0]", "must hold positive sizes or -1"),
        ("int8[]", "an array needs a shape"),
        ("image[gif]", "is not one of ('jpeg', 'png', 'any')"),
        ("", "cannot parse type ''"),
        ("null[2]", "null takes no [shape]"),
        ("decimal128(39, 2)", "precision must be 1..38"),
        ("timestamp[ms, tz=]", "invalid time zone"),
        ("arrow", "unknown type 'arrow'"),
    ],
)
def test_field_parse_errors(spec, message):
    with pytest.raises(SchemaError) as info:
        Field.parse("f", spec)
    assert message in str(info.value) and "'f'" in str(info.value)


def test_unknown_type_lists_every_valid_type():
    with pytest.raises(SchemaError) as info:
        Field.parse("f", "float128")
    for name in NUMERIC_DTYPES + ("str", "bytes", "json", "image"):
        assert f"'{name}'" in str(info.value)


@settings(max_examples=200, deadline=None)
@given(fields())
def test_spec_and_json_round_trip(field):
    assert Field.parse(field.name, field.spec) == field
    assert Field.from_json(json.loads(json.dumps(field.to_json()))) == field


def test_schema_parse_and_json_round_trip():
    text = "tokens:uint16[2049], mask:bool[-1], emb:float32[-1,3],caption:str,img:image[jpeg],meta:json,"
    schema = Schema.parse(text)
    assert schema.describe() == ("tokens: uint16[2049], mask: bool[-1], emb: float32[-1,3], "
                                 "caption: str, img: image[jpeg], meta: json")
    assert Schema.parse(",".join(f"{f.name}:{f.spec}" for f in schema)) == schema
    assert Schema.from_json(json.loads(json.dumps(schema.to_json()))) == schema
    assert schema.to_json()[2] == {"name": "emb", "kind": "array", "dtype": "float32", "shape": [-1, 3]}


def test_parse_overrides():
    assert parse_overrides("a:int64, b:uint16[-1,3] ,c=str,") == {
        "a": "int64", "b": "uint16[-1,3]", "c": "str"}
    text = '"Body Mass (g)":float32, t:timestamp[ms, tz=UTC],"a\\"b:c,d":decimal128(5, 2), größe = str'
    assert parse_overrides(text) == {"Body Mass (g)": "float32", "t": "timestamp[ms, tz=UTC]",
                                     'a"b:c,d': "decimal128(5, 2)", "größe": "str"}
    with pytest.raises(SchemaError, match="must be quoted"):
        parse_overrides("Body Mass (g):float32")
    with pytest.raises(SchemaError, match="not closed"):
        parse_overrides('"open:int8')
    with pytest.raises(SchemaError, match="names field 'a' twice"):
        parse_overrides("a:int8,a:str")
    assert parse_overrides({"a": "str"}) == {"a": "str"}
    assert parse_overrides(None) == {} and parse_overrides("") == {}
    with pytest.raises(SchemaError, match="'b' must be name:type"):
        parse_overrides("a:int8,b")


def test_with_overrides():
    schema = Schema.parse("tokens:int64[-1],text:str")
    narrowed = schema.with_overrides({"tokens": "uint16[2049]"})
    assert narrowed["tokens"] == Field("tokens", "array", dtype="uint16", shape=(2049,))
    assert narrowed["text"] == schema["text"]
    with pytest.raises(SchemaError) as info:
        schema.with_overrides({"token": "uint16", "zz": "str"})
    assert "['token', 'zz']" in str(info.value) and "['tokens', 'text']" in str(info.value)


def test_renamed():
    schema = Schema.parse('"sepal length (cm)":float64,species:str')
    tidy = schema.renamed({"sepal length (cm)": "sepal_length"})
    assert tidy.names == ["sepal_length", "species"] and tidy["sepal_length"].dtype == "float64"
    with pytest.raises(SchemaError, match=r"unknown fields \['nope'\]"):
        schema.renamed({"nope": "x"})
    with pytest.raises(SchemaError, match="duplicate field names"):
        schema.renamed({"species": "sepal length (cm)"})


def test_parse_renames():
    assert parse_renames(["a=b", ' "x=y (cm)" = tidy ', 'c:d="e f"', "g=h=i"]) == {
        "a": "b", "x=y (cm)": "tidy", "c:d": "e f", "g": "h=i"}
    assert parse_renames({"a": "b"}) == {"a": "b"} and parse_renames(None) == {}
    for bad in ("a", "=b", "a=", '"a"b'):
        with pytest.raises(SchemaError, match="--rename"):
            parse_renames([bad])


def test_nullable_is_a_dataset_fact_outside_the_header_form():
    schema = Schema.parse("a:int8,b:str").with_nullable(["b"])
    assert [f.nullable for f in schema] == [False, True]
    assert schema.to_json()[1] == {"name": "b", "kind": "str", "nullable": True}
    assert Schema.from_json(schema.to_json()) == schema
    assert schema.without_nullable() == Schema.parse("a:int8,b:str")
    assert not schema["b"].is_dense and Schema.parse("t:timestamp[ms]")["t"].is_dense
    assert not Schema.parse("d:decimal128(4, 1)")["d"].is_dense


def test_nested_field_keeps_its_arrow_type():
    import pyarrow as pa

    from fastload.format.schema import encode_arrow_type

    typ = pa.map_(pa.string(), pa.list_(pa.struct([("a", pa.timestamp("us", tz="UTC"))])))
    f = Field("m", "arrow", arrow_type=encode_arrow_type(typ))
    assert f.pa_type == typ and f.spec == f"arrow<{typ}>" and not f.is_fixed
    assert Field.from_json(json.loads(json.dumps(f.to_json()))) == f
    deep = pa.int8()
    for _ in range(70):
        deep = pa.list_(deep)
    with pytest.raises(SchemaError, match="nested deeper than 64"):
        Field("d", "arrow", arrow_type=encode_arrow_type(deep))


@pytest.mark.parametrize(
    "obj",
    [{"kind": "str"}, {"name": "a"}, {"name": "a", "kind": "array", "dtype": "int8", "shape": 3},
     {"name": "a", "kind": "scalar", "dtype": "int9"}, ["name", "a"],
     {"name": "a", "kind": "array", "dtype": "int8", "shape": [True]},
     {"name": "a", "kind": "scalar", "dtype": "int64", "logical": 5}],
)
def test_field_from_malformed_json(obj):
    with pytest.raises(SchemaError):
        Field.from_json(obj)
