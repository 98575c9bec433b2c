"""The inputs people have: compressed text, JSON arrays, other delimiters, data frames, Hugging Face
datasets, and real files shipped inside installed packages, each compared with pyarrow's (or
pandas') own reading of the same data."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.feather  # noqa: F401  (pa.feather)
import pyarrow.parquet as pq
import pytest
import zstandard

import fastload
from fastload.errors import SchemaError, SourceError

pytestmark = pytest.mark.timeout(120)

COMPRESSORS = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress,
               ".zst": zstandard.compress, ".lz4": lambda b: pa.compress(b, "lz4", asbytes=True)}


def rows_of(out: Path) -> list[dict]:
    ds = fastload.open(out)
    return [_plain(ds[i]) for i in range(len(ds))]


def _plain(record: dict) -> dict:
    return {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in record.items()}


def records(n: int) -> list[dict]:
    return [{"id": i, "text": f"row {i}, \"quoted\"", "score": i / 8, "tokens": [i, i + 1, i + 2]}
            for i in range(n)]


# -- compressed text -------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", sorted(COMPRESSORS))
def test_compressed_jsonl_and_csv(tmp_path, suffix):
    rows = records(500)
    text = "".join(json.dumps(r) + "\n" for r in rows).encode()
    path = tmp_path / f"data.jsonl{suffix}"
    path.write_bytes(COMPRESSORS[suffix](text))
    report = fastload.pack(path, tmp_path / "j", progress=False)
    assert "JSON Lines" in report.source
    assert report.bytes_in == path.stat().st_size  # the progress counts the file, as it is on disk
    assert rows_of(tmp_path / "j") == rows

    table = pa.table({"id": [r["id"] for r in rows], "text": [r["text"] for r in rows]})
    plain = tmp_path / "plain.csv"
    pacsv.write_csv(table, plain)
    path = tmp_path / f"data.csv{suffix}"
    path.write_bytes(COMPRESSORS[suffix](plain.read_bytes()))
    fastload.pack(path, tmp_path / "c", progress=False)
    assert rows_of(tmp_path / "c") == pacsv.read_csv(plain).to_pylist()


def test_compressed_jsonl_is_read_in_blocks_with_exact_line_numbers(tmp_path):
    from fastload.pack.sources.jsonl import JsonlSource

    lines = [json.dumps({"line": k}) if k != 77 else "{broken" for k in range(1, 301)]
    path = tmp_path / "d.jsonl.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    src = JsonlSource(path, segment_size=100)  # many blocks, one segment
    assert len(src.segments()) == 1
    items = list(src.read(src.segments()[0]))
    bad = [i for i in items if not hasattr(i, "columns")]
    assert [b.where() for b in bad] == [f"{path} line 77"]
    for chunk in (i for i in items if hasattr(i, "columns")):
        got = [v.as_py() if hasattr(v, "as_py") else v for v in chunk.columns["line"]]
        assert got == list(range(chunk.first_row, chunk.first_row + len(chunk)))


def test_damaged_compressed_file_is_a_source_error(tmp_path):
    path = tmp_path / "d.jsonl.gz"
    whole = gzip.compress("".join(json.dumps({"a": i}) + "\n" for i in range(10000)).encode())
    path.write_bytes(whole[:-4])  # only the trailer's length is cut: every line is still there
    with pytest.raises(SourceError, match=r"d\.jsonl\.gz: cannot decompress \(gzip\)"):
        fastload.pack(path, tmp_path / "out", progress=False)
    path = tmp_path / "e.csv.xz"
    path.write_bytes(b"not xz at all")
    with pytest.raises(SourceError, match=r"e\.csv\.xz"):
        fastload.pack(path, tmp_path / "out2", progress=False)


# -- JSON arrays -----------------------------------------------------------------------------
def test_json_array_files(tmp_path):
    rows = records(300)
    path = tmp_path / "data.json"
    path.write_text(json.dumps(rows, indent=2))
    report = fastload.pack(path, tmp_path / "a", progress=False)
    assert report.source.startswith("JSON: ")
    assert rows_of(tmp_path / "a") == rows
    # compressed, with a big integer kept exact and a non-object element as a bad row
    big = [{"id": 9007199254740993}, 5, {"id": 2}]
    path = tmp_path / "big.json.gz"
    path.write_bytes(gzip.compress(json.dumps(big).encode()))
    with pytest.raises(SourceError, match=r"big\.json\.gz element 1: a JSON int, not an object"):
        fastload.pack(path, tmp_path / "b", progress=False)
    fastload.pack(path, tmp_path / "b2", progress=False, on_error="skip", max_skipped=0.5)
    assert rows_of(tmp_path / "b2") == [{"id": 9007199254740993}, {"id": 2}]
    # a .json file that does not start with '[' is JSON Lines, as Hugging Face reads it
    path = tmp_path / "lines.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows[:5]))
    fastload.pack(path, tmp_path / "l", progress=False)
    assert rows_of(tmp_path / "l") == rows[:5]


def test_broken_json_array_names_line_and_column(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[\n  {"a": 1},\n  {"a": 2,}\n]')
    with pytest.raises(SourceError, match=r"bad\.json line 3 column 11: invalid JSON array"):
        fastload.pack(path, tmp_path / "out", progress=False)
    path.write_text('[{"a": 1}, {"a": 2}')
    with pytest.raises(SourceError, match="not closed"):
        fastload.pack(path, tmp_path / "out2", progress=False)


# -- delimiters ------------------------------------------------------------------------------
@pytest.mark.parametrize("given, char", [(";", ";"), ("\\t", "\t"), ("tab", "\t"), ("|", "|")])
def test_delimiters(tmp_path, given, char):
    table = pa.table({"id": [1, 2, 3], "name": ["a b", "c,d", "e;f"]})
    path = tmp_path / "d.csv"
    pacsv.write_csv(table, path, write_options=pacsv.WriteOptions(delimiter=char, quoting_style="all_valid"))
    fastload.pack(path, tmp_path / "out", progress=False, delimiter=given)
    reference = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(delimiter=char))
    assert rows_of(tmp_path / "out") == reference.to_pylist() == table.to_pylist()


def test_whitespace_delimiter_matches_pandas(tmp_path):
    text = "  id   name  score\n1 \"a b\"\t0.5\n  2\tc   1.25  \n3 d 2\n"
    path = tmp_path / "w.txt.csv"
    path.write_text(text)
    fastload.pack(path, tmp_path / "out", progress=False, delimiter="whitespace")
    reference = pd.read_csv(path, sep=r"\s+").to_dict("records")
    assert rows_of(tmp_path / "out") == reference


def test_bad_delimiters(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a\n1\n")
    for bad in ("ab", '"', "\n"):
        with pytest.raises(SourceError, match="delimiter must be one character"):
            fastload.pack(path, tmp_path / "out", progress=False, delimiter=bad)
    pq.write_table(pa.table({"a": [1]}), tmp_path / "p.parquet")
    with pytest.raises(SourceError, match="delimiter applies to CSV"):
        fastload.pack(tmp_path / "p.parquet", tmp_path / "out", progress=False, delimiter=";")


# -- data frames and Hugging Face datasets -----------------------------------------------------
def test_polars_dataframe(tmp_path):
    pl = pytest.importorskip("polars")
    df = pl.DataFrame({"id": [1, 2, 3], "text": ["x", "yy", "zzz"], "tokens": [[1, 2], [3], [4, 5, 6]]})
    report = fastload.pack(df, tmp_path / "out", progress=False)
    assert report.source.startswith("polars DataFrame")
    assert rows_of(tmp_path / "out") == df.to_arrow().to_pylist()
    fastload.pack(df.lazy(), tmp_path / "lazy", progress=False)
    assert rows_of(tmp_path / "lazy") == df.to_arrow().to_pylist()


def test_pandas_mixed_object_column_is_a_schema_error(tmp_path):
    df = pd.DataFrame({"id": [1, 2, "x", 4], "v": [1.0, 2.0, 3.0, 4.0]}, index=list("abcd"))
    with pytest.raises(SchemaError, match=r"column 'id': row 2 \(index 'c'\) holds 'x' \(str\) where most rows hold int"):
        fastload.pack(df, tmp_path / "out", progress=False)


def _hf_dataset(datasets):
    features = datasets.Features({"id": datasets.Value("int64"), "text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    return datasets.Dataset.from_dict({"id": list(range(40)), "text": [f"t{i}" for i in range(40)],
                                       "label": [i % 2 for i in range(40)]}, features=features)


def test_hugging_face_dataset_objects(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = _hf_dataset(datasets)
    fastload.pack(ds, tmp_path / "all", progress=False)
    assert rows_of(tmp_path / "all") == ds.with_format("arrow")[:].to_pylist()
    assert fastload.open(tmp_path / "all").metadata["class_labels"] == {"label": ["neg", "pos"]}
    picked = ds.shuffle(seed=3).select(range(10))  # an indices mapping: rows in the dataset's order
    fastload.pack(picked, tmp_path / "picked", progress=False)
    assert rows_of(tmp_path / "picked") == [dict(r) for r in picked]
    fastload.pack(datasets.DatasetDict({"train": picked}), tmp_path / "dict", progress=False)
    assert rows_of(tmp_path / "dict") == [dict(r) for r in picked]
    with pytest.raises(SourceError, match=r"splits \['train', 'test'\].*ds\['train'\]"):
        fastload.pack(datasets.DatasetDict({"train": ds, "test": picked}), tmp_path / "two", progress=False)


def test_hugging_face_save_to_disk_folders(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = _hf_dataset(datasets)
    ds.shuffle(seed=1).save_to_disk(str(tmp_path / "one"), num_shards=3)
    report = fastload.pack(tmp_path / "one", tmp_path / "out", progress=False, workers=2)
    assert report.source.startswith("Hugging Face dataset (save_to_disk)")
    reloaded = datasets.load_from_disk(str(tmp_path / "one"))
    assert rows_of(tmp_path / "out") == [dict(r) for r in reloaded]
    assert fastload.open(tmp_path / "out").metadata["class_labels"] == {"label": ["neg", "pos"]}

    datasets.DatasetDict({"train": ds, "test": ds.select(range(5))}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(SourceError, match=r"splits \['train', 'test'\].*dd/train"):
        fastload.pack(tmp_path / "dd", tmp_path / "x", progress=False)
    fastload.pack(tmp_path / "dd" / "test", tmp_path / "test", progress=False)
    assert rows_of(tmp_path / "test") == [dict(r) for r in ds.select(range(5))]


# -- real files shipped inside installed packages --------------------------------------------------
def _package_file(module: str, *parts: str) -> Path:
    mod = pytest.importorskip(module)
    path = Path(mod.__file__).parent.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not shipped with this {module}")
    return path


@pytest.mark.parametrize("name", ["v0.7.1.parquet", "v0.7.1.all-named-index.parquet",
                                  "v0.7.1.some-named-index.parquet"])
def test_pyarrow_test_parquet_files(tmp_path, name):
    path = _package_file("pyarrow", "tests", "data", "parquet", name)
    report = fastload.pack(path, tmp_path / "out", progress=False)
    assert report.source.startswith("Parquet: ")
    assert rows_of(tmp_path / "out") == pq.read_table(path).to_pylist()


def test_pyarrow_test_feather_file(tmp_path):
    import pyarrow.feather as feather

    path = _package_file("pyarrow", "tests", "data", "feather", "v0.17.0.version.2-compression.lz4.feather")
    report = fastload.pack(path, tmp_path / "out", progress=False)
    assert report.source.startswith("Feather: ")
    assert rows_of(tmp_path / "out") == feather.read_table(path).to_pylist()


@pytest.mark.parametrize("name", ["linnerud_exercise.csv", "linnerud_physiological.csv"])
def test_sklearn_space_separated_csv(tmp_path, name):
    path = _package_file("sklearn", "datasets", "data", name)
    fastload.pack(path, tmp_path / "out", progress=False, delimiter="whitespace")
    reference = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(delimiter=" "))
    assert rows_of(tmp_path / "out") == reference.to_pylist()
    assert len(reference) == 20


def test_sklearn_csv_with_a_short_header_shows_pyarrows_message(tmp_path):
    path = _package_file("sklearn", "datasets", "data", "breast_cancer.csv")
    with pytest.raises(SourceError, match=r"breast_cancer\.csv line 2: Expected 4 columns, got 31"):
        fastload.pack(path, tmp_path / "out", progress=False)


def test_sklearn_iris_csv_with_numeric_header_names(tmp_path):
    path = _package_file("sklearn", "datasets", "data", "iris.csv")
    fastload.pack(path, tmp_path / "out", progress=False)
    assert rows_of(tmp_path / "out") == pacsv.read_csv(path).to_pylist()


def test_pyarrow_test_parquet_with_timestamps(tmp_path):
    path = _package_file("pyarrow", "tests", "data", "parquet", "v0.7.1.column-metadata-handling.parquet")
    fastload.pack(path, tmp_path / "out", progress=False)
    assert rows_of(tmp_path / "out") == pq.read_table(path).to_pylist()


def test_timestamps_a_schema_cannot_hold_are_a_schema_error(tmp_path):
    """Until temporal fields exist, a timestamp column falls back to json, which cannot hold it:
    that is a schema problem (exit 6), named, not a bad row on every line (exit 4)."""
    path = tmp_path / "t.csv"
    path.write_text("id,when\n1,2024-01-02T03:04:05\n2,2024-02-03T04:05:06\n")
    if pa.types.is_timestamp(pacsv.read_csv(path).schema.field("when").type):
        try:
            fastload.pack(path, tmp_path / "out", progress=False)
        except SchemaError as exc:
            assert "'when'" in str(exc) and "--schema" in str(exc)
        else:  # temporal fields have arrived: the values must then come back as pyarrow reads them
            assert rows_of(tmp_path / "out") == pacsv.read_csv(path).to_pylist()


def test_empty_dataset_index_is_an_index_error(tmp_path):
    with fastload.Writer(tmp_path / "e", schema="a:int64,s:str"):
        pass
    ds = fastload.open(tmp_path / "e")
    for i in (0, -1, 5):
        with pytest.raises(IndexError):
            ds[i]
    assert list(ds) == []


def test_hf_folder_rejects_names_leaving_it(tmp_path):
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "dataset_info.json").write_text("{}")
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": "../outside.arrow"}]}))
    with pytest.raises(SourceError, match="plain file names"):
        fastload.pack(folder, tmp_path / "out", progress=False)
    shutil.rmtree(folder)


def test_one_shot_sources_are_not_read_ahead_for_the_schema_check(tmp_path):
    """A record batch stream with a json field (a struct) is checked on no sample: reading one
    ahead would lose its first batch."""
    batches = [pa.record_batch({"id": pa.array(range(k * 10, k * 10 + 10)),
                                "meta": pa.array([{"a": i} for i in range(10)])}) for k in range(3)]
    reader = pa.RecordBatchReader.from_batches(batches[0].schema, batches)
    report = fastload.pack(reader, tmp_path / "out", progress=False)
    assert report.records == 30
    assert [r["id"] for r in rows_of(tmp_path / "out")] == list(range(30))


def test_progress_total_is_what_it_counts(tmp_path):
    """The bar's total is the sum of the segments' bytes, and for files that is their size on disk."""
    from fastload.pack.sources import open_source

    pq.write_table(pa.table({"v": np.arange(20000), "s": [f"s{i}" for i in range(20000)]}),
                   tmp_path / "a.parquet", row_group_size=1000, compression="zstd")
    pa.feather.write_feather(pa.table({"v": np.arange(5000)}), tmp_path / "b.feather", chunksize=700)
    for name in ("a.parquet", "b.feather"):
        src = open_source(tmp_path / name)
        src.segment_size = 30000  # several segments per file
        sizes = [src.segment_bytes(s) for s in src.segments()]
        assert len(sizes) > 1 and sum(sizes) == (tmp_path / name).stat().st_size == src.info().bytes_hint


def test_csv_value_of_another_type_after_the_first_block_is_a_bad_row(tmp_path, monkeypatch):
    """Types come from the first block; a later misfit is a bad row naming its line and field,
    the rows before and after it keep their types, and pyarrow's reading of the clean file agrees."""
    from fastload.pack.sources import csv as csv_module

    monkeypatch.setattr(csv_module, "_BLOCK_BYTES", 256)
    lines = ["n,x,s"] + [f"{i},{i / 4},\"t{i}\"" for i in range(300)]
    lines[150] = 'abc,1.5,"odd"'  # line 151 of the file
    lines[220] = '219,oops,"x\nspans"'  # line 221, and its quoted value spans a line
    lines[260] = ",,"  # nulls as CSV writes them stay nulls (a good row: fields are nullable)
    path = tmp_path / "late.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SourceError, match=r"late\.csv line 151: field 'n': 'abc' is not a int64 value"):
        fastload.pack(path, tmp_path / "raise", progress=False)
    report = fastload.pack(path, tmp_path / "skip", progress=False, on_error="skip", max_skipped=0.05)
    assert any("line 221: field 'x': 'oops' is not a double value" in e for e in report.skip_examples)
    kept = [i for i in range(300) if i + 1 not in (150, 220)]
    clean = tmp_path / "clean.csv"
    clean.write_text("\n".join([lines[0]] + [lines[i + 1] for i in kept]) + "\n")
    assert rows_of(tmp_path / "skip") == pacsv.read_csv(clean).to_pylist()
    assert report.skipped == 2
