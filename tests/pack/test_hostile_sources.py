"""Regressions for crafted pack inputs (issue 10's r5): each runs the pack in a child process where
a crash could happen, so a segfault fails the test instead of killing pytest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastload
from fastload._kernels.text_scan import (
    CSV_FIELD_START, CSV_QUOTE_IN_QUOTED, CSV_QUOTED, CSV_UNQUOTED, JSON_CLASSES, csv_classes, csv_quote_state,
    json_too_deep,
)
from fastload.errors import SchemaError, SkippedRowsError, SourceError

pytestmark = pytest.mark.timeout(120)


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastload._cli", *map(str, args), "--no-progress"],
                          capture_output=True, text=True, timeout=100)


def rows_of(out: Path) -> list[dict]:
    ds = fastload.open(out)
    return [ds[i] for i in range(len(ds))]


# -- (b) deep nesting never reaches pyarrow ----------------------------------------------------
def test_deeply_nested_line_is_a_bad_row_not_a_crash(tmp_path):
    path = tmp_path / "deep.jsonl"
    deep = '{"a": 2, "j": ' + "[" * 100_000 + "]" * 100_000 + "}"
    path.write_text('{"a": 1, "j": [1]}\n' + deep + '\n{"a": 3, "j": [2, 5]}\n')
    proc = cli("pack", path, tmp_path / "raise")
    assert proc.returncode == 4, proc.stderr  # not -11 (SIGSEGV)
    assert f"{path} line 2: nested more than 1000 levels deep" in proc.stderr
    proc = cli("pack", path, tmp_path / "skip", "--on-error", "skip", "--max-skipped", "0.5")
    assert proc.returncode == 0, proc.stderr
    rows = rows_of(tmp_path / "skip")
    assert [r["a"] for r in rows] == [1, 3]
    assert [r["j"].tolist() for r in rows] == [[1], [2, 5]]  # lists of ints: a numeric array field


def test_depth_scan_counts_only_structure():
    def deep(text: str, limit: int = 3) -> int:
        """Offset of the bracket that opens level limit + 1, or -1."""
        return json_too_deep(np.frombuffer(text.encode(), np.uint8), JSON_CLASSES, limit)

    assert deep('{"a": [[1]]}\n{"b": [[2]]}') == -1  # depth 3, twice
    assert deep('{"a": [[[1]]]}') == 8
    assert deep('{"s": "[[[[[[\\"[[[["}') == -1  # brackets in strings, an escaped quote
    assert deep('{"a":\n[\n[\n[1]]]}') == 10  # a value across lines is one value to pyarrow
    # closing brackets beyond zero cannot hide what follows; an unclosed string ends at the newline
    assert deep(']]]]]]\n[[[[') == 10
    assert deep('{"s": "open\n[[[[') == 14


def _csv_state_byte_by_byte(text: bytes, state: int = CSV_FIELD_START) -> int:
    """pyarrow's quoting rules one byte at a time (the reference for the quote-only kernel)."""
    for c in text:
        sep = c in b",\r\n"
        if state == CSV_QUOTED:
            state = CSV_QUOTE_IN_QUOTED if c == 34 else CSV_QUOTED
        elif state == CSV_QUOTE_IN_QUOTED:
            state = CSV_QUOTED if c == 34 else CSV_FIELD_START if sep else CSV_UNQUOTED
        elif sep:
            state = CSV_FIELD_START
        elif state == CSV_FIELD_START and c == 34:
            state = CSV_QUOTED
        else:
            state = CSV_UNQUOTED
    return state


def _csv_scan(data: bytes, state: int = CSV_FIELD_START) -> tuple[int, int]:
    buf = np.frombuffer(data, np.uint8)
    return csv_quote_state(buf, np.flatnonzero(buf == 34), csv_classes(b","), state)


def test_csv_quote_scan_follows_pyarrow():
    assert _csv_scan(b'a,"b\nc"\n')[0] != CSV_QUOTED
    assert _csv_scan(b'a,5" tall\nb,"x""y"\n')[0] != CSV_QUOTED  # a mid-field quote is literal; "" too
    state, opened = _csv_scan(b'id,s\n1,a\n3,"open\n4,d\n')
    assert state == CSV_QUOTED and opened == len(b"id,s\n1,a\n3,")
    # against the byte-by-byte rules, on random text cut into random buffers
    rng = np.random.default_rng(0)
    for _ in range(3000):
        text = bytes(rng.choice(list(b'ab,"\n\r'), size=int(rng.integers(0, 24))))
        cuts = sorted(rng.integers(0, len(text) + 1, size=int(rng.integers(0, 3))))
        state = CSV_FIELD_START
        for a, b in zip([0, *cuts], [*cuts, len(text)]):
            state, _ = _csv_scan(text[a:b], state)
        assert state == _csv_state_byte_by_byte(text), text


