"""--drop-invalid: each rule drops what it names (and only that), counted and located, where
without it the pack fails; the rules are selectable one by one."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import fastload
from fastload.errors import SourceError

pytestmark = pytest.mark.timeout(60)


def _records(root):
    ds = fastload.Dataset(root)
    return [ds[i] for i in range(len(ds))]


def test_utf8_rule_drops_text_that_is_not_utf8(tmp_path):
    rows = [{"text": "ok"}, {"text": b"\xff\xfe bad"}, {"text": "caf\u00e9".encode()}, {"text": "lone \ud800"},
            {"text": "fine"}]
    with pytest.raises(SourceError, match="record 1"):
        fastload.pack(rows, tmp_path / "strict", schema="text:str", progress=False)
    report = fastload.pack(rows, tmp_path / "ds", schema="text:str", drop_invalid="utf8", progress=False)
    assert [r["text"] for r in _records(tmp_path / "ds")] == ["ok", "caf\u00e9", "fine"]
    rule = report.cleaning.rules["drop-invalid utf8"]
    assert rule.records == 2 and rule.examples == ["python list record 1", "python list record 3"]
    assert rule.bytes == len(b"\xff\xfe bad") + 4 + len("lone \ud800".encode("utf-8", "surrogatepass")) + 4


def test_utf8_rule_on_an_arrow_column_holding_invalid_bytes(tmp_path):
    good = pa.array([b"a", b"\xc3\x28", b"b"], pa.binary())
    table = pa.table({"text": good, "i": [0, 1, 2]})
    report = fastload.pack(table, tmp_path / "ds", schema="text:str", drop_invalid="utf8", progress=False)
    assert [r["i"] for r in _records(tmp_path / "ds")] == [0, 2]
    assert report.cleaning.rules["drop-invalid utf8"].records == 1


def test_empty_rule_drops_empty_and_blank_text_only(tmp_path):
    texts = ["a", "", "  ", "\t\n", "\u3000", " b ", "0"]
    df = pd.DataFrame({"text": texts, "i": range(len(texts))})
    report = fastload.pack(df, tmp_path / "ds", drop_invalid="empty", progress=False)
    expected = df[df["text"].str.strip().str.len() > 0]  # Python's notion of white space
    assert [r["i"] for r in _records(tmp_path / "ds")] == expected["i"].tolist()
    assert report.cleaning.rules["drop-invalid empty"].records == 4


def test_nan_rule_drops_non_finite_numbers_in_scalars_and_arrays(tmp_path):
    x = np.array([0.0, np.nan, 1.0, np.inf, -np.inf, 2.0, 3.0, 4.0], np.float32)
    fixed = np.zeros((8, 3), np.float64)
    fixed[5, 2] = np.nan
    var = [np.ones(k, np.float16) for k in (0, 1, 2, 3, 0, 1, 2, 3)]
    var[6][1] = np.inf
    rows = [{"x": float(x[i]), "fixed": fixed[i], "var": var[i], "n": i} for i in range(8)]
    report = fastload.pack(rows, tmp_path / "ds", schema="x:float32,fixed:float64[3],var:float16[-1],n:int64",
                           drop_invalid="nan", progress=False)
    kept = [r["n"] for r in _records(tmp_path / "ds")]
    expected = [i for i in range(8)
                if math.isfinite(x[i]) and np.isfinite(fixed[i]).all() and np.isfinite(var[i]).all()]
    assert kept == expected == [0, 2, 7]
    assert report.cleaning.rules["drop-invalid nan"].records == 5


def test_nan_rule_on_arrays_of_variable_shape(tmp_path):
    arrays = [np.ones((2, 2)), np.array([[1.0, np.nan]]), np.ones((0, 2)), np.full((1, 3), np.inf)]
    rows = [{"a": a, "n": i} for i, a in enumerate(arrays)]
    fastload.pack(rows, tmp_path / "ds", schema="a:float64[-1,-1],n:int64", drop_invalid="nan", progress=False)
    assert [r["n"] for r in _records(tmp_path / "ds")] == [0, 2]


def test_image_rule_drops_images_that_do_not_decode(tmp_path, jpeg_bytes, png_bytes):
    truncated = jpeg_bytes[: len(jpeg_bytes) // 2]
    images = [jpeg_bytes, truncated, png_bytes, b"GIF89a not really", b"not an image at all", png_bytes[:-30]]
    rows = [{"image": b, "n": i} for i, b in enumerate(images)]
    with pytest.raises(SourceError):
        fastload.pack(rows, tmp_path / "strict", schema="image:image,n:int64", progress=False)
    report = fastload.pack(rows, tmp_path / "ds", schema="image:image,n:int64", drop_invalid=True, progress=False)
    assert [r["n"] for r in _records(tmp_path / "ds")] == [0, 2]
    rule = report.cleaning.rules["drop-invalid image"]
    assert rule.records == 4 and rule.examples[0] == "python list record 1"
    # what is kept decodes with the loader's decoder
    from fastload.image.decode import decode_rgb, probe

    for r in _records(tmp_path / "ds"):
        decode_rgb(r["image"], probe(r["image"]))


def test_each_rule_is_selectable(tmp_path):
    rows = [{"text": "", "x": float("nan")}, {"text": "a", "x": 1.0}, {"text": "b", "x": float("inf")}]
    only_nan = fastload.pack(rows, tmp_path / "a", drop_invalid=["nan"], progress=False)
    assert [r["text"] for r in _records(tmp_path / "a")] == ["a"]
    assert list(only_nan.cleaning.rules) == ["drop-invalid nan"]
    only_empty = fastload.pack(rows, tmp_path / "b", drop_invalid="empty", progress=False)
    assert [r["text"] for r in _records(tmp_path / "b")] == ["a", "b"]
    assert list(only_empty.cleaning.rules) == ["drop-invalid empty"]
    with pytest.raises(ValueError, match="drop_invalid takes image, utf8, empty, nan"):
        fastload.pack(rows, tmp_path / "c", drop_invalid="nan,bogus", progress=False)


def test_a_record_counts_under_the_first_rule_that_drops_it(tmp_path):
    rows = [{"text": "", "x": float("nan")}, {"text": "long enough", "x": float("nan")}, {"text": "tiny", "x": 1.0},
            {"text": "long enough", "x": 2.0}, {"text": "long enough", "x": 2.0}]
    report = fastload.pack(rows, tmp_path / "ds", drop_invalid=True, filter="len(text) > 5", dedup=True,
                           progress=False)
    got = {rule: t.records for rule, t in report.cleaning.rules.items()}
    assert got == {"drop-invalid utf8": 0, "drop-invalid empty": 1, "drop-invalid nan": 1,
                   "filter len(text) > 5": 1, "dedup": 1}
    assert report.records == 1
