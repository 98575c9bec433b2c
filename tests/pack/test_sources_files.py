"""File pack sources on real files: rows in order, bad rows named exactly, stable segments, round trips."""

from __future__ import annotations

import filecmp
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

import fastload
from fastload.errors import SchemaError, SourceError
from fastload.pack.sources import csv as csv_module
from fastload.pack.sources.arrow_files import ArrowFileSource
from fastload.pack.sources.base import BadRow, Chunk
from fastload.pack.sources.csv import CsvSource
from fastload.pack.sources.imagefolder import ImageFolderSource, image_problem
from fastload.pack.sources.jsonl import JsonlSource
from fastload.pack.sources.numpy_files import NumpySource


def read_all(source) -> tuple[list[Chunk], list[BadRow]]:
    """Every segment read in order, through a pickled copy as a pack worker would."""
    segments = source.segments()
    copy = pickle.loads(pickle.dumps(source))
    items = [item for seg in segments for item in copy.read(pickle.loads(pickle.dumps(seg)))]
    return [i for i in items if isinstance(i, Chunk)], [i for i in items if isinstance(i, BadRow)]


def values(col) -> list:
    if isinstance(col, (pa.Array, pa.ChunkedArray)):
        return col.to_pylist()
    if isinstance(col, np.ndarray):
        return col.tolist()
    return list(col)


def column(chunks: list[Chunk], name: str) -> list:
    return [v for c in chunks for v in values(c.columns[name])]


def assert_rows_named_by_line(chunks: list[Chunk]) -> None:
    """Each row stores its own line/row number in ``line``: ``Chunk.where`` must agree."""
    for c in chunks:
        assert values(c.columns["line"]) == list(range(c.first_row, c.first_row + len(c))), c.origin


def packed_rows(out: Path) -> list[dict]:
    ds = fastload.open(out)
    return [ds[i] for i in range(len(ds))]


# -- Parquet / Arrow IPC ----------------------------------------------------------------------
def make_table(n: int = 50, start: int = 0) -> pa.Table:
    ids = np.arange(start, start + n)
    return pa.table({
        "line": ids,
        "text": [f"row {i}" for i in ids],
        "vec": pa.FixedSizeListArray.from_arrays(pa.array(np.repeat(ids, 3).astype(np.float32)), 3),
        "tags": [[int(i)] * int(i % 3) for i in ids],
        "kind": pa.array(["ab"[i % 2] for i in ids]).dictionary_encode(),
    })


def test_parquet_streams_row_groups_in_order(tmp_path):
    pq.write_table(make_table(50), tmp_path / "a.parquet", row_group_size=7)
    pq.write_table(make_table(20, start=0), tmp_path / "b.parquet", row_group_size=7)
    src = ArrowFileSource([tmp_path / "b.parquet", tmp_path / "a.parquet"], segment_size=1)
    segments = src.segments()
    assert [(Path(s.path).name, s.start, s.stop) for s in segments] == (
        [("a.parquet", i, i + 1) for i in range(8)] + [("b.parquet", i, i + 1) for i in range(3)]
    )
    assert src.info().schema.describe() == (
        "line: int64, text: str, vec: float32[3], tags: int64[-1], kind: str"
    )
    chunks, bad = read_all(src)
    assert not bad
    assert column(chunks, "line") == list(range(50)) + list(range(20))
    assert column(chunks, "vec")[49] == [49.0] * 3
    assert_rows_named_by_line(chunks)
    assert all(pa.types.is_string(c.columns["kind"].type) for c in chunks)  # dictionary decoded
    # Segments come from the input alone: another instance, another list order, same units.
    again = ArrowFileSource([tmp_path / "a.parquet", tmp_path / "b.parquet"], segment_size=1)
    assert again.segments() == segments
    assert len(ArrowFileSource(tmp_path / "a.parquet").segments()) == 1  # small groups merged


