"""BlockBuilder: where blocks are cut (the rule the shards' byte-identity relies on), and that
cutting stays linear in the rows added."""

from __future__ import annotations

import numpy as np
import pytest

from fastload import Schema
from fastload.format import block as block_mod
from fastload.format.block import BlockBuilder, encode_block
from fastload.format.columns import VarColumn, convert_columns, row_bytes, slice_converted
from fastload.format.spec import CODEC_NONE

SCHEMA = Schema.parse("id:int64,payload:bytes")


def reference_cuts(sizes: np.ndarray, block_size: int) -> list[int]:
    """The rule, one row at a time: cut at the smallest number of pending rows whose bytes reach
    ``block_size``; the rest is the final block."""
    cuts, acc, count = [], 0, 0
    for s in sizes:
        acc += int(s)
        count += 1
        if acc >= block_size:
            cuts.append(count)
            acc, count = 0, 0
    if count:
        cuts.append(count)
    return cuts


def _rows(rng: np.random.Generator, n: int, max_len: int):
    lengths = rng.integers(0, max_len + 1, n)
    payloads = [bytes(rng.integers(0, 256, k, dtype=np.uint8)) for k in lengths]
    columns = {"id": np.arange(n, dtype=np.int64), "payload": payloads}
    conv, bad = convert_columns(SCHEMA, columns, n)
    assert not bad
    return conv


def _random_chunks(rng: np.random.Generator, n: int) -> list[tuple[int, int]]:
    bounds = np.sort(rng.choice(np.arange(1, n), size=int(rng.integers(0, min(n - 1, 40) + 1)), replace=False))
    edges = [0, *bounds.tolist(), n]
    if rng.random() < 0.3:  # empty chunks are legal adds too
        edges.insert(int(rng.integers(0, len(edges))), edges[0])
        edges.sort()
    return list(zip(edges[:-1], edges[1:]))


@pytest.mark.parametrize("seed", range(40))
def test_cuts_match_the_rule_whatever_the_chunking(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 600))
    conv = _rows(rng, n, max_len=int(rng.choice([4, 40, 400])))
    sizes = row_bytes(SCHEMA, conv, n)
    # from smaller than one row (every row is a block) to bigger than everything (one block)
    block_size = int(rng.choice([1, 16, 64, 500, 3000, 10**6]))
    builder = BlockBuilder(SCHEMA, block_size, CODEC_NONE, 3)
    blocks = []
    for a, b in _random_chunks(rng, n):
        blocks += builder.add(slice_converted(conv, a, b), b - a)
    blocks += builder.flush()

    want = reference_cuts(sizes, block_size)
    assert [blk.n_records for blk in blocks] == want
    start = 0  # and each block holds exactly those rows, encoded as one piece would be
    for blk, rows in zip(blocks, want):
        one = encode_block(SCHEMA, slice_converted(conv, start, start + rows), rows, CODEC_NONE, 3)
        assert bytes(memoryview(blk.stored).cast("B")) == bytes(memoryview(one.stored).cast("B"))
        assert blk.checksum == one.checksum and blk.raw_size == one.raw_size
        np.testing.assert_array_equal(blk.col_offsets, one.col_offsets)
        start += rows


def test_alignment_gaps_are_zero():
    # int8 then bytes: the variable column starts at 8-aligned offset, after a 3-byte gap
    schema = Schema.parse("a:int8,b:bytes")
    conv, _ = convert_columns(schema, {"a": np.array([1, 2, 3, 4, 5], np.int8), "b": [b"x"] * 5}, 5)
    # NumPy caches small freed buffers by size: the raw block (37 bytes) would reuse this dirty one
    garbage = np.full(37, 0xAB, dtype=np.uint8)
    del garbage
    blk = encode_block(schema, conv, 5, CODEC_NONE, 3)
    raw = np.frombuffer(memoryview(blk.stored).cast("B"), np.uint8)
    assert int(blk.col_offsets[1]) == 8
    assert raw[5:8].tolist() == [0, 0, 0]


def test_cutting_work_is_linear(monkeypatch):
    """Each row is sliced out of its chunk at most twice (its block, or the remainder kept
    pending), however many blocks one add() cuts; re-slicing the remainder at every cut was
    quadratic."""
    sliced = []
    real = block_mod.slice_converted

    def counting(conv, start, stop):
        sliced.append(stop - start)
        return real(conv, start, stop)

    monkeypatch.setattr(block_mod, "slice_converted", counting)
    n = 200_000
    offsets = np.arange(n + 1, dtype=np.int64) * 3
    conv = {"id": np.arange(n, dtype=np.int64), "payload": VarColumn(offsets, np.zeros(3 * n, np.uint8))}
    builder = BlockBuilder(SCHEMA, 1000, CODEC_NONE, 3)  # 15 B rows: 67 rows a block, ~3,000 cuts
    blocks = builder.add(conv, n) + builder.flush()
    assert sum(b.n_records for b in blocks) == n
    assert len(blocks) > 2900
    assert sum(sliced) <= 2 * n


@pytest.mark.timeout(20)
def test_eight_million_rows_in_one_add():
    """The 8M-row write_batch that took 13.6 s when cutting was quadratic (~0.3 s now)."""
    n = 8_000_000
    schema = Schema.parse("x:int64")
    builder = BlockBuilder(schema, 1 << 20, CODEC_NONE, 3)
    blocks = builder.add({"x": np.arange(n, dtype=np.int64)}, n) + builder.flush()
    per_block = (1 << 20) // 8
    assert [b.n_records for b in blocks] == [per_block] * (n // per_block) + [n % per_block]
    last = np.frombuffer(memoryview(blocks[-1].stored).cast("B"), np.int64)
    assert last[0] == n - n % per_block and last[-1] == n - 1