# -- (c) one extra key -----------------------------------------------------------------------
def test_a_key_outside_the_schema_makes_only_its_row_bad(tmp_path):
    from fastload.pack.sources.jsonl import JsonlSource

    path = tmp_path / "late.jsonl"
    path.write_text("".join(json.dumps({"id": i, **({"extra": 1} if i == 150 else {})}) + "\n"
                            for i in range(200)))
    src = JsonlSource(path, segment_size=1000)  # the schema is inferred from the first segment only
    with pytest.raises(SourceError, match=r"late\.jsonl line 151: unexpected field 'extra'"):
        fastload.pack(src, tmp_path / "raise", progress=False)
    report = fastload.pack(JsonlSource(path, segment_size=1000), tmp_path / "skip", progress=False,
                           on_error="skip", max_skipped=0.01)
    assert report.skipped == 1
    assert [r["id"] for r in rows_of(tmp_path / "skip")] == [i for i in range(200) if i != 150]


def test_r5c_extra_key_in_the_sample_extends_the_schema(tmp_path):
    """Within the rows the schema is inferred from, keys are the union (as pyarrow and pandas
    read JSON Lines): the extra key is a nullable field, and no row is bad."""
    path = tmp_path / "extra.jsonl"
    path.write_text("".join(json.dumps({"id": i, **({"extra": 1} if i == 50 else {})}) + "\n"
                            for i in range(100)))
    report = fastload.pack(path, tmp_path / "out", progress=False)
    assert report.skipped == 0
    assert [r.get("extra") for r in rows_of(tmp_path / "out")] == [1 if i == 50 else None for i in range(100)]


# -- (d) mixed types ---------------------------------------------------------------------------
def test_mixed_types_name_file_and_line_and_are_skippable(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps({"id": "x" if i == 60 else i}) + "\n" for i in range(100)))
    with pytest.raises(SourceError, match=r"mixed\.jsonl line 61: field 'id'"):
        fastload.pack(path, tmp_path / "raise", progress=False)
    report = fastload.pack(path, tmp_path / "skip", progress=False, on_error="skip", max_skipped=0.05)
    assert report.skipped == 1
    assert [r["id"] for r in rows_of(tmp_path / "skip")] == [i for i in range(100) if i != 60]
    # the odd value first: the most common kind still decides
    path.write_text("".join(json.dumps({"id": "x" if i == 0 else i}) + "\n" for i in range(100)))
    with pytest.raises(SourceError, match=r"mixed\.jsonl line 1: field 'id'"):
        fastload.pack(path, tmp_path / "raise2", progress=False)