@pytest.mark.parametrize("writer", ["feather", "ipc-stream"])
def test_ipc_files_by_record_batch(tmp_path, writer):
    table = make_table(45)
    path = tmp_path / "t.arrow"
    if writer == "feather":
        feather.write_feather(table, path, chunksize=10)
    else:
        with pa.ipc.new_stream(path, table.schema) as w:
            for batch in table.to_batches(max_chunksize=10):
                w.write_batch(batch)
    src = ArrowFileSource(path, segment_size=1)
    assert [(s.start, s.first_row) for s in src.segments()] == [(i, 10 * i) for i in range(5)]
    chunks, bad = read_all(src)
    assert not bad and column(chunks, "text") == [f"row {i}" for i in range(45)]
    assert_rows_named_by_line(chunks)


def test_arrow_files_must_agree_on_schema(tmp_path):
    pq.write_table(make_table(5), tmp_path / "a.parquet")
    # Another column order and large_string are the same fastload schema.
    other = make_table(5).select(["text", "line", "vec", "tags", "kind"])
    other = other.cast(other.schema.set(0, pa.field("text", pa.large_string())))
    pq.write_table(other, tmp_path / "b.parquet")
    assert len(ArrowFileSource(sorted(tmp_path.iterdir())).segments()) == 2
    pq.write_table(make_table(5).drop_columns(["tags"]).set_column(
        0, "line", pa.array(np.arange(5, dtype=np.int32))), tmp_path / "c.parquet")
    with pytest.raises(SchemaError, match=r"c\.parquet.*missing columns \['tags'\].*line: int64 -> int32"):
        ArrowFileSource(sorted(tmp_path.iterdir())).segments()


def test_unusable_arrow_files_name_the_path(tmp_path):
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"PAR1 this is no footer")
    with pytest.raises(SourceError, match="broken.parquet"):
        ArrowFileSource(bad).info()
    with pytest.raises(SourceError, match="gone.feather: no such file"):
        ArrowFileSource(tmp_path / "gone.feather").segments()
    pq.write_table(pa.table({"x": pa.nulls(3)}), tmp_path / "nulls.parquet")
    assert ArrowFileSource(tmp_path / "nulls.parquet").info().schema["x"].kind == "null"  # a null field


# -- JSON Lines ----------------------------------------------------------------------------------
def write_jsonl(path: Path, n: int, bad: dict[int, bytes] | None = None, blank=()) -> list[int]:
    """Lines 1..n; line k is {"line": k, ...} unless replaced by ``bad`` or left blank."""
    bad = bad or {}
    lines, good = [], []
    for k in range(1, n + 1):
        if k in bad:
            lines.append(bad[k])
        elif k in blank:
            lines.append(b"   ")
        else:
            lines.append(json.dumps({"line": k, "text": "x" * (k % 13)}).encode())
            good.append(k)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return good


def test_jsonl_segments_cut_at_lines_with_their_line_numbers(tmp_path):
    path = tmp_path / "d.jsonl"
    good = write_jsonl(path, 200, bad={57: b'{"line": 57, "text": oops}', 140: b"[1, 2]"})
    src = JsonlSource(path, segment_size=300)
    segments = src.segments()
    data = path.read_bytes()
    assert len(segments) > 10
    assert segments[0].start == 0 and segments[-1].stop == len(data)
    for a, b in zip(segments, segments[1:]):
        assert a.stop == b.start and data[b.start - 1:b.start] == b"\n"
        assert b.first_line == data[:b.start].count(b"\n") + 1
    assert JsonlSource(path, segment_size=300).segments() == segments

    chunks, bad = read_all(src)
    assert column(chunks, "line") == good
    assert_rows_named_by_line(chunks)
    assert [b.where() for b in bad] == [f"{path} line 57", f"{path} line 140"]
    assert "invalid JSON" in bad[0].reason and "not an object" in bad[1].reason


def test_jsonl_blank_lines_type_changes_and_edges(tmp_path):
    path = tmp_path / "d.jsonl"
    good = write_jsonl(path, 30, blank={4, 5, 30})
    chunks, bad = read_all(JsonlSource(path))
    assert not bad and column(chunks, "line") == good
    assert_rows_named_by_line(chunks)

    # A value changing type makes Arrow give up; the rows are still all read.
    path.write_bytes(b'\xef\xbb\xbf{"line": 1, "v": 1}\n{"line": 2, "v": "two"}')  # BOM, no final \n
    chunks, bad = read_all(JsonlSource(path))
    assert not bad and column(chunks, "v") == [1, "two"]
    assert_rows_named_by_line(chunks)

    # A line longer than the segment size stays whole.
    long_line = json.dumps({"line": 2, "text": "y" * 1000})
    path.write_text(f'{{"line": 1}}\n{long_line}\n{{"line": 3}}\n')
    chunks, bad = read_all(JsonlSource(path, segment_size=64))
    assert not bad and column(chunks, "line") == [1, 2, 3]
    assert_rows_named_by_line(chunks)

    path.write_bytes(b"")
    assert JsonlSource(path).segments() == []
    with pytest.raises(SourceError, match="missing.jsonl"):
        JsonlSource(tmp_path / "missing.jsonl").segments()


