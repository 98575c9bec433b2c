"""Writer -> fastload.open round trips for every field kind, every input form and both codecs."""

from __future__ import annotations

import io
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import fastload
from fastload import Field, Schema, Writer
from fastload.format.schema import NUMERIC_DTYPES
from fastload.format.spec import CODEC_NONE, CODEC_ZSTD

from .helpers import assert_record_equal, assert_value_equal

ALL_KINDS = Schema((
    *(Field(f"n_{dt}", "scalar", dtype=dt) for dt in NUMERIC_DTYPES),
    Field("fixed1", "array", dtype="float32", shape=(3,)),
    Field("fixed2", "array", dtype="int16", shape=(2, 3)),
    Field("var1", "array", dtype="int32", shape=(-1,)),
    Field("var2", "array", dtype="float64", shape=(-1, 3)),
    Field("text", "str"),
    Field("raw", "bytes"),
    Field("meta", "json"),
    Field("jpg", "image", image_format="jpeg"),
    Field("png", "image", image_format="png"),
))
TEXTS = ["", "plain ascii", "naïve café", "日本語のテキスト", "emoji 🎉🚀", "nul\x00inside", "e\u0301"]
N = 140


def number(dtype: str, k: int):
    """Record ``k``'s value for a scalar field: cycles through each dtype's extremes."""
    dt = np.dtype(dtype)
    if dt.kind == "b":
        return k % 3 == 0
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return [int(info.min), int(info.max), 0, k % int(info.max)][k % 4]
    info = np.finfo(dt)
    return [k / 7, -0.0, float(info.max), float(info.tiny), math.inf, -math.inf, math.nan][k % 7]


def make_record(k: int, jpeg: bytes, png: bytes) -> dict:
    rng = np.random.default_rng(k)
    rec = {f"n_{dt}": number(dt, k) for dt in NUMERIC_DTYPES}
    rec.update(
        fixed1=np.arange(3, dtype=np.float32) * k + 0.5,
        fixed2=np.arange(6, dtype=np.int16).reshape(2, 3) - k,
        var1=np.arange(k % 6, dtype=np.int32) * (k + 1) - 100,  # length 0 every 6th record
        var2=rng.standard_normal((k % 4, 3)),  # 0 rows every 4th record
        text=TEXTS[k % len(TEXTS)] + ("" if k % len(TEXTS) == 0 else str(k)),
        raw=bytes((k * j) % 256 for j in range(k % 40)),
        # one shape of JSON object throughout, so Arrow and pandas batches can carry it as a struct
        meta={"id": k, "tags": ["t"] * (k % 3), "nested": {"ratio": k / 3, "flag": k % 2 == 0,
                                                          "name": "é" * (k % 2)}},
        jpg=jpeg,
        png=png,
    )
    return rec


# -- the same records as column batches -------------------------------------------------------
def dict_batch(recs: list[dict]) -> dict:
    cols = {}
    for f in ALL_KINDS:
        values = [r[f.name] for r in recs]
        if f.kind == "scalar":
            cols[f.name] = np.array(values, dtype=f.dtype)
        elif f.is_fixed:
            cols[f.name] = np.stack(values)
        else:
            cols[f.name] = values
    return cols


def arrow_table(recs: list[dict]) -> pa.Table:
    cols = dict_batch(recs)
    fixed2 = cols["fixed2"].reshape(-1)
    return pa.table({
        **{f"n_{dt}": pa.array(cols[f"n_{dt}"]) for dt in NUMERIC_DTYPES},
        "fixed1": pa.FixedSizeListArray.from_arrays(pa.array(cols["fixed1"].reshape(-1)), 3),
        "fixed2": pa.FixedSizeListArray.from_arrays(
            pa.FixedSizeListArray.from_arrays(pa.array(fixed2), 3), 2),
        "var1": pa.array([a.tolist() for a in cols["var1"]], pa.list_(pa.int32())),
        "var2": pa.array([a.tolist() for a in cols["var2"]], pa.list_(pa.list_(pa.float64(), 3))),
        "text": pa.array(cols["text"], pa.string()),
        "raw": pa.array(cols["raw"], pa.binary()),
        "meta": pa.array(cols["meta"]),
        "jpg": pa.array(cols["jpg"], pa.binary()),
        "png": pa.array(cols["png"], pa.large_binary()),
    })


def pandas_frame(recs: list[dict]) -> pd.DataFrame:
    cols = dict_batch(recs)
    cols["fixed1"] = list(cols["fixed1"])  # a list<float> column feeding a fixed-shape field
    cols["fixed2"] = [a.tolist() for a in cols["fixed2"]]
    cols["var2"] = [a.tolist() for a in cols["var2"]]
    return pd.DataFrame(cols)


@pytest.fixture(scope="module")
def records(jpeg_bytes, png_bytes) -> list[dict]:
    return [make_record(k, jpeg_bytes, png_bytes) for k in range(N)]


