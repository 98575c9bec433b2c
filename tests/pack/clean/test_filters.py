"""Filters in a pack: a table of valid expressions checked against the equivalent pandas query, and
the three forms a filter takes (text, pyarrow.compute.Expression, callable)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import fastload
from fastload.errors import FilterError

from .helpers import Nullable

pytestmark = pytest.mark.timeout(60)

WORDS = ["alpha", "beta", "Gamma", "delta", "", "a b", "ab", "été", "zeta", "Beta"]


def _frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    score = rng.random(n)
    return pd.DataFrame({
        "text": [" ".join(rng.choice(WORDS, rng.integers(0, 5))) for _ in range(n)],
        "lang": rng.choice(["en", "fr", "de", "EN"], n),
        "score": score,
        "n": rng.integers(-10, 10, n).astype(np.int32),
        "flag": rng.random(n) < 0.5,
        "tokens": [rng.integers(0, 100, rng.integers(0, 6)).astype(np.int32) for _ in range(n)],
        "sub-score": rng.integers(0, 3, n).astype(np.int64),
    })


# (fastload filter, equivalent pandas query, engine="python")
VALID = [
    ("len(text) > 10", "text.str.len() > 10"),
    ("len(text) == 0", "text.str.len() == 0"),
    ("score >= 0.5 and not flag", "score >= 0.5 and not flag"),
    ("not (score >= 0.5)", "not (score >= 0.5)"),
    ("lang in ['en', 'fr']", "lang in ['en', 'fr']"),
    ('lang not in ["en"]', "lang not in ['en']"),
    ("n in [1, 2, 3] or n in [-10]", "n in [1, 2, 3] or n in [-10]"),
    ("text matches '^a.*a$'", "text.str.contains('^a.*a$', regex=True)"),
    ("text matches 'é'", "text.str.contains('é', regex=True)"),
    ("lower(lang) == 'en'", "lang.str.lower() == 'en'"),
    ("upper(text) = text", "text.str.upper() == text"),
    ("(score < 0.2 or score > 0.8) and len(tokens) >= 3", "(score < 0.2 or score > 0.8) and tokens.str.len() >= 3"),
    ("flag", "flag"),
    ("flag == false", "flag == False"),
    ("flag != true and n > 0", "flag != True and n > 0"),
    ("text != lang", "text != lang"),
    ("-3 < n", "-3 < n"),
    ("n <= -3.5 or n >= 7", "n <= -3.5 or n >= 7"),
    ("text > 'm'", "text > 'm'"),
    ("score > 1e-1 and score < .75", "score > 1e-1 and score < .75"),
    ("`sub-score` > 0", "`sub-score` > 0"),
    ("sub-score == 2 or len(text) < 3 and n > 5", "`sub-score` == 2 or text.str.len() < 3 and n > 5"),
    ("not not flag or not flag and flag", "not (not flag) or (not flag) and flag"),
    ("`text` matches 'a\\\\sb'", "text.str.contains(r'a\\sb', regex=True)"),
]


@pytest.mark.parametrize("expr, query", VALID)
def test_a_filter_keeps_what_the_pandas_query_keeps(tmp_path, expr, query):
    df = _frame()
    expected = df.query(query, engine="python")
    report = fastload.pack(df, tmp_path / "ds", filter=expr, progress=False)
    ds = fastload.Dataset(tmp_path / "ds")
    got = [ds[i] for i in range(len(ds))]
    assert report.records == len(expected) == len(got)
    assert [r["text"] for r in got] == expected["text"].tolist()
    assert [r["n"] for r in got] == expected["n"].tolist()
    assert report.cleaning.rules[f"filter {expr}"].records == len(df) - len(expected)


def test_an_expression_and_a_callable_filter_keep_the_same_records_as_text(tmp_path):
    df = _frame()
    expected = df.query("text.str.len() > 10 and score > 0.3", engine="python")["text"].tolist()
    forms = ["len(text) > 10 and score > 0.3",
             (pc.utf8_length(pc.field("text")) > 10) & (pc.field("score") > 0.3),
             _long_and_high,
             ["len(text) > 10", pc.field("score") > 0.3]]
    for k, form in enumerate(forms):
        out = tmp_path / f"ds{k}"
        fastload.pack(df, out, filter=form, progress=False, workers=2)
        ds = fastload.Dataset(out)
        assert [ds[i]["text"] for i in range(len(ds))] == expected


def _long_and_high(table: pa.Table) -> pa.Array:
    return pc.and_(pc.greater(pc.utf8_length(table["text"]), 10), pc.greater(table["score"], 0.3))


def test_a_callable_must_return_one_boolean_per_record(tmp_path):
    df = _frame(50)
    for bad, phrase in ((lambda t: np.ones(3, bool), "returned 3 values"),
                        (lambda t: pc.utf8_length(t["text"]), "must return booleans"),
                        (lambda t: 1 / 0, "ZeroDivisionError")):
        with pytest.raises(FilterError, match=phrase):
            fastload.pack(df, tmp_path / "ds", filter=bad, progress=False, overwrite=True)


def test_a_lambda_filter_with_workers_is_refused_before_any_work(tmp_path):
    df = _frame(50)
    with pytest.raises(ValueError, match="module level"):
        fastload.pack(df, tmp_path / "ds", filter=lambda t: pc.greater(t["n"], 0), workers=2, progress=False)


def test_an_expression_naming_a_missing_field_is_a_filter_error(tmp_path):
    with pytest.raises(FilterError, match="nope"):
        fastload.pack(_frame(20), tmp_path / "ds", filter=pc.field("nope") > 1, progress=False)


def test_nulls_are_arrow_nulls_to_a_filter_and_drop_the_record_like_sql():
    from fastload.format.columns import VarColumn
    from fastload.pack.clean.filters import bind_filter
    from fastload.pack.clean.validate import invalid_converted_rows

    schema = fastload.Schema.parse("text:str,score:float64")
    conv = Nullable({"text": VarColumn.from_payloads([b"a", b"", b"", b"long text"]),
                      "score": np.array([0.5, 0.0, 2.0, 0.0])},
                     {"text": np.array([True, False, True, True]), "score": np.array([True, True, True, False])})
    keep = {expr: bind_filter(expr, schema).keep(schema, conv, 4, "test").tolist() for expr in (
        "text is null", "text is not null", "score > 0.1", "not (score > 0.1)", "len(text) < 5 or score > 1")}
    assert keep == {"text is null": [False, True, False, False],
                    "text is not null": [True, False, True, True],
                    "score > 0.1": [True, False, True, False],          # null compares to null: dropped
                    "not (score > 0.1)": [False, True, False, False],
                    "len(text) < 5 or score > 1": [True, False, True, False]}  # null or false is null
    # a null text is a missing value, not an empty one
    assert invalid_converted_rows("empty", schema, conv, 4).tolist() == [False, False, True, False]