# -- (e) unterminated quote --------------------------------------------------------------------
def test_unterminated_csv_quote_names_the_line(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text('id,s\n1,a\n2,b\n3,"open\n4,d\n5,e\n')
    proc = cli("pack", path, tmp_path / "raise")
    assert proc.returncode == 4
    assert "q.csv line 4: the quoted value opened on line 4 is never closed" in proc.stderr
    report = fastload.pack(path, tmp_path / "skip", progress=False, on_error="skip", max_skipped=0.5)
    assert report.skipped == 1 and [r["s"] for r in rows_of(tmp_path / "skip")] == ["a", "b"]
    # a multi-line value that is closed is fine, and so is a quote in the middle of a field
    path.write_text('id,s\n1,"two\nlines"\n2,5" tall\n')
    fastload.pack(path, tmp_path / "ok", progress=False)
    assert [r["s"] for r in rows_of(tmp_path / "ok")] == ["two\nlines", '5" tall']
    # the last record spanning lines is checked, whether its quote closes or not
    path.write_text('id,s\n1,"a ""b""\nc"\n')
    fastload.pack(path, tmp_path / "ok2", progress=False)
    assert [r["s"] for r in rows_of(tmp_path / "ok2")] == ['a "b"\nc']
    path.write_text('id,s\n1,a\n2,"e\n')
    with pytest.raises(SourceError, match=r"q\.csv line 3: the quoted value opened on line 3"):
        fastload.pack(path, tmp_path / "last", progress=False)


def test_unterminated_quote_with_the_wrong_field_count(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text('a,b,c\n1,2,3\n4,"x,6\n7,8,9\n')
    with pytest.raises(SourceError, match=r"q\.csv line 3: the quoted value opened on line 3 .*Expected 3 columns, got 2"):
        fastload.pack(path, tmp_path / "out", progress=False)


# -- (f) big integers ----------------------------------------------------------------------------
def test_integers_beyond_int64_do_not_round_the_column(tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_text('{"id": 9007199254740993}\n{"id": 18446744073709551617}\n{"id": 3}\n')
    with pytest.raises(SourceError, match=r"big\.jsonl line 2: field 'id'"):
        fastload.pack(path, tmp_path / "raise", progress=False)
    fastload.pack(path, tmp_path / "skip", progress=False, on_error="skip", max_skipped=0.5)
    ds = fastload.open(tmp_path / "skip")
    assert ds.schema["id"].spec == "int64"
    assert [r["id"] for r in rows_of(tmp_path / "skip")] == [9007199254740993, 3]
    # a genuine float column stays on the fast path and keeps its values
    path.write_text('{"x": 1.5}\n{"x": 1e300}\n')
    fastload.pack(path, tmp_path / "floats", progress=False)
    assert [r["x"] for r in rows_of(tmp_path / "floats")] == [1.5, 1e300]


# -- skipping everything, or too much ------------------------------------------------------------
def test_skipping_every_row_or_more_than_max_skipped_is_an_error(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text("not json\n" * 5)
    with pytest.raises(SkippedRowsError, match=r"every row \(5\) was skipped.*bad\.jsonl line 1"):
        fastload.pack(path, tmp_path / "a", progress=False, on_error="skip")
    path.write_text("".join(json.dumps({"v": i}) + "\n" if i % 4 else "oops\n" for i in range(40)))
    with pytest.raises(SkippedRowsError, match=r"10 of 40 rows \(25\.0%\) were skipped, more than max_skipped=0\.1"):
        fastload.pack(path, tmp_path / "b", progress=False, on_error="skip", max_skipped=0.1)
    with pytest.warns(fastload.SkippedRowsWarning, match="25.0%"):
        report = fastload.pack(path, tmp_path / "c", progress=False, on_error="skip")
    assert "WARNING" in str(report) and report.records == 30
    report = fastload.pack(path, tmp_path / "d", progress=False, on_error="skip", max_skipped=0.25)
    assert "WARNING" not in str(report)
    # with a schema given, every row skipped is still an error
    (tmp_path / "all_bad.jsonl").write_text('{"v": "x"}\n' * 4)
    with pytest.raises(SkippedRowsError, match=r"every row \(4\) was skipped"):
        fastload.pack(tmp_path / "all_bad.jsonl", tmp_path / "e", progress=False, on_error="skip",
                      schema=fastload.Schema.parse("v:int64"))
    proc = cli("pack", path, tmp_path / "f", "--on-error", "skip", "--max-skipped", "0.1")
    assert proc.returncode == 9 and "Traceback" not in proc.stderr


def test_skipped_count_survives_a_resume(tmp_path, monkeypatch):
    from fastload.pack import driver
    from fastload.pack.sources.jsonl import JsonlSource

    path = tmp_path / "d.jsonl"
    path.write_text("".join((json.dumps({"v": i, "s": "x" * 50}) if i % 10 else "oops") + "\n"
                            for i in range(400)))
    calls = {"n": 0}
    real = driver._check_skipped

    def interrupt_at_the_end(report, max_skipped):
        calls["n"] += 1
        raise KeyboardInterrupt

    monkeypatch.setattr(driver, "_check_skipped", interrupt_at_the_end)
    options = dict(progress=False, on_error="skip", shard_size="2KB", block_size="512B")
    with pytest.raises(KeyboardInterrupt):
        fastload.pack(JsonlSource(path, segment_size=2000), tmp_path / "out", **options)
    monkeypatch.setattr(driver, "_check_skipped", real)
    with pytest.raises(SkippedRowsError, match=r"40 of 400 rows"):
        fastload.pack(JsonlSource(path, segment_size=2000), tmp_path / "out", max_skipped=0.05, **options)
    report = fastload.pack(JsonlSource(path, segment_size=2000), tmp_path / "out", max_skipped=0.1, **options)
    assert report.resumed_shards > 0 and report.skipped == 40 and report.records == 360


def test_a_schema_that_fits_no_row_is_a_schema_error(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"name": f"n{i}"}) + "\n" for i in range(20)))
    proc = cli("pack", path, tmp_path / "out", "--schema", "name:int32")
    assert proc.returncode == 6, proc.stderr
    assert "none of the first 20 rows" in proc.stderr and "'name'" in proc.stderr
    with pytest.raises(SchemaError):
        fastload.pack(path, tmp_path / "out2", progress=False, schema="name:int32", on_error="skip")


def test_deep_json_array_element_is_a_clear_error(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text('[{"a": 1}, {"a": ' + "[" * 50_000 + "]" * 50_000 + "}]")
    with pytest.raises(SourceError, match=r"deep\.json element 1: nested too deeply"):
        fastload.pack(path, tmp_path / "out", progress=False)
