"""fastload._native: the batch gathers against NumPy references, their argument checks, and the
bounds every read is checked against (a read outside its block is a ValueError, never a crash)."""

from __future__ import annotations

import numpy as np
import pytest

from fastload import _native


@pytest.fixture
def src() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)


def addresses(buf: np.ndarray, offsets) -> np.ndarray:
    return buf.ctypes.data + np.asarray(offsets, dtype=np.int64)


def whole(buf: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Bounds ``(lo, hi)`` of ``n`` reads that may lie anywhere in ``buf``."""
    lo = np.full(n, buf.ctypes.data, dtype=np.int64)
    return lo, lo + buf.nbytes


@pytest.mark.parametrize("itemsize", [1, 3, 4, 8, 16, 100])
def test_gather_fixed_matches_numpy(src, itemsize):
    rng = np.random.default_rng(itemsize)
    offsets = rng.integers(0, len(src) - itemsize, 300)
    offsets[:3] = [0, len(src) - itemsize, 0]  # both ends, and a repeat
    out = np.full((len(offsets), itemsize), 0xAB, dtype=np.uint8)
    assert _native.gather_fixed(addresses(src, offsets), itemsize, out, *whole(src, len(offsets))) is None
    np.testing.assert_array_equal(out, src[offsets[:, None] + np.arange(itemsize)])


def test_gather_fixed_into_typed_output_and_empty(src):
    values = np.arange(50, dtype=np.float64) * 1.5
    picks = np.array([49, 0, 7, 7])
    out = np.empty(len(picks), dtype=np.float64)
    _native.gather_fixed(addresses(values, picks * 8), 8, out, *whole(values, 4))
    np.testing.assert_array_equal(out, values[picks])
    empty = np.empty(0, dtype=np.uint8)
    _native.gather_fixed(np.empty(0, np.int64), 4, empty, *whole(src, 0))  # nothing to copy, nothing read
    out = np.zeros(2, dtype=np.uint8)
    _native.gather_fixed(addresses(src, [5, 6]), 0, out, *whole(src, 2))
    assert not out.any()


def test_gather_fixed_writes_only_its_part_of_a_larger_out(src):
    out = np.full(20, 7, dtype=np.uint8)
    _native.gather_fixed(addresses(src, [10, 20]), 4, out, *whole(src, 2))
    np.testing.assert_array_equal(out[:8], np.concatenate([src[10:14], src[20:24]]))
    assert (out[8:] == 7).all()


def test_gather_var_matches_numpy(src):
    rng = np.random.default_rng(1)
    lengths = rng.integers(0, 40, 200)
    lengths[:2] = 0
    starts = rng.integers(0, len(src) - 40, 200)
    out = np.full(int(lengths.sum()) + 5, 0xCD, dtype=np.uint8)
    total = _native.gather_var(addresses(src, starts), lengths.astype(np.int64), out, *whole(src, 200))
    assert total == int(lengths.sum())
    expected = np.concatenate([src[s : s + n] for s, n in zip(starts, lengths)])
    np.testing.assert_array_equal(out[:total], expected)
    assert (out[total:] == 0xCD).all()
    assert _native.gather_var(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.uint8),
                              *whole(src, 0)) == 0


@pytest.mark.parametrize("row_bytes", [0, 1, 16, 64])
def test_gather_padded_matches_numpy(src, row_bytes):
    rng = np.random.default_rng(2)
    lengths = rng.integers(0, 50, 100)
    lengths[:3] = [0, row_bytes, row_bytes + 7]  # empty, exactly full, truncated
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    data = rng.integers(0, 256, int(offsets[-1]), dtype=np.uint8)
    out = np.full((100, row_bytes), 0xEE, dtype=np.uint8)
    _native.gather_padded(data, offsets, row_bytes, out)
    expected = np.zeros((100, row_bytes), dtype=np.uint8)
    for k in range(100):
        take = min(int(lengths[k]), row_bytes)
        expected[k, :take] = data[offsets[k] : offsets[k] + take]
    np.testing.assert_array_equal(out, expected)


# -- every read inside its bounds ---------------------------------------------------------------------
@pytest.mark.parametrize("offset, itemsize", [(-1, 4), (4093, 4), (0, 4097), (2**62, 8), (-(2**62), 8)])
def test_gather_fixed_refuses_reads_outside_their_bounds(src, offset, itemsize):
    out = np.zeros((2, itemsize), np.uint8)
    with pytest.raises(ValueError, match=f"position {0 if itemsize > 4096 else 1} would be read outside its block"):
        _native.gather_fixed(addresses(src, [0, 0]) + np.array([0, offset]), itemsize, out, *whole(src, 2))


def test_bounds_are_per_read(src):
    """Each read has its own [lo, hi): record 0 may use bytes 0..8 only, record 1 bytes 8..16."""
    lo = src.ctypes.data + np.array([0, 8], np.int64)
    out = np.zeros((2, 8), np.uint8)
    _native.gather_fixed(lo, 8, out, lo, lo + 8)
    with pytest.raises(ValueError, match="position 0"):
        _native.gather_fixed(lo + np.array([1, 0]), 8, out, lo, lo + 8)
    with pytest.raises(ValueError, match="position 1"):
        _native.gather_var(lo, np.array([8, 9], np.int64), np.zeros(17, np.uint8), lo, lo + 8)


@pytest.mark.parametrize("offsets", [[0, 5, 3], [-1, 2, 4], [0, 2, 4097], [0, 2**62, 2**62]])
def test_gather_padded_refuses_offsets_outside_its_source(src, offsets):
    with pytest.raises(ValueError, match="offsets must rise"):
        _native.gather_padded(src, np.array(offsets, np.int64), 4, np.zeros((2, 4), np.uint8))


# -- argument validation ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.uint8, ">i8"])
def test_addresses_must_be_int64(src, dtype):
    addrs = addresses(src, [0, 4]).astype(dtype)
    out = np.empty(8, np.uint8)
    with pytest.raises(TypeError, match="addrs must be a contiguous int64 array"):
        _native.gather_fixed(addrs, 4, out, *whole(src, 2))
    with pytest.raises(TypeError, match="addrs must be a contiguous int64 array"):
        _native.gather_var(addrs, np.array([1, 1], np.int64), out, *whole(src, 2))
    with pytest.raises(TypeError, match="offsets must be a contiguous int64 array"):
        _native.gather_padded(src, np.array([0, 1, 2]).astype(dtype), 4, out)


def test_lengths_and_bounds_must_be_int64(src):
    addrs = addresses(src, [0, 4])
    out = np.empty(8, np.uint8)
    lo, hi = whole(src, 2)
    with pytest.raises(TypeError, match="lengths must be a contiguous int64 array"):
        _native.gather_var(addrs, np.array([1, 1], np.int32), out, lo, hi)
    with pytest.raises(TypeError, match="lo must be a contiguous int64 array"):
        _native.gather_fixed(addrs, 4, out, lo.astype(np.float64), hi)
    with pytest.raises(TypeError, match="hi must be a contiguous int64 array"):
        _native.gather_var(addrs, np.array([1, 1], np.int64), out, lo, hi.astype(np.int32))


def test_non_buffers_and_wrong_arity_are_type_errors(src):
    lo, hi = whole(src, 1)
    with pytest.raises(TypeError):
        _native.gather_fixed([src.ctypes.data], 1, np.empty(1, np.uint8), lo, hi)
    with pytest.raises(TypeError):
        _native.gather_fixed(addresses(src, [0]), 1, np.empty(1, np.uint8))  # no bounds
    with pytest.raises(TypeError):
        _native.gather_var(addresses(src, [0]), np.ones(1, np.int64), None, lo, hi)
    with pytest.raises(TypeError):
        _native.gather_fixed(addresses(src, [0]), "1", np.empty(1, np.uint8), lo, hi)


def test_out_too_small_is_a_value_error(src):
    addrs = addresses(src, [0, 10, 20])
    lo, hi = whole(src, 3)
    with pytest.raises(ValueError, match="out must hold"):
        _native.gather_fixed(addrs, 4, np.empty(11, np.uint8), lo, hi)
    with pytest.raises(ValueError, match="out must hold"):
        _native.gather_fixed(addrs, -1, np.empty(11, np.uint8), lo, hi)
    with pytest.raises(ValueError, match="fit in out"):
        _native.gather_var(addrs, np.array([4, 4, 4], np.int64), np.empty(11, np.uint8), lo, hi)
    offsets = np.array([0, 4, 8, 12], np.int64)
    with pytest.raises(ValueError, match="row_bytes"):
        _native.gather_padded(src, offsets, 4, np.empty((3, 3), np.uint8))
    with pytest.raises(ValueError, match="row_bytes"):
        _native.gather_padded(src, offsets, -1, np.empty((3, 3), np.uint8))


def test_lengths_and_bounds_must_match_addresses(src):
    addrs = addresses(src, [0, 10, 20])
    out = np.empty(64, np.uint8)
    lo, hi = whole(src, 3)
    with pytest.raises(ValueError, match="lengths, lo and hi must match addrs"):
        _native.gather_var(addrs, np.array([1, 1], np.int64), out, lo, hi)
    with pytest.raises(ValueError, match=">= 0"):
        _native.gather_var(addrs, np.array([1, -1, 1], np.int64), out, lo, hi)
    with pytest.raises(ValueError, match="lo and hi match addrs"):
        _native.gather_fixed(addrs, 4, out, lo[:2], hi)


def test_out_must_be_writable_and_contiguous(src):
    addrs = addresses(src, [0, 10])
    lo, hi = whole(src, 2)
    readonly = np.empty(8, np.uint8)
    readonly.flags.writeable = False
    with pytest.raises((ValueError, BufferError)):
        _native.gather_fixed(addrs, 4, readonly, lo, hi)
    with pytest.raises((ValueError, BufferError)):
        _native.gather_var(addrs, np.array([4, 4], np.int64), b"\x00" * 8, lo, hi)
    strided = np.empty(16, np.uint8)[::2]
    with pytest.raises((ValueError, BufferError)):
        _native.gather_fixed(addrs, 4, strided, lo, hi)
    with pytest.raises((ValueError, BufferError)):
        _native.gather_fixed(np.repeat(addrs, 2)[::2], 4, np.empty(8, np.uint8), lo, hi)


def test_concurrent_gathers_from_threads(src):
    """Several threads gathering at once (the copies run without the GIL) give the same results."""
    from concurrent.futures import ThreadPoolExecutor

    big = np.random.default_rng(3).integers(0, 256, 1 << 22, dtype=np.uint8)
    offsets = np.random.default_rng(4).integers(0, len(big) - 64, 20000)
    lo, hi = whole(big, len(offsets))

    def run(_):
        out = np.empty((len(offsets), 64), np.uint8)
        _native.gather_fixed(addresses(big, offsets), 64, out, lo, hi)
        return out

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, range(8)))
    expected = big[offsets[:, None] + np.arange(64)]
    for r in results:
        np.testing.assert_array_equal(r, expected)


# -- gather_rows and gather_multi: fixed-size fields of raw shards, block lookup in C ---------------
def blocks_of(sizes: list[int], itemsize: int, src: np.ndarray):
    """A fake shard: blocks of ``sizes`` records laid out in ``src`` with 64-byte gaps between;
    returns first records, column addresses, block bounds and the record count."""
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum([n * itemsize + 64 for n in sizes])[:-1]]).astype(np.int64)
    addr = src.ctypes.data + starts
    return first, addr, addr, addr + np.array(sizes, np.int64) * itemsize, int(sum(sizes))


def reference(src: np.ndarray, first, addr, local, itemsize):
    block = np.searchsorted(first, local, side="right") - 1
    at = addr[block] - src.ctypes.data + (local - first[block]) * itemsize
    return src[at[:, None] + np.arange(itemsize)]


@pytest.mark.parametrize("itemsize", [1, 4, 8, 24])
def test_gather_rows_matches_numpy(src, itemsize):
    first, addr, lo, hi, n_records = blocks_of([5, 1, 9, 3, 7], itemsize, src)
    local = np.random.default_rng(itemsize).integers(0, n_records, 200)
    local[:4] = [0, n_records - 1, 5, 5]  # both ends, a one-record block, a repeat
    out = np.empty((len(local), itemsize), np.uint8)
    _native.gather_rows(local, first, addr, lo, hi, n_records, itemsize, out)
    np.testing.assert_array_equal(out, reference(src, first, addr, local, itemsize))


def test_gather_rows_refuses_records_outside_the_shard(src):
    first, addr, lo, hi, n_records = blocks_of([4, 4], 8, src)
    out = np.empty((1, 8), np.uint8)
    for bad in (-1, n_records):
        with pytest.raises(IndexError, match=f"record {bad} is outside the shard's {n_records} records"):
            _native.gather_rows(np.array([bad], np.int64), first, addr, lo, hi, n_records, 8, out)


@pytest.mark.parametrize("edit", ["hi_short", "addr_before", "first_wraps", "n_records_lies"])
def test_gather_rows_refuses_reads_leaving_a_block(src, edit):
    """Tables that disagree with the bytes (a block shorter than its records, a column before its
    block, a first record making the offset wrap) give a ValueError, not a read elsewhere."""
    first, addr, lo, hi, n_records = blocks_of([4, 4], 8, src)
    local = np.array([0, 7], np.int64)
    if edit == "hi_short":
        hi = hi - 1
    elif edit == "addr_before":
        addr = addr - 8
    elif edit == "first_wraps":
        first = np.array([0, -(2**62)], np.int64)
    else:
        n_records, local = 2**40, np.array([2**40 - 1], np.int64)
    with pytest.raises(ValueError, match="outside its block"):
        _native.gather_rows(local, first, addr, lo, hi, n_records, 8, np.empty((len(local), 8), np.uint8))


def test_gather_rows_argument_checks(src):
    first, addr, lo, hi, n_records = blocks_of([4, 4], 8, src)
    local = np.array([0, 7], np.int64)
    with pytest.raises(ValueError, match="out hold n \\* itemsize"):
        _native.gather_rows(local, first, addr, lo, hi, n_records, 8, np.empty(15, np.uint8))
    with pytest.raises(ValueError, match="block tables must match"):
        _native.gather_rows(local, first, addr[:1], lo, hi, n_records, 8, np.empty(16, np.uint8))
    with pytest.raises(ValueError, match="block tables must match"):
        _native.gather_rows(local, first, addr, lo[:1], hi, n_records, 8, np.empty(16, np.uint8))
    with pytest.raises(ValueError, match="non-empty"):
        _native.gather_rows(local, first[:0], addr[:0], lo[:0], hi[:0], n_records, 8, np.empty(16, np.uint8))
    with pytest.raises(ValueError):
        _native.gather_rows(local, first, addr, lo, hi, n_records, 0, np.empty(16, np.uint8))
    with pytest.raises(TypeError, match="local must be a contiguous int64 array"):
        _native.gather_rows(local.astype(np.int32), first, addr, lo, hi, n_records, 8, np.empty(16, np.uint8))
    with pytest.raises(TypeError, match="block_first must be a contiguous int64 array"):
        _native.gather_rows(local, first.astype(np.float64), addr, lo, hi, n_records, 8, np.empty(16, np.uint8))
    with pytest.raises(TypeError, match="block_addr must be a contiguous int64 array"):
        _native.gather_rows(local, first, addr.astype(np.uint32), lo, hi, n_records, 8, np.empty(16, np.uint8))


def two_shards(src: np.ndarray, itemsize: int):
    """Tables for gather_multi: shard 0 of blocks [3, 2] records, shard 1 of one block of 4, their
    rows stored in reverse order (shard 1 first), as tables filled in order of first use are."""
    first0, addr0, lo0, hi0, n0 = blocks_of([3, 2], itemsize, src)
    first1, addr1, lo1, hi1, n1 = blocks_of([4], itemsize, src[1024:])
    cat = lambda a, b: np.concatenate([b, a]).astype(np.int64)  # noqa: E731
    return dict(shard_start=np.array([0, n0, n0 + n1], np.int64), shard_lo=np.array([1, 0], np.int64),
                shard_hi=np.array([3, 1], np.int64), block_first=cat(first0, first1), block_addr=cat(addr0, addr1),
                block_lo=cat(lo0, lo1), block_hi=cat(hi0, hi1))


def multi(idx, t, itemsize, blocks_out=None):
    out = np.empty((len(idx), itemsize), np.uint8)
    _native.gather_multi(np.asarray(idx, np.int64), t["shard_start"], t["shard_lo"], t["shard_hi"],
                         t["block_first"], t["block_addr"], t["block_lo"], t["block_hi"], itemsize, out, blocks_out)
    return out


@pytest.mark.parametrize("itemsize", [1, 8, 24])
def test_gather_multi_matches_numpy(src, itemsize):
    t = two_shards(src, itemsize)
    idx = np.array([0, 8, 4, 5, 3, 2, 8, 0], np.int64)
    blocks = np.full(len(idx), -1, np.int64)
    out = multi(idx, t, itemsize, blocks)
    rows = [(1, 0), (0, 3), (2, 1), (0, 0), (2, 0), (1, 2), (0, 3), (1, 0)]  # (row, position in block)
    expected = [src[t["block_addr"][r] - src.ctypes.data + p * itemsize:][:itemsize] for r, p in rows]
    np.testing.assert_array_equal(out, np.array(expected))
    assert blocks.tolist() == [r for r, _ in rows]


def test_gather_multi_refuses_indices_and_reads_outside(src):
    t = two_shards(src, 8)
    for bad in (-1, 9):
        with pytest.raises(IndexError, match=f"index {bad} is out of range"):
            multi([bad], t, 8)
    unregistered = dict(t, shard_lo=np.array([1, 0], np.int64), shard_hi=np.array([3, 0], np.int64))
    with pytest.raises(ValueError, match="position 1 would be read outside its block"):
        multi([0, 6], unregistered, 8)  # shard 1 has no rows: an error, not a read of row 0
    beyond = dict(t, shard_hi=np.array([3, 7], np.int64))  # more rows than the tables hold
    with pytest.raises(ValueError, match="outside its block"):
        multi([6], beyond, 8)
    short = dict(t, block_hi=t["block_hi"] - 1)
    with pytest.raises(ValueError, match="position 0 would be read outside its block"):
        multi([8], short, 8)
    with pytest.raises(ValueError, match="inconsistent tables"):
        multi([0], dict(t, block_lo=t["block_lo"][:2]), 8)


def test_gather_multi_finds_every_record_among_uneven_shards_and_blocks():
    """The shard and block lookups (branch-free binary searches) at every table size from 1 to 17
    blocks a shard and blocks of 1 to 9 records, and the copies by chunks of 64 located records,
    against NumPy's searchsorted and fancy indexing; a read outside its block named past a chunk."""
    rng = np.random.default_rng(5)
    block_rows = [rng.integers(1, 10, n_blocks) for n_blocks in [*range(1, 18), 1, 2, 64]]
    n = sum(int(r.sum()) for r in block_rows)
    itemsize = 6
    flat = rng.integers(0, 256, (n, itemsize), dtype=np.uint8)
    starts = np.cumsum([0] + [int(r.sum()) for r in block_rows]).astype(np.int64)
    n_blocks = np.array([len(r) for r in block_rows], np.int64)
    shard_lo = np.concatenate([[0], np.cumsum(n_blocks)[:-1]]).astype(np.int64)
    first = np.concatenate([np.concatenate([[0], np.cumsum(r)[:-1]]) for r in block_rows]).astype(np.int64)
    global_first = first + np.repeat(starts[:-1], n_blocks)  # each block's first record, globally
    addr = flat.ctypes.data + global_first * itemsize
    lo, hi = addr, addr + np.concatenate(block_rows).astype(np.int64) * itemsize
    t = dict(shard_start=starts, shard_lo=shard_lo, shard_hi=shard_lo + n_blocks, block_first=first,
             block_addr=addr, block_lo=lo, block_hi=hi)
    idx = rng.permutation(n)
    blocks = np.full(n, -1, np.int64)
    np.testing.assert_array_equal(multi(idx, t, itemsize, blocks), flat[idx])
    np.testing.assert_array_equal(blocks, np.searchsorted(global_first, idx, side="right") - 1)
    # a block one byte short: the first position reading its last record is named, past the first 64
    rows = np.concatenate(block_rows).astype(np.int64)
    at = np.argsort(idx)  # at[r]: the position of record r
    b = next(b for b in range(len(rows)) if at[global_first[b] + rows[b] - 1] > 64)
    short = dict(t, block_hi=np.where(np.arange(len(hi)) == b, hi - 1, hi))
    with pytest.raises(ValueError, match=f"position {at[global_first[b] + rows[b] - 1]} would be read outside"):
        multi(idx, short, itemsize)
