"""The Writer's failure modes: bad rows, the skip policy, aborted writes, existing output, determinism."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import fastload
from fastload import OutputExistsError, SchemaError, Writer
from fastload.format.shard_writer import TEMP_MARK
from fastload.format.spec import MANIFEST_NAME

from .helpers import shards

BAD_ROWS = [
    # (field type, a good value, a bad value, what the error says)
    ("float32[3]", [1, 2, 3], [1, 2], "array of shape [2] where the schema declares [3]"),
    ("float32[2,2]", [[1, 2], [3, 4]], [[1, 2], [3]], "not a numeric array"),
    ("int32[-1]", [1, 2], [[1], [2]], "does not match the schema's [-1]"),
    ("float32[-1,3]", np.zeros((2, 3)), np.zeros((2, 4)), "does not match the schema's [-1, 3]"),
    ("uint16[-1]", [1, 2], [1, 70000], "values do not fit uint16"),
    ("str", "fine", b"\xff\xfe", "not valid UTF-8"),
    ("str", "fine", 5, "expected str, got int"),
    ("str", "fine", "lone \ud800 surrogate", "not valid Unicode"),
    ("bytes", b"ok", 5, "expected bytes, got int"),
    ("uint8", 7, 256, "value 256 does not fit uint8"),
    ("uint8", 7, -1, "value -1 does not fit uint8"),
    ("uint64", 7, -1, "value -1 does not fit uint64"),
    ("int64", 7, 2**64 - 1, "does not fit int64"),
    ("int16", 7, 1.5, "value 1.5 does not fit int16"),
    ("float32", 1.0, "3", "expected a number, got str"),
    ("bool", True, 2, "does not fit bool"),
    ("image[jpeg]", b"\xff\xd8\xff\xe0rest", b"\x89PNG\r\n\x1a\nrest", "not a JPEG image"),
    ("image[png]", b"\x89PNG\r\n\x1a\nrest", b"GIF89a...", "not a PNG image"),
    ("image", b"GIF89a...", b"hello", "not an encoded image"),
    ("null", None, 0, "a value in a null field"),
    ("timestamp[s]", 0, "2020-01-01", "does not fit timestamp[s]"),
    ("json", {"a": 1}, float("nan"), "not JSON-serializable"),
    ("json", {"a": 1}, {"s": {1, 2}}, "not JSON-serializable"),
]


@pytest.mark.parametrize("spec, good, bad, message", BAD_ROWS)
def test_bad_row_raises_naming_the_record(tmp_path, spec, good, bad, message):
    with pytest.raises(SchemaError) as info:
        with Writer(tmp_path / "w", f"id:int64,a:{spec}", buffer_records=4) as w:
            for i in range(7):
                w.write({"id": i, "a": good})
            w.write({"id": 7, "a": bad})
            w.write({"id": 8, "a": good})
    assert "record 7: field 'a'" in str(info.value) and message in str(info.value)
    assert isinstance(info.value, ValueError)
    assert not (tmp_path / "w" / MANIFEST_NAME).exists()


@pytest.mark.parametrize("spec, good, bad, message", BAD_ROWS)
def test_bad_row_in_a_batch_is_numbered_across_batches(tmp_path, spec, good, bad, message):
    with pytest.raises(SchemaError, match=r"^record 6: field 'a'") as info:
        with Writer(tmp_path, f"a:{spec}") as w:
            w.write_batch({"a": [good] * 5})
            w.write({"a": good})
            w.write_batch({"a": [bad, good]})
    assert message in str(info.value)


def test_numpy_batch_out_of_range(tmp_path):
    with pytest.raises(SchemaError, match="record 4: field 'x': value -1 does not fit uint8"):
        with Writer(tmp_path, "x:uint8") as w:
            w.write_batch({"x": np.arange(3)})
            w.write_batch({"x": np.array([1, -1, 5], dtype=np.int8)})


def test_skip_policy_records_bad_rows_and_keeps_the_rest(tmp_path):
    with Writer(tmp_path, "id:int64,v:uint8,s:str", on_error="skip", buffer_records=3) as w:
        for i in range(6):
            w.write({"id": i, "v": 300 if i == 2 else i, "s": "ok"})
        w.write_batch({"id": np.arange(6, 10), "v": np.array([6, 7, -8, 9]),
                       "s": ["ok", b"\xff", "ok", "ok"]})
        w.write_batch(pa.table({"id": [10, 11], "v": [10, 11], "s": ["ok", "\udcff".encode("utf-8", "surrogatepass")]},
                               schema=pa.schema([("id", pa.int64()), ("v", pa.int64()), ("s", pa.binary())])))
        w.write({"id": 12, "v": None, "s": "ok"})  # a null is a value, not a bad row
        w.write({"id": 13, "v": 13, "s": "ok"})
    assert [r for r, _ in w.skipped] == [2, 7, 8, 11]
    reasons = dict(w.skipped)
    assert "field 'v'" in reasons[2] and "uint8" in reasons[2]
    assert "field 's'" in reasons[7] and "UTF-8" in reasons[7]
    assert "field 's'" in reasons[11] and "UTF-8" in reasons[11]
    ds = fastload.open(tmp_path)
    assert ds.get_batch(np.arange(len(ds)))["id"].tolist() == [0, 1, 3, 4, 5, 6, 9, 10, 12, 13]
    assert ds.get_batch(np.arange(len(ds)))["v"].tolist() == [0, 1, 3, 4, 5, 6, 9, 10, 0, 13]
    assert [ds[i]["v"] for i in range(len(ds))] == [0, 1, 3, 4, 5, 6, 9, 10, None, 13]


def test_skip_policy_with_every_row_bad(tmp_path):
    with Writer(tmp_path, "v:uint8", on_error="skip") as w:
        w.write_batch({"v": [-1, 256]})
    assert [r for r, _ in w.skipped] == [0, 1]
    assert len(fastload.open(tmp_path)) == 0


def test_fields_that_do_not_match_the_schema(tmp_path):
    with pytest.raises(SchemaError, match=r"record 1 has fields \['a'\], expected \['a', 'b'\]"):
        with Writer(tmp_path / "1", "a:int8,b:str") as w:
            w.write({"a": 1, "b": "x"})
            w.write({"a": 2})
    with pytest.raises(SchemaError, match=r"lack fields \['b'\]"):
        with Writer(tmp_path / "2", "a:int8,b:str") as w:
            w.write_batch({"a": [1]})
    with pytest.raises(SchemaError, match=r"fields \['c'\] that are not in the schema"):
        with Writer(tmp_path / "3", "a:int8") as w:
            w.write_batch({"a": [1], "c": [2]})
    with pytest.raises(SchemaError, match="column 'b' has 1 rows, expected 2"):
        with Writer(tmp_path / "4", "a:int8,b:int8") as w:
            w.write_batch({"a": [1, 2], "b": [1]})


# -- aborted writes ---------------------------------------------------------------------------------
def leftovers(root) -> list[str]:
    return sorted(p.name for p in root.iterdir() if TEMP_MARK in p.name or p.name == MANIFEST_NAME)


def test_exception_inside_with_leaves_no_manifest_and_no_temp_file(tmp_path):
    class Stop(Exception):
        pass

    with pytest.raises(Stop):
        with Writer(tmp_path, "x:int64", block_size=64, shard_size=300) as w:
            for i in range(200):
                w.write({"x": i})
            w.write_batch({"x": np.arange(10)})  # blocks are written, a shard is open
            raise Stop
    assert leftovers(tmp_path) == []
    with pytest.raises(ValueError, match="closed"):
        w.write({"x": 1})


def test_bad_row_found_while_closing_leaves_no_temp_file(tmp_path):
    """Rows buffered by write() are converted in close(); an error there must still clean up."""
    with pytest.raises(SchemaError, match="record 300"):
        with Writer(tmp_path, "x:uint8", block_size=64, shard_size=10**6, buffer_records=1000) as w:
            w.write_batch({"x": np.arange(200) % 256})  # a shard is open
            for i in range(100):
                w.write({"x": i})
            w.write({"x": 300})
    assert leftovers(tmp_path) == []


def test_close_is_idempotent_and_needs_a_schema(tmp_path):
    w = Writer(tmp_path / "a", "x:int8")
    w.write({"x": 1})
    m = w.close()
    assert w.close() is m and m.n_records == 1
    with pytest.raises(ValueError, match="closed"):
        w.write_batch({"x": [2]})
    with pytest.raises(SchemaError, match="needs a schema"):
        Writer(tmp_path / "b").close()


# -- output directories -------------------------------------------------------------------------------
def test_non_empty_output_needs_overwrite(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError) as info:
        Writer(tmp_path, "x:int8")
    assert isinstance(info.value, FileExistsError)
    assert str(tmp_path) in str(info.value) and "overwrite=True" in str(info.value)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_overwrite_removes_only_fastload_files(tmp_path):
    with Writer(tmp_path, "x:int64", block_size=64, shard_size=200) as w:
        w.write_batch({"x": np.arange(100)})
    old_shards = shards(tmp_path)
    assert len(old_shards) > 2
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "shard-000009.fls").write_bytes(b"not ours to delete")
    stale_temp = tmp_path / f".shard-000050.fls{TEMP_MARK}1-deadbeef"
    stale_temp.write_bytes(b"x")
    with pytest.raises(OutputExistsError):
        Writer(tmp_path, "x:int64")
    with Writer(tmp_path, "y:str", overwrite=True) as w:
        w.write({"y": "new"})
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        MANIFEST_NAME, "notes.txt", "shard-000000.fls", "sub"]
    assert (tmp_path / "sub" / "shard-000009.fls").exists()
    ds = fastload.open(tmp_path)
    assert len(ds) == 1 and ds[0] == {"y": "new"}


def test_bad_writer_options_name_the_choices(tmp_path):
    with pytest.raises(ValueError, match=r"compression must be one of \['none', 'zstd'\]"):
        Writer(tmp_path, "x:int8", compression="lz4")
    with pytest.raises(ValueError, match="1..22"):
        Writer(tmp_path, "x:int8", level=0)
    with pytest.raises(ValueError, match=r"on_error must be one of \('raise', 'skip'\)"):
        Writer(tmp_path, "x:int8", on_error="ignore")
    with pytest.raises(ValueError, match="block_size 'big' is not a size"):
        Writer(tmp_path, "x:int8", block_size="big")
    with pytest.raises(ValueError, match="shard_size must be positive"):
        Writer(tmp_path, "x:int8", shard_size=0)
    with pytest.raises(SchemaError, match="cannot parse type"):
        Writer(tmp_path, "x:int8[")
    with pytest.raises(TypeError, match="write_batch takes"):
        with Writer(tmp_path, "x:int8", overwrite=True) as w:
            w.write_batch([{"x": 1}])


# -- determinism ------------------------------------------------------------------------------------
def write_sample(root, mode: str, compression: str):
    rng = np.random.default_rng(5)
    n = 300
    cols = {"id": np.arange(n), "tok": rng.integers(0, 1000, (n, 8)).astype(np.uint16),
            "text": [f"row {i} " * (i % 5) for i in range(n)],
            "var": [rng.random(i % 7).astype(np.float32) for i in range(n)],
            "meta": [{"i": i, "odd": bool(i % 2)} for i in range(n)]}
    schema = "id:int64,tok:uint16[8],text:str,var:float32[-1],meta:json"
    with Writer(root, schema, block_size=700, shard_size=3000, compression=compression,
                metadata={"source": "test"}, buffer_records=64) as w:
        if mode == "batch":
            w.write_batch(cols)
        else:
            for i in range(n):
                w.write({k: v[i] for k, v in cols.items()})
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_same_records_give_byte_identical_files(tmp_path, compression):
    first = write_sample(tmp_path / "a", "write", compression)
    again = write_sample(tmp_path / "b", "write", compression)
    assert len(first) > 3 and MANIFEST_NAME in first
    assert first == again
    # how the rows were fed (one by one in chunks of 64, or one batch) does not change the bytes
    assert write_sample(tmp_path / "c", "batch", compression) == first


@pytest.mark.parametrize("durable", [True, False])
def test_a_small_file_write_that_fails_leaves_no_temporary_file(tmp_path, monkeypatch, durable):
    """The manifest, the pack journal and a destination's small files go through
    write_file_atomically: when the write fails (here as a full disk does, in the write itself),
    the error goes on, the old file stays whole, and no temporary file is left beside it."""
    import builtins
    import errno

    from fastload.format import shard_writer
    from fastload.format.shard_writer import write_file_atomically

    final = tmp_path / "journal.json"
    final.write_bytes(b"old")

    class FullDisk:  # the temporary file is created for real; writing into it fails
        def __init__(self, path, mode):
            self.file = builtins.open(path, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shard_writer, "open", FullDisk, raising=False)
    with pytest.raises(OSError, match="No space left"):
        write_file_atomically(final, b"new", durable=durable)
    monkeypatch.undo()
    assert final.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["journal.json"]
    write_file_atomically(final, b"new", durable=durable)
    assert final.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["journal.json"]