# -- CSV -----------------------------------------------------------------------------------------
CSV_TEXT = (
    "line,name\n"
    "2,a\n"
    '3,"two\nlines"\n'
    "5,b,extra\n"
    "6,c\n"
    "7\n"
    '8,"three\n\nlines"\n'
    "11,d\n"
    "12,e\n"
)


def test_csv_bad_rows_carry_their_line(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(CSV_TEXT)
    src = CsvSource(path)
    assert src.segments() == [str(path)]
    chunks, bad = read_all(src)
    assert column(chunks, "line") == [2, 3, 6, 8, 11, 12]
    assert column(chunks, "name") == ["a", "two\nlines", "c", "three\n\nlines", "d", "e"]
    assert [b.where() for b in bad] == [f"{path} line 5", f"{path} line 7"]
    assert "Expected 2 columns, got 3" in bad[0].reason  # pyarrow's own wording
    # Exact at each chunk start (the approximation is only within a chunk, after a multi-line value).
    assert all(values(c.columns["line"])[0] == c.first_row for c in chunks)


def test_tsv_and_conversion_errors(tmp_path, monkeypatch):
    path = tmp_path / "d.tsv"
    path.write_text("line\tname\n2\ta b\n3\tc,d\n")
    chunks, bad = read_all(CsvSource(path))
    assert not bad and column(chunks, "name") == ["a b", "c,d"]

    # Types are inferred from the first block; a later misfit is a bad row naming line and field.
    monkeypatch.setattr(csv_module, "_BLOCK_BYTES", 64)
    path = tmp_path / "n.csv"
    path.write_text("n\n" + "1\n" * 40 + "abc\n" + "2\n")
    chunks, bad = read_all(CsvSource(path))
    assert column(chunks, "n") == [1] * 40 + [2]
    assert [b.where() for b in bad] == [f"{path} line 42"] and "field 'n': 'abc'" in bad[0].reason


# -- NumPy ---------------------------------------------------------------------------------------
def test_npy_files_are_fields_read_in_row_ranges(tmp_path):
    tokens = np.arange(60, dtype=np.uint16).reshape(20, 3)
    np.save(tmp_path / "tokens.npy", tokens)
    np.save(tmp_path / "label.npy", np.arange(20, dtype=">i8"))  # big-endian stays readable
    np.save(tmp_path / "weight.npy", np.asfortranarray(np.ones((20, 2)) * np.arange(20)[:, None]))
    src = NumpySource([tmp_path / "tokens.npy", tmp_path / "weight.npy", tmp_path / "label.npy"],
                      segment_size=64)
    assert src.info().schema.describe() == "label: int64, tokens: uint16[3], weight: float64[2]"
    segments = src.segments()
    assert [(s.start, s.stop) for s in segments] == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10),
                                                     (10, 12), (12, 14), (14, 16), (16, 18), (18, 20)]
    chunks, bad = read_all(src)
    assert not bad
    assert column(chunks, "tokens") == tokens.tolist()
    assert column(chunks, "label") == list(range(20))
    assert column(chunks, "weight") == [[i, i] for i in range(20)]
    assert [c.first_row for c in chunks] == [s.start for s in segments]
    assert not chunks[0].columns["tokens"].flags.writeable  # a read-only map, not a copy