@pytest.fixture(scope="module", params=["none", "zstd"])
def dataset(request, tmp_path_factory, records):
    """Every kind, through every input form; blocks of 3 records, shards of 2 (raw) to 6 (zstd) blocks."""
    out = tmp_path_factory.mktemp(f"ds-{request.param}")
    # pandas -> Arrow turns float NaN into null, which a scalar field rejects: keep NaN out
    framed = [r for r in records[101:130] if not math.isnan(r["n_float64"])]
    with Writer(out, ALL_KINDS, block_size=2500, shard_size=8000, compression=request.param,
                buffer_records=16, metadata={"note": "round trip"}) as w:
        for r in records[:25]:
            w.write(r)
        w.write_batch(dict_batch(records[25:60]))
        for r in records[60:67]:
            w.write(r)
        w.write_batch(arrow_table(records[67:95]))
        w.write_batch(arrow_table(records[95:105]).to_batches(max_chunksize=6)[1])  # a RecordBatch
        w.write_batch(pandas_frame(framed))
        for r in records[130:]:
            w.write(r)
    # the RecordBatch carried rows 101..104 only; the frame repeats some of them on purpose
    expected = records[:95] + records[101:105] + framed + records[130:]
    return fastload.open(out), expected, request.param


def test_layout_spans_many_blocks_and_shards(dataset):
    ds, expected, compression = dataset
    assert len(ds) == len(expected) == 134
    assert ds.n_shards >= 5
    readers = [ds.shard(s) for s in range(ds.n_shards)]
    assert sum(r.n_records for r in readers) == len(ds)
    assert all(r.n_blocks >= 2 for r in readers[:-1])
    assert max(int(r.block_records.max()) for r in readers) >= 2
    codecs = set(np.concatenate([r.blocks["codec"] for r in readers]).tolist())
    assert codecs == ({CODEC_NONE} if compression == "none" else {CODEC_ZSTD})
    assert ds.metadata == {"note": "round trip"}
    assert ds.manifest.settings["compression"] == compression


def test_getitem_every_record(dataset):
    ds, expected, _ = dataset
    for i, want in enumerate(expected):
        assert_record_equal(ds.schema, ds[i], want, f"record {i}")
    for i in (-1, -2, -len(ds)):
        assert_record_equal(ds.schema, ds[i], expected[i], f"record {i}")
    assert_record_equal(ds.schema, ds[np.int64(7)], expected[7], "numpy index")


def check_batch(ds, batch: dict, expected: list[dict], fields=None) -> None:
    """Batch row ``k`` holds ``expected[k]``, stacked for fixed fields and listed for the others."""
    names = list(fields) if fields is not None else ds.schema.names
    rows = range(len(expected))
    assert list(batch) == names
    for name in names:
        f = ds.schema[name]
        col = batch[name]
        if f.is_fixed:
            assert isinstance(col, np.ndarray) and col.dtype == f.np_dtype
            assert col.shape == (len(rows), *f.shape)
        else:
            assert isinstance(col, list) and len(col) == len(rows)
        for k in rows:
            got = col[k].item() if f.kind == "scalar" else col[k]
            assert_value_equal(f, got, expected[k][name], f"batch row {k}")


def test_get_batch_random_negative_and_repeated(dataset):
    ds, expected, _ = dataset
    rng = np.random.default_rng(1)
    n = len(ds)
    idx = np.concatenate([rng.permutation(n), [-1, -n, 0, 0, 5, 5, -5, n - 1]])
    batch = ds.get_batch(idx)
    check_batch(ds, batch, [expected[int(i)] for i in idx])
    # a plain list works the same
    small = [3, -3, 3]
    check_batch(ds, ds.get_batch(small), [expected[i] for i in small])


def test_get_batch_field_subset(dataset):
    ds, expected, _ = dataset
    idx = [10, 0, -1, 10, 77]
    fields = ["text", "n_uint64", "var2", "fixed2"]
    batch = ds.get_batch(idx, fields=fields)
    check_batch(ds, batch, [expected[i] for i in idx], fields)


def test_get_batch_pad_one_dimensional_variable_arrays(dataset):
    ds, expected, _ = dataset
    idx = [0, 5, 6, 11, 4, 4, -1, 12]  # var1 lengths 0, 5, 0, 5, 4, 4, 1, 0
    batch = ds.get_batch(idx, pad=True)
    padded, lengths = batch["var1"]
    wants = [expected[i]["var1"] for i in idx]
    assert padded.dtype == np.int32 and lengths.dtype.kind == "i"
    assert lengths.tolist() == [len(w) for w in wants]
    assert padded.shape == (len(idx), max(len(w) for w in wants))
    for k, want in enumerate(wants):
        np.testing.assert_array_equal(padded[k, : len(want)], want)
        assert not padded[k, len(want):].any()
    # padding applies to 1-D variable arrays only; the other variable fields stay lists
    assert isinstance(batch["var2"], list) and isinstance(batch["text"], list)
    empty = ds.get_batch([0, 6], fields=["var1"], pad=True)["var1"]
    assert empty[0].shape == (2, 0) and empty[1].tolist() == [0, 0]


