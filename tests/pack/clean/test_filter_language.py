"""The filter language: a table of invalid expressions, each an error pointing at its column, and
text that Python would run, which is never run."""

from __future__ import annotations

import pytest

import fastload
from fastload.errors import FilterError
from fastload.pack.clean.filter_syntax import parse
from fastload.pack.clean.filters import bind_filter

# (filter, column of the error, a phrase of its message)
INVALID = [
    ("len(text) >", 12, "expected a value"),
    ("len(text) >= ", 14, "expected a value"),
    ("score > 'a'", 9, "cannot compare a number with a text"),
    ("len(score) > 1", 5, "len() takes a text, bytes or array"),
    ("text matches '('", 14, "not a valid regular expression"),
    ("text matches len(text)", 14, "'matches' takes a regular expression in quotes"),
    ("x > 1", 1, "no field 'x'"),
    ("txt == 'a'", 1, "did you mean 'text'"),
    ("1 < 2", 1, "compares two constants"),
    ("n == 1 == 2", 8, "comparisons do not chain"),
    ("score & 1", 7, "'and'/'or'/'not'"),
    ("flag < true", 1, "take == or !="),
    ("len(text)", 1, "must be a condition"),
    ("lang in ['en', 1]", 16, "the list holds a number"),
    ("lang in 'en'", 9, "expected '['"),
    ("lang in ['en'", 14, "expected ']'"),
    ("text = 'a", 8, "not closed"),
    ("text = 'a\\q'", 10, "unknown escape"),
    ("(score > 1", 11, "expected ')'"),
    ("score > 1)", 10, "unexpected ')'"),
    ("foo(text) > 1", 1, "unknown function 'foo'"),
    ("score is empty", 10, "expected 'null'"),
    ("text == null", 9, "write 'FIELD is null'"),
    ("score > 1 and", 14, "expected a value"),
    ("and score > 1", 1, "keyword 'and'"),
    ("not len(text)", 5, "'not' takes a condition"),
    ("score > 1 or n", 14, "'or' takes a condition"),
    ("tokens == 3", 1, "arrays cannot be compared"),
    ("len(tokens) > 2 and tokens > 1", 21, "arrays cannot be compared"),
    ("flag == 1", 9, "cannot compare a true/false value with a number"),
    ("`text > 1", 1, "not closed"),
    ("`` > 1", 1, "empty field name"),
    ("score > 1.5.2", 12, "unexpected"),
    ("score > 12abc", 11, "after the number"),
    ("lower(n) == 'a'", 7, "lower() takes a text value"),
    ("n matches 'a'", 1, "'matches' takes a text value"),
    ("true", 1, "reads no field"),
    ("", 0, "empty"),
]


@pytest.mark.parametrize("expr, col, phrase", INVALID)
def test_an_invalid_filter_is_an_error_pointing_at_its_column(expr, col, phrase):
    schema = fastload.Schema.parse("text:str,lang:str,score:float64,n:int32,flag:bool,tokens:int32[-1],sub-score:int64")
    with pytest.raises(FilterError) as info:
        bind_filter(expr, schema)
    message = str(info.value)
    assert phrase in message
    if col:
        assert f"at column {col}" in message
        caret_line = message.splitlines()[-1]
        assert caret_line.index("^") == col + 1  # under the column, after the two-space indent


def test_a_filter_is_never_evaluated_as_python(tmp_path):
    """Text that Python would run is a syntax error of the filter language."""
    for expr in ("__import__('os').system('true')", "len(text) > 0 or exec('1')", "text.upper() == 'A'",
                 "[x for x in text]", "lambda: 1"):
        with pytest.raises(FilterError):
            parse(expr) if "text.upper" not in expr else bind_filter(expr, fastload.Schema.parse("text:str"))