def test_npz_stored_and_compressed_members(tmp_path):
    arrays = {"x": np.arange(40, dtype=np.float32).reshape(10, 2, 2),
              "name": np.array([f"n{i}" for i in range(10)]), "raw": np.array([b"b%d" % i for i in range(10)])}
    np.savez(tmp_path / "a.npz", **arrays)
    np.savez_compressed(tmp_path / "b.npz", y=np.arange(10, dtype=np.int8))
    src = NumpySource([tmp_path / "a.npz", tmp_path / "b.npz"], segment_size=30)
    assert src.info().schema.describe() == "name: str, raw: bytes, x: float32[2,2], y: int8"
    assert len(src.segments()) > 1
    chunks, _ = read_all(src)
    assert column(chunks, "x") == arrays["x"].tolist()
    assert column(chunks, "name") == arrays["name"].tolist()
    assert column(chunks, "raw") == arrays["raw"].tolist()
    assert column(chunks, "y") == list(range(10))


def test_numpy_inputs_that_cannot_be_packed(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(5))
    np.save(tmp_path / "b.npy", np.zeros(6))
    with pytest.raises(SourceError, match=r"b\.npy: 6 rows, but .*a\.npy has 5"):
        NumpySource([tmp_path / "a.npy", tmp_path / "b.npy"]).segments()
    np.savez(tmp_path / "c.npz", a=np.zeros(5))
    with pytest.raises(SourceError, match="field name 'a' is also given"):
        NumpySource([tmp_path / "a.npy", tmp_path / "c.npz"]).info()
    np.save(tmp_path / "o.npy", np.array([1 + 2j]))
    with pytest.raises(SourceError, match="o.npy: dtype complex128"):
        NumpySource(tmp_path / "o.npy").info()
    (tmp_path / "t.npy").write_bytes(b"not numpy")
    with pytest.raises(SourceError, match="t.npy"):
        NumpySource(tmp_path / "t.npy").segments()


# -- image folders -------------------------------------------------------------------------------
@pytest.fixture()
def image_root(tmp_path, jpeg_bytes, png_bytes) -> Path:
    root = tmp_path / "images"
    files = {
        "cat/a.jpg": jpeg_bytes,
        "cat/b.jpg": jpeg_bytes + b"\x00" * 7,  # zero padding after EOI is accepted
        "cat/c.jpg": b"just some text, renamed",
        "cat/d.jpg": jpeg_bytes[:-20],  # truncated
        "cat/sub/e.png": png_bytes,
        "dog/x.png": png_bytes,
        "dog/y.PNG": png_bytes,
        "dog/readme.txt": b"ignored",
        ".cache/z.jpg": jpeg_bytes,  # hidden: not a class
        "top.jpg": jpeg_bytes,  # not in a class folder: ignored
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / "empty_class").mkdir()
    os.symlink(root / "nowhere.jpg", root / "dog" / "z.jpg")  # listed but unreadable
    return root


def test_image_folder_keeps_bytes_and_reports_bad_files(image_root, jpeg_bytes, png_bytes):
    src = ImageFolderSource(image_root, files_per_segment=2)
    info = src.info()
    assert info.metadata == {"label_map": {"cat": 0, "dog": 1, "empty_class": 2}}
    assert info.schema.describe() == "image: image, label: int64"
    assert [len(s.files) for s in src.segments()] == [2, 2, 2, 2]
    assert ImageFolderSource(image_root, files_per_segment=2).segments() == src.segments()
    chunks, bad = read_all(src)
    assert column(chunks, "image") == [jpeg_bytes, jpeg_bytes + b"\x00" * 7] + [png_bytes] * 3
    assert column(chunks, "label") == [0, 0, 0, 1, 1]
    # Rows are named by their place in the sorted listing.
    assert [(c.first_row, len(c)) for c in chunks] == [(0, 2), (4, 2), (6, 1)]
    assert [Path(b.origin).relative_to(image_root).as_posix() for b in bad] == [
        "cat/c.jpg", "cat/d.jpg", "dog/z.jpg"]
    assert "not a known image format" in bad[0].reason
    assert "truncated JPEG" in bad[1].reason
    assert "cannot read" in bad[2].reason


def test_image_checks_catch_truncation(tmp_path, png_bytes):
    from PIL import Image

    assert image_problem(png_bytes) is None
    assert "truncated PNG" in image_problem(png_bytes[:-12])
    assert image_problem(b"") == "empty file"
    for fmt in ("GIF", "BMP", "WEBP", "TIFF"):
        Image.new("RGB", (6, 5), (10, 20, 30)).save(tmp_path / f"i.{fmt}", format=fmt)
        data = (tmp_path / f"i.{fmt}").read_bytes()
        assert image_problem(data) is None, fmt
        if fmt != "TIFF":  # TIFF records no end to check
            assert image_problem(data[:-2]) is not None, fmt