def test_iteration_and_getitems(dataset):
    ds, expected, _ = dataset
    got = list(ds)
    assert len(got) == len(expected)
    for i, (g, want) in enumerate(zip(got, expected)):
        assert_record_equal(ds.schema, g, want, f"iterated record {i}")
    idx = [9, -1, 9, 0]
    items = ds.__getitems__(idx)
    assert len(items) == len(idx)
    for g, i in zip(items, idx):
        assert_record_equal(ds.schema, g, expected[i], f"__getitems__ record {i}")
    assert ds.__getitems__([]) == []


def test_out_of_range_and_bad_index_types(dataset):
    ds, _, _ = dataset
    n = len(ds)
    for bad in (n, n + 10, -n - 1):
        with pytest.raises(IndexError, match=str(bad)):
            ds[bad]
    with pytest.raises(IndexError, match=str(n)):
        ds.get_batch([0, 1, n])
    with pytest.raises(IndexError, match=str(-n - 1)):
        ds.get_batch([-n - 1])
    with pytest.raises(TypeError):
        ds[1:3]
    with pytest.raises(TypeError):
        ds["text"]


def test_images_are_kept_byte_identical_and_decodable(dataset, jpeg_bytes, png_bytes):
    from PIL import Image

    ds, _, _ = dataset
    rec = ds[len(ds) // 2]
    assert rec["jpg"] == jpeg_bytes and rec["png"] == png_bytes
    assert Image.open(io.BytesIO(rec["jpg"])).format == "JPEG"
    assert Image.open(io.BytesIO(rec["png"])).size == (5, 4)


def test_small_block_cache_and_threads_read_the_same(dataset):
    """Compressed blocks evicted from a 1-byte cache, and concurrent readers, give the same values."""
    ds, expected, _ = dataset
    tiny = fastload.open(ds.root, block_cache=1, verify="always")
    rng = np.random.default_rng(2)
    batches = [rng.integers(-len(ds), len(ds), size=40) for _ in range(8)]

    def read(idx):
        return tiny.get_batch(idx, fields=["n_int32", "var1", "text"])

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(read, batches))
    for idx, batch in zip(batches, results):
        check_batch(tiny, batch, [expected[int(i)] for i in idx],
                    ["n_int32", "var1", "text"])
    tiny.verify_all()


def test_json_values_of_every_shape(tmp_path):
    values = [None, 0, -(2**70), 3.5, "é ☃", True, [], {}, [1, [2, [3, None]], {"a": "b"}],
              {"nested": {"deep": [{"x": 1.25}, False]}, "ünï": "code"}, 1e308, ""]
    with Writer(tmp_path, "v:json", block_size=32, shard_size=200) as w:
        for v in values:
            w.write({"v": v})
    ds = fastload.open(tmp_path)
    assert [ds[i]["v"] for i in range(len(ds))] == values
    assert ds.get_batch(np.arange(len(values))[::-1])["v"] == values[::-1]


def test_one_record_per_block_and_per_shard(tmp_path):
    """block_size=1 cuts a block after every record, shard_size=1 a shard after every block."""
    with Writer(tmp_path, "i:int64,s:str", block_size=1, shard_size=1, compression="zstd") as w:
        for i in range(9):
            w.write({"i": i, "s": "x" * i})
    ds = fastload.open(tmp_path)
    assert ds.n_shards == 9 and all(ds.shard(s).n_blocks == 1 for s in range(9))
    batch = ds.get_batch([8, 0, 4])
    assert batch["i"].tolist() == [8, 0, 4] and batch["s"] == ["x" * 8, "", "x" * 4]


def test_empty_dataset(tmp_path):
    with Writer(tmp_path, "a:float32[2],t:str"):
        pass
    ds = fastload.open(tmp_path)
    assert len(ds) == 0 and ds.n_shards == 0 and list(ds) == []
    batch = ds.get_batch([])
    assert batch["a"].shape == (0, 2) and batch["t"] == []
    with pytest.raises(IndexError):
        ds[0]


def test_schema_inferred_from_first_batch(tmp_path):
    tokens = np.arange(12, dtype=np.uint16).reshape(4, 3)
    with Writer(tmp_path) as w:
        w.write_batch({"tokens": tokens, "label": np.array([1, 2, 3, 4], dtype=np.int8),
                       "text": ["a", "b", "c", "d"]})
        w.write({"tokens": tokens[0], "label": 5, "text": "e"})
    ds = fastload.open(tmp_path)
    assert ds.schema.describe() == "tokens: uint16[3], label: int8, text: str"
    np.testing.assert_array_equal(ds.get_batch([0, 1, 2, 3])["tokens"], tokens)
    last = ds[4]
    assert (last["label"], last["text"]) == (5, "e")
    np.testing.assert_array_equal(last["tokens"], tokens[0])
