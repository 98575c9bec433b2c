"""The same values give the same schema and read back the same, whatever source carries them:
Python dicts, a torch Dataset, a pyarrow Table, a DataFrame, Parquet, Feather, JSON Lines, CSV.

The reference for the values is pyarrow's: ``pa.Table.from_pylist(rows).to_pylist()``.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastload
from fastload import SchemaError, SourceError

from .values import Rows, assert_rows

# names a user's table may have: spaces, punctuation, quotes, brackets, leading digits, any script
NAMES = st.text(st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=8)
INTS = st.integers(-2**63, 2**63 - 1)
FLOATS = st.floats(allow_nan=False, allow_infinity=False, width=64)
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=6)

# column kinds: (values, may hold None, CSV can carry it, pandas keeps its type)
KINDS = {
    "int": (INTS, True, True, False),  # pandas makes float64 of ints with a None
    "int_full": (INTS, False, True, True),
    "float": (FLOATS, True, True, True),
    "bool": (st.booleans(), False, True, True),
    "str": (TEXT.filter(lambda s: s.strip() and s == s.strip()), True, False, True),
    "ints": (st.lists(INTS, max_size=4), True, False, True),
    "floats": (st.lists(FLOATS, max_size=4), True, False, True),
    "texts": (st.lists(TEXT, max_size=3), True, False, True),
    "ragged": (st.lists(st.lists(st.integers(-5, 5), max_size=3), max_size=3), True, False, True),
    "struct": (st.fixed_dictionaries({"a": st.integers(-9, 9) | st.none(), "b": TEXT}), True, False, True),
}


@st.composite
def tables(draw):
    """Rows of dicts with 1-4 columns of random kinds and names, nulls at random."""
    kinds = draw(st.lists(st.sampled_from(sorted(KINDS)), min_size=1, max_size=4))
    names = draw(st.lists(NAMES, min_size=len(kinds), max_size=len(kinds), unique=True)
                 .filter(lambda ns: not any(n + ".valid" in ns for n in ns)))
    n = draw(st.integers(1, 6))
    columns = {}
    for name, kind in zip(names, kinds):
        values, nullable, _, _ = KINDS[kind]
        cell = st.one_of(st.none(), values) if nullable else values
        col = draw(st.lists(cell, min_size=n, max_size=n))
        if all(v is None for v in col):
            col[0] = draw(values)  # an all-null column is a null field: tested on its own below
        columns[name] = col
    rows = [{name: columns[name][i] for name in names} for i in range(n)]
    return rows, dict(zip(names, kinds))


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(list(rows[0]))
        for r in rows:
            w.writerow(["" if v is None else repr(v) if isinstance(v, float) else v for v in r.values()])


def packed(source, out):
    fastload.pack(source, out, progress=False)
    return fastload.open(out)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(tables())
def test_same_schema_and_values_from_every_source(tmp_path_factory, case):
    rows, kinds = case
    tmp = tmp_path_factory.mktemp("src")
    table = pa.Table.from_pylist(rows)
    want = table.to_pylist()
    reference = packed(table, tmp / "table")
    assert_rows(reference, want, "table")
    # variable-length numeric lists are numeric arrays, never json
    for name, kind in kinds.items():
        if kind in ("ints", "floats") and any(r[name] for r in rows):  # [] alone has no element type
            assert reference.schema[name].kind == "array", reference.schema[name]

    sources = {"dicts": rows, "torch": Rows(rows)}
    pq.write_table(table, tmp / "t.parquet")
    feather.write_feather(table, tmp / "t.feather")
    sources["parquet"] = tmp / "t.parquet"
    sources["feather"] = tmp / "t.feather"
    write_jsonl(tmp / "t.jsonl", rows)
    sources["jsonl"] = tmp / "t.jsonl"
    if all(KINDS[k][2] for k in kinds.values()):
        write_csv(tmp / "t.csv", rows)
        sources["csv"] = tmp / "t.csv"
    if all(KINDS[k][3] for k in kinds.values()):
        sources["dataframe"] = pd.DataFrame(rows)
    for label, source in sources.items():
        ds = packed(source, tmp / label)
        assert ds.schema == reference.schema, f"{label}: {ds.schema.describe()} != {reference.schema.describe()}"
        assert_rows(ds, want, label)


def test_a_dataframe_reads_back_as_pyarrow_converts_it(tmp_path):
    df = pd.DataFrame({"sepal length (cm)": [5.1, np.nan, 4.7], "n": [1, None, 3], "s": ["a", None, "c"],
                       "when": pd.to_datetime(["2024-01-01", None, "2024-03-01"]).tz_localize("Europe/Paris"),
                       "cat": pd.Categorical(["x", "y", None])})
    ds = packed(df, tmp_path / "df")
    table = pa.Table.from_pandas(df, preserve_index=False)
    assert_rows(ds, table.to_pylist(), "dataframe")
    unit = table.schema.field("when").type.unit  # pandas 3 parses to us, pandas 2 to ns
    assert ds.schema.describe() == ('"sepal length (cm)": float64, n: float64, s: str, '
                                    f"when: timestamp[{unit}, tz=Europe/Paris], cat: str")
    assert [f.nullable for f in ds.schema] == [True] * 5


@pytest.mark.parametrize("make", [list, Rows], ids=["dicts", "torch"])
def test_python_inference(tmp_path, make):
    import datetime
    import decimal

    rows = [{"tokens": [1, 2, 3], "big": 2**64 - 1, "nothing": None, "when": datetime.date(2024, 5, 1),
             "price": decimal.Decimal("1.50"), "meta": {"k": 1}, "pairs": [[1], [2, 3]]},
            {"tokens": [], "big": 0, "nothing": None, "when": None,
             "price": decimal.Decimal("-20.25"), "meta": {"k": None}, "pairs": []}]
    ds = packed(make(rows), tmp_path / "p")
    assert ds.schema.describe() == ("tokens: int64[-1], big: uint64, nothing: null, when: date32[day], "
                                    "price: decimal128(4, 2), meta: arrow<struct<k: int64>>, "
                                    "pairs: arrow<list<item: list<item: int64>>>")
    assert_rows(ds, pa.Table.from_pylist(rows, schema=pa.schema([
        ("tokens", pa.list_(pa.int64())), ("big", pa.uint64()), ("nothing", pa.null()), ("when", pa.date32()),
        ("price", pa.decimal128(4, 2)), ("meta", pa.struct([("k", pa.int64())])),
        ("pairs", pa.list_(pa.list_(pa.int64())))])).to_pylist(), "python")


@pytest.mark.parametrize("make", [list, Rows], ids=["dicts", "torch"])
def test_mixed_types_in_python_rows_are_bad_rows_naming_the_field(tmp_path, make):
    """Python values: the column takes its most common kind (the first on a tie), and the odd row
    is a bad row naming its record and field, skippable (fastload/pack/inference.py)."""
    rows = [{"ok": 1, "mixed up": 1}, {"ok": 2, "mixed up": "two"}, {"ok": 3, "mixed up": 3}]
    with pytest.raises(SourceError, match=r"(record|index) 1: field 'mixed up': expected a number, got str"):
        packed(make(rows), tmp_path / "m")
    fastload.pack(make(rows), tmp_path / "skip", progress=False, on_error="skip", max_skipped=0.5)
    assert [dict(r) for r in fastload.open(tmp_path / "skip")] == [rows[0], rows[2]]


def test_mixed_types_in_a_dataframe_name_the_field(tmp_path):
    """pandas' object column has no Arrow type: a SchemaError naming the field, not pyarrow's own."""
    rows = [{"ok": 1, "mixed up": 1}, {"ok": 2, "mixed up": "two"}]
    with pytest.raises(SchemaError, match="'mixed up'"):
        packed(pd.DataFrame(rows), tmp_path / "m")


def test_tables_that_were_refused_now_pack(tmp_path):
    """The issue's cases: a ragged list of lists, a null list element, a map (back as pairs),
    uint64's maximum, an all-null column, dates and decimals, from a Table."""
    import datetime
    import decimal

    table = pa.table({
        "ragged": pa.array([[[1, 2], [3]], [], [[4, 5, 6]]]),
        "holes": pa.array([[1, None, 3], None, [4]]),
        "pairs": pa.array([[("a", 1), ("b", 2)], [], None], pa.map_(pa.string(), pa.int64())),
        "big": pa.array([2**64 - 1, 0, 1], pa.uint64()),
        "nothing": pa.nulls(3),
        "day": pa.array([datetime.date(2024, 2, 29), None, datetime.date(1, 1, 1)]),
        "price": pa.array([decimal.Decimal("0.10"), decimal.Decimal("-99.99"), None], pa.decimal128(4, 2)),
    })
    ds = packed(table, tmp_path / "t")
    assert_rows(ds, table.to_pylist(), "table")
    assert ds[0]["pairs"] == [("a", 1), ("b", 2)] and ds[1]["holes"] is None and ds[0]["holes"] == [1, None, 3]