def test_image_folder_without_images(tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "notes.txt").write_text("no images")
    with pytest.raises(SourceError, match="no images found"):
        ImageFolderSource(tmp_path).segments()
    with pytest.raises(SourceError, match="cannot list"):
        ImageFolderSource(tmp_path / "missing").info()


# -- round trips through fastload.pack -----------------------------------------------------------
def test_pack_arrow_files_round_trip_and_worker_independence(tmp_path):
    pq.write_table(make_table(50), tmp_path / "a.parquet", row_group_size=7)
    src = ArrowFileSource(tmp_path / "a.parquet", segment_size=1)
    fastload.pack(src, tmp_path / "one", progress=False, shard_size="1KB")
    fastload.pack(src, tmp_path / "two", progress=False, shard_size="1KB", workers=2)
    rows = packed_rows(tmp_path / "one")
    assert [r["line"] for r in rows] == list(range(50))
    assert rows[7]["text"] == "row 7" and rows[7]["kind"] == "b"
    assert rows[7]["vec"].tolist() == [7.0] * 3 and rows[7]["tags"].tolist() == [7]
    names = sorted(os.listdir(tmp_path / "one"))
    assert names == sorted(os.listdir(tmp_path / "two")) and len(names) > 2
    assert filecmp.cmpfiles(tmp_path / "one", tmp_path / "two", names, shallow=False)[0] == names


def test_pack_jsonl_and_csv_bad_rows(tmp_path):
    path = tmp_path / "d.jsonl"
    good = write_jsonl(path, 120, bad={57: b"{oops"})
    with pytest.raises(SourceError, match="d.jsonl line 57"):
        fastload.pack(JsonlSource(path, segment_size=400), tmp_path / "raise", progress=False)
    fastload.pack(JsonlSource(path, segment_size=400), tmp_path / "j", progress=False, on_error="skip")
    assert [r["line"] for r in packed_rows(tmp_path / "j")] == good

    path = tmp_path / "d.csv"
    path.write_text(CSV_TEXT)
    report = fastload.pack(path, tmp_path / "c", progress=False, on_error="skip")
    assert report.skipped == 2
    rows = packed_rows(tmp_path / "c")
    assert [(r["line"], r["name"]) for r in rows] == [
        (2, "a"), (3, "two\nlines"), (6, "c"), (8, "three\n\nlines"), (11, "d"), (12, "e")]


def test_pack_numpy_round_trip(tmp_path):
    tokens = np.arange(300, dtype=np.uint16).reshape(100, 3)
    np.save(tmp_path / "tokens.npy", tokens)
    np.savez_compressed(tmp_path / "extra.npz", score=np.linspace(0, 1, 100, dtype=np.float32))
    src = NumpySource([tmp_path / "tokens.npy", tmp_path / "extra.npz"], segment_size=500)
    fastload.pack(src, tmp_path / "out", progress=False)
    rows = packed_rows(tmp_path / "out")
    assert len(rows) == 100
    np.testing.assert_array_equal(np.stack([r["tokens"] for r in rows]), tokens)
    np.testing.assert_array_equal([r["score"] for r in rows], np.linspace(0, 1, 100, dtype=np.float32))


def test_pack_image_folder_round_trip(image_root, jpeg_bytes, png_bytes):
    out = image_root.parent / "out"
    with pytest.raises(SourceError, match="c.jpg: not a known image format"):
        fastload.pack(ImageFolderSource(image_root), out, progress=False)
    report = fastload.pack(ImageFolderSource(image_root, files_per_segment=2), out, progress=False,
                           on_error="skip", overwrite=True, workers=2)
    assert report.skipped == 3
    rows = packed_rows(out)
    assert [r["label"] for r in rows] == [0, 0, 0, 1, 1]
    assert [r["image"] for r in rows] == [jpeg_bytes, jpeg_bytes + b"\x00" * 7] + [png_bytes] * 3
    assert fastload.open(out).metadata["label_map"] == {"cat": 0, "dog": 1, "empty_class": 2}
