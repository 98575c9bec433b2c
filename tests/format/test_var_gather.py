"""Variable fields gathered across shards: the native one-call path of raw shards and the planned
path of compressed ones give pyarrow's values (``take`` + ``to_pylist``), into a given VarColumn
when it has room, and a corrupt payload offset is a FormatError on both, never a read outside the
block."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import fastload
from fastload.errors import FormatError
from fastload.format.varcolumn import VarColumn

from .crafting import Shard, craft_shard

N = 500


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(3)
    return pa.table({"id": np.arange(N, dtype=np.int64),
                     "text": ["ü" * int(rng.integers(0, 90)) + f"{k}" if k % 9 else "" for k in range(N)],
                     "raw": [bytes(rng.integers(0, 256, int(rng.integers(0, 30)), dtype=np.uint8)) for _ in range(N)]})


@pytest.fixture(scope="module", params=["none", "zstd"])
def root(request, table, tmp_path_factory):
    root = tmp_path_factory.mktemp(request.param) / "ds"
    fastload.pack(table, root, block_size="4KB", shard_size="32KB", compression=request.param, progress=False)
    return root


def values(col: VarColumn) -> list[bytes]:
    return [bytes(col.data[col.offsets[i]:col.offsets[i + 1]]) for i in range(len(col))]


@pytest.mark.parametrize("verify", ["never", "first", "always"])
def test_gathers_equal_pyarrow_take(root, table, verify):
    ds = fastload.open(root, verify=verify)
    rng = np.random.default_rng(1)
    for idx in (rng.integers(0, N, 300), np.arange(N)[::-3], np.array([N - 1, 0, N - 1]), -rng.integers(1, N, 20)):
        want = table.take(np.where(idx < 0, idx + N, idx))
        cols = ds.gather(idx, ["text", "raw", "id"])
        assert [v.decode() for v in values(cols["text"])] == want.column("text").to_pylist()
        assert values(cols["raw"]) == want.column("raw").to_pylist()
        np.testing.assert_array_equal(cols["id"], want.column("id").to_numpy())


def test_into_a_given_column_when_it_has_room(root, table):
    ds = fastload.open(root)
    idx = np.random.default_rng(2).integers(0, N, 64)
    want = table.take(idx).column("raw").to_pylist()
    total = sum(map(len, want))
    for room in (total, total + 100, total - 1, 0):
        out = VarColumn(np.full(65, -1, np.int64), np.zeros(room, np.uint8))
        col = ds.gather(idx, ["raw"], out={"raw": out})["raw"]
        assert col.offsets is out.offsets and values(col) == want
        assert np.shares_memory(col.data, out.data) == (0 < total <= room)
    with pytest.raises(ValueError, match="VarColumn of 65 writable int64 offsets"):
        ds.gather(idx, ["raw"], out={"raw": VarColumn(np.zeros(64, np.int64), np.zeros(9, np.uint8))})


@pytest.mark.parametrize("verify", ["never", "first"])
@pytest.mark.parametrize("end", [2**32 - 1, 0])  # past the block; before the record's start
def test_a_corrupt_payload_offset_is_a_format_error(tmp_path, verify, end):
    root = tmp_path / "ds"
    with fastload.Writer(root, "id:int64,text:str") as w:
        for i in range(3):
            w.write({"id": i, "text": f"row {i}"})

    def edit(shard: Shard):
        at = int(shard.table["offset"][0]) - len(shard.head) + int(shard.cols[0, 1])
        assert int.from_bytes(shard.data[at + 8:at + 12], "little") == 10  # the end of record 1
        shard.data[at + 8:at + 12] = end.to_bytes(4, "little")

    craft_shard(root, 0, edit)
    ds = fastload.open(root, verify=verify)
    with pytest.raises(FormatError, match="shard-000000.fls block 0 record 1: field 'text': a variable-size column "
                       "holds (decreasing offsets|offsets pointing past its block)"):
        ds.gather([1], ["text"])
    assert values(ds.gather([0], ["text"])["text"]) == [b"row 0"]
