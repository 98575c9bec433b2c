"""The loader's batches of nulls, dates and times, decimals and nested values.

Array fields with nulls come as the values (nulls zero) plus a bool ``name.valid`` tensor; dates,
times and timestamps as int64 (int32 for date32/time32) tensors of their stored unit; decimals,
strings and nested values as lists with None for nulls. The tensor fields are checked against
torch's own DataLoader over the same dataset; every value against pyarrow's ``to_pylist()``.
"""

from __future__ import annotations

import datetime
import decimal

import numpy as np
import pyarrow as pa
import pytest
import torch
from torch.utils.data import DataLoader as TorchDataLoader, Dataset as TorchDataset

import fastload
from fastload.loader import DataLoader, copy_batch

N = 300


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(1)
    nulls = rng.random((6, N)) < 0.1
    nulls[:, :40] = False  # the first blocks hold no null: some blocks have bitmaps, some not

    def masked(values, k, typ=None):
        return pa.array(values, type=typ, mask=nulls[k])

    base = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    return pa.table({
        "id": np.arange(N, dtype=np.int64),
        "x (cm)": masked(rng.random(N), 0),
        "vec": pa.FixedSizeListArray.from_arrays(rng.random(3 * N).astype(np.float32), 3,
                                                 mask=pa.array(nulls[1])),
        "when": masked([base + datetime.timedelta(seconds=int(s)) for s in rng.integers(0, 10**8, N)], 2,
                       pa.timestamp("ms", tz="UTC")),
        "day": masked([datetime.date(2000, 1, 1) + datetime.timedelta(days=int(d)) for d in range(N)], 3),
        "price": masked([decimal.Decimal(f"{k}.{k % 100:02d}") for k in range(N)], 4, pa.decimal128(8, 2)),
        "tokens": masked([list(range(k % 5)) for k in range(N)], 5, pa.list_(pa.uint16())),
        "label": pa.array([None if k % 7 == 3 else f"l{k}" for k in range(N)]),
        "meta": pa.array([{"k": k, "tags": ["a"] * (k % 3)} if k % 11 else None for k in range(N)]),
    })


@pytest.fixture(scope="module")
def ds(table, tmp_path_factory):
    root = tmp_path_factory.mktemp("nulls") / "ds"
    fastload.pack(table, root, block_size="2KB", shard_size="16KB", progress=False)
    return fastload.open(root)


def test_batch_keys_and_types(ds):
    batch = next(iter(DataLoader(ds, batch_size=64)))
    assert list(batch) == ["id", "x (cm)", "x (cm).valid", "vec", "vec.valid", "when", "when.valid",
                           "day", "day.valid", "price", "tokens", "label", "meta"]
    assert batch["x (cm)"].dtype == torch.float64 and batch["x (cm).valid"].dtype == torch.bool
    assert batch["vec"].shape == (64, 3) and batch["vec.valid"].shape == (64,)
    assert batch["when"].dtype == torch.int64 and batch["day"].dtype == torch.int32
    assert isinstance(batch["price"], list) and isinstance(batch["tokens"][0], torch.Tensor)


@pytest.mark.parametrize("workers, worker_type", [(0, "thread"), (2, "thread"), (2, "process")])
def test_tensor_fields_match_torchs_dataloader(ds, workers, worker_type):
    tensors = ["id", "x (cm)", "vec", "when", "day"]
    keys = [k for name in tensors for k in (name, name + ".valid") if k in ds.get_batch([0])]
    ours = [copy_batch(b) for b in DataLoader(ds, batch_size=50, num_workers=workers, worker_type=worker_type,
                                              fields=tensors)]
    # torch's reference: ds.__getitems__ rows (values, nulls zero, and name.valid) + default_collate
    theirs = list(TorchDataLoader(Fields(ds, keys), batch_size=50))
    assert len(ours) == len(theirs) == N // 50
    for a, b in zip(ours, theirs):
        assert list(a) == keys
        for k in keys:
            assert torch.equal(a[k], b[k]), k


class Fields(TorchDataset):
    """Some fields of a fastload dataset, read by torch's DataLoader through ``__getitems__``."""

    def __init__(self, ds, keys):
        self.ds, self.keys = ds, keys

    def __len__(self):
        return len(self.ds)

    def __getitems__(self, indices):
        return [{k: row[k] for k in self.keys} for row in self.ds.__getitems__(indices)]


def test_every_value_matches_to_pylist(ds, table):
    want = table.to_pylist()
    rows = []
    for batch in DataLoader(ds, batch_size=64, num_workers=2, worker_type="process"):
        for k in range(len(batch["id"])):
            rows.append({name: _value(ds.schema[name], batch, name, k) for name in ds.schema.names})
    assert len(rows) == N
    storage = table.select(["when", "day"])
    whens = storage.column("when").cast(pa.int64()).to_pylist()
    days = storage.column("day").cast(pa.int32()).to_pylist()
    for i, (got, ref) in enumerate(zip(rows, want)):
        assert got["when"] == whens[i] and got["day"] == days[i], i  # the stored unit
        for name in ("id", "x (cm)", "vec", "price", "tokens", "label", "meta"):
            assert got[name] == ref[name], (i, name, got[name], ref[name])


def _value(f, batch, name, k):
    """Record ``k`` of a batch as plain Python, None where the batch says null."""
    if name + ".valid" in batch and not batch[name + ".valid"][k]:
        assert not batch[name][k].any(), "a null is zero in the values"
        return None
    v = batch[name][k]
    return v.tolist() if isinstance(v, torch.Tensor) else v


def test_image_transforms_refuse_an_image_field_with_nulls():
    from pathlib import Path

    from fastload.image import Resize

    golden = fastload.open(Path(__file__).resolve().parent.parent / "data" / "golden" / "v2")
    assert golden.schema["maybe_img"].nullable
    with pytest.raises(ValueError, match="'maybe_img' has nulls"):
        DataLoader(golden, batch_size=4, transforms={"maybe_img": [Resize((8, 8))]})
    batch = next(iter(DataLoader(golden, batch_size=24, fields=["maybe_img"])))  # without transforms: bytes or None
    assert [b is None for b in batch["maybe_img"]] == [k == 20 for k in range(24)]
