"""``fastload.pack`` of Python objects: dict iterables, generators, torch Datasets, Arrow, pandas."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch

import fastload
from fastload.errors import SourceError
from fastload.pack.sources.python_objects import CHUNK_ROWS, ArrowTableSource, TorchMapSource

pytestmark = pytest.mark.timeout(60)


def _rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    """Records with a scalar of each kind, a string, bytes and a fixed-shape array."""
    return [
        {"id": i, "score": i / 7, "name": f"item-{i}" * (i % 4), "blob": bytes([i % 256]) * (i % 5),
         "vec": np.arange(3, dtype=np.float32) + i, "ok": i % 3 == 0}
        for i in range(start, start + n)
    ]


def _same(got: Any, want: Any) -> bool:
    if isinstance(got, np.ndarray) or isinstance(want, np.ndarray):
        got, want = np.asarray(got), np.asarray(want)
        return got.shape == want.shape and bool(np.array_equal(got, want))
    return got == want


def assert_dataset_holds(out: Path, rows: list[dict[str, Any]]) -> fastload.Dataset:
    """``out`` reads back as exactly ``rows``, in order, through ``ds[i]`` and ``ds.get_batch``."""
    ds = fastload.open(out)
    assert len(ds) == len(rows)
    assert set(ds.schema.names) == set(rows[0])
    step = max(1, len(rows) // 50)
    for i in list(range(0, len(rows), step)) + [len(rows) - 1]:
        rec = ds[i]
        for name, want in rows[i].items():
            assert _same(rec[name], want), f"record {i} field {name!r}: {rec[name]!r} != {want!r}"
    batch = ds.get_batch(np.arange(len(rows)))
    for name in ds.schema.names:
        for i, row in enumerate(rows):
            assert _same(batch[name][i], row[name]), f"batch record {i} field {name!r}"
    return ds


# -- each kind of Python object ---------------------------------------------------------------
def test_list_of_dicts_round_trips(tmp_path):
    rows = _rows(300)
    report = fastload.pack(rows, tmp_path / "out", shard_size="8KB", block_size="2KB", progress=False)
    ds = assert_dataset_holds(tmp_path / "out", rows)
    assert report.records == 300 and report.shards == ds.n_shards > 1
    assert ds.schema.describe() == "id: int64, score: float64, name: str, blob: bytes, vec: float32[3], ok: bool"


class _CountingIterable:
    """An iterable that counts how often it is iterated and how many records it hands out."""

    def __init__(self, rows):
        self.rows = rows
        self.iterations = 0
        self.produced = 0

    def __iter__(self):
        self.iterations += 1
        for r in self.rows:
            self.produced += 1
            yield r


def test_generator_is_consumed_exactly_once(tmp_path):
    rows = _rows(CHUNK_ROWS * 2 + 17)  # more than the read-ahead used to infer the schema
    produced = []

    def gen():
        for r in rows:
            produced.append(r["id"])
            yield r

    fastload.pack(gen(), tmp_path / "gen", block_size="16KB", progress=False)
    assert produced == list(range(len(rows)))  # each record pulled once, in order
    assert_dataset_holds(tmp_path / "gen", rows)

    it = _CountingIterable(rows)
    fastload.pack(it, tmp_path / "iterable", progress=False)
    assert (it.iterations, it.produced) == (1, len(rows))
    assert_dataset_holds(tmp_path / "iterable", rows)


class MapDataset(torch.utils.data.Dataset):
    """A map-style torch Dataset of dict records; indices in ``bad`` raise."""

    def __init__(self, n: int, bad: tuple[int, ...] = (), tensors: bool = False):
        self.n, self.bad, self.tensors = n, set(bad), tensors

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i in self.bad:
            raise KeyError(f"no item {i} on disk")
        if self.tensors:
            return {"x": torch.arange(4, dtype=torch.float32) * i, "label": torch.tensor(i % 10)}
        return {"idx": i, "feat": np.arange(4, dtype=np.int16) * (i % 100), "label": f"c{i % 10}"}


def _map_rows(n: int, bad=()):
    return [{"idx": i, "feat": np.arange(4, dtype=np.int16) * (i % 100), "label": f"c{i % 10}"}
            for i in range(n) if i not in bad]


@pytest.mark.parametrize("workers", [1, 2])
def test_torch_map_dataset_round_trips(tmp_path, workers):
    src = TorchMapSource(MapDataset(700), segment_rows=128)  # several segments for the workers
    report = fastload.pack(src, tmp_path / "out", workers=workers, block_size="4KB", progress=False)
    assert report.records == 700
    assert_dataset_holds(tmp_path / "out", _map_rows(700))
    # The plain object goes through the same source.
    fastload.pack(MapDataset(50), tmp_path / "plain", progress=False)
    assert_dataset_holds(tmp_path / "plain", _map_rows(50))


class LambdaDataset(torch.utils.data.Dataset):
    """Holds a lambda, so it cannot be pickled: workers must get it by fork."""

    def __init__(self, n):
        self.n, self.make = n, lambda i: {"i": i, "sq": i * i}

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.make(i)


def test_unpicklable_torch_dataset_with_workers(tmp_path):
    src = TorchMapSource(LambdaDataset(400), segment_rows=50)
    fastload.pack(src, tmp_path / "out", workers=2, progress=False)
    assert_dataset_holds(tmp_path / "out", [{"i": i, "sq": i * i} for i in range(400)])


def test_table_is_not_copied_into_each_job():
    src = ArrowTableSource(pa.table({"x": np.arange(1_000_000)}))
    assert len(pickle.dumps(src)) < 1000  # a token naming the table, which workers get by fork


def test_torch_dataset_returning_tensors(tmp_path):
    fastload.pack(MapDataset(20, tensors=True), tmp_path / "out", progress=False)
    ds = fastload.open(tmp_path / "out")
    assert ds.schema.describe() == "x: float32[4], label: int64"
    np.testing.assert_array_equal(ds[3]["x"], np.arange(4, dtype=np.float32) * 3)
    assert ds[13]["label"] == 3


def test_arrow_table_round_trips(tmp_path):
    n = 2000
    table = pa.table({
        "id": pa.array(np.arange(n, dtype=np.int32)),
        "text": [f"t{i}" * (i % 6) for i in range(n)],
        "tokens": pa.array([list(range(i % 9)) for i in range(n)], type=pa.list_(pa.int64())),
    })
    src = ArrowTableSource(table)
    src.segment_rows = 300  # several segments, read by forked workers
    fastload.pack(src, tmp_path / "w2", workers=2, block_size="4KB", progress=False)
    rows = table.to_pylist()
    for r in rows:
        r["tokens"] = np.array(r["tokens"], dtype=np.int64)
    ds = assert_dataset_holds(tmp_path / "w2", rows)
    assert ds.schema.describe() == "id: int32, text: str, tokens: int64[-1]"
    fastload.pack(table, tmp_path / "plain", progress=False)
    assert_dataset_holds(tmp_path / "plain", rows)


def test_record_batch_reader_streams_once(tmp_path):
    batches = [pa.record_batch({"a": np.arange(k * 100, k * 100 + 100), "s": [f"v{k}"] * 100})
               for k in range(5)]
    reader = pa.RecordBatchReader.from_batches(batches[0].schema, batches)
    report = fastload.pack(reader, tmp_path / "out", block_size="1KB", progress=False)
    assert report.records == 500
    rows = [{"a": k * 100 + j, "s": f"v{k}"} for k in range(5) for j in range(100)]
    assert_dataset_holds(tmp_path / "out", rows)


def test_pandas_dataframe_round_trips(tmp_path):
    columns = {"x": np.linspace(0, 1, 257), "n": np.arange(257, dtype=np.int64),
               "word": [f"w{i % 13}" for i in range(257)]}
    df = pd.DataFrame(columns)  # a RangeIndex: pandas' rule drops it
    fastload.pack(df, tmp_path / "range", progress=False)
    ds = assert_dataset_holds(tmp_path / "range", df.to_dict("records"))
    assert list(ds.schema.names) == ["x", "n", "word"]

    # any other index is a column, as pyarrow.Table.from_pandas(df) makes it (the reference)
    named = pd.DataFrame(columns, index=pd.Index(np.arange(257) * 3, name="row_id"))
    fastload.pack(named, tmp_path / "named", progress=False)
    ds = assert_dataset_holds(tmp_path / "named", pa.Table.from_pandas(named).to_pylist())
    assert list(ds.schema.names) == ["x", "n", "word", "row_id"]
    unnamed = pd.DataFrame(columns, index=np.arange(257) * 3)
    fastload.pack(unnamed, tmp_path / "unnamed", progress=False)
    assert_dataset_holds(tmp_path / "unnamed", pa.Table.from_pandas(unnamed).to_pylist())


# -- bad records ------------------------------------------------------------------------------
def test_torch_item_that_raises_names_its_index(tmp_path):
    with pytest.raises(SourceError, match=r"index 37\b.*KeyError.*no item 37"):
        fastload.pack(MapDataset(100, bad=(37, 80)), tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "manifest.json").exists()


@pytest.mark.parametrize("workers", [1, 2])
def test_torch_items_that_raise_are_skipped_and_counted(tmp_path, workers):
    bad = (0, 37, 80, 81, 299)
    src = TorchMapSource(MapDataset(300, bad=bad), segment_rows=64)
    report = fastload.pack(src, tmp_path / "out", on_error="skip", workers=workers, progress=False)
    assert report.skipped == len(bad)
    assert report.records == 300 - len(bad)
    assert len(report.skip_examples) == len(bad)
    for i, example in zip(bad, report.skip_examples):  # in input order
        assert f"index {i}: KeyError" in example
    assert "5 skipped" in str(report)
    assert_dataset_holds(tmp_path / "out", _map_rows(300, bad))


def test_records_with_other_fields_are_bad_rows(tmp_path):
    rows = _rows(30)
    odd = {**rows[12], "extra": 1}
    missing = {k: v for k, v in rows[20].items() if k != "name"}
    data = rows[:12] + [odd] + rows[12:19] + [missing] + rows[19:]
    with pytest.raises(SourceError, match=r"record 12: fields .*extra"):
        fastload.pack(data, tmp_path / "raise", progress=False)

    report = fastload.pack(data, tmp_path / "skip", on_error="skip", progress=False)
    assert report.skipped == 2 and report.records == 30
    assert report.skip_examples[0].startswith("python list record 12: fields")
    assert report.skip_examples[1].startswith("python list record 20: fields")
    assert_dataset_holds(tmp_path / "skip", rows)


@pytest.mark.parametrize("odd", [{"other": 1}, ("not", "a", "dict")], ids=["other-fields", "not-a-dict"])
def test_odd_record_at_a_chunk_boundary(tmp_path, odd):
    """Records are checked against the source's first record, not per read-ahead chunk."""
    rows = _rows(CHUNK_ROWS + 50)
    data = list(rows)
    data.insert(CHUNK_ROWS, odd)  # the first record of the second chunk
    report = fastload.pack(iter(data), tmp_path / "iter", on_error="skip", block_size="64KB", progress=False)
    assert report.skipped == 1 and f"record {CHUNK_ROWS}:" in report.skip_examples[0]
    assert_dataset_holds(tmp_path / "iter", rows)

    class Shifty(torch.utils.data.Dataset):
        def __len__(self):
            return len(data)

        def __getitem__(self, i):
            return data[i]

    report = fastload.pack(Shifty(), tmp_path / "torch", on_error="skip", block_size="64KB", progress=False)
    assert report.skipped == 1 and f"index {CHUNK_ROWS}:" in report.skip_examples[0]
    assert_dataset_holds(tmp_path / "torch", rows)


def test_not_a_dict_is_rejected(tmp_path):
    with pytest.raises(SourceError, match="dict"):
        fastload.pack([1, 2, 3], tmp_path / "out", progress=False)
    with pytest.raises(SourceError, match="cannot pack a int"):
        fastload.pack(5, tmp_path / "out2", progress=False)
