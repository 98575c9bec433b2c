"""fastload._native: the batch gathers against NumPy references, and their argument checks."""

from __future__ import annotations

import numpy as np
import pytest

from fastload import _native


@pytest.fixture
def src() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)


def addresses(buf: np.ndarray, offsets) -> np.ndarray:
    return buf.ctypes.data + np.asarray(offsets, dtype=np.int64)


@pytest.mark.parametrize("itemsize", [1, 3, 4, 8, 16, 100])
def test_gather_fixed_matches_numpy(src, itemsize):
    rng = np.random.default_rng(itemsize)
    offsets = rng.integers(0, len(src) - itemsize, 300)
    offsets[:3] = [0, len(src) - itemsize, 0]  # both ends, and a repeat
    out = np.full((len(offsets), itemsize), 0xAB, dtype=np.uint8)
    assert _native.gather_fixed(addresses(src, offsets), itemsize, out) is None
    np.testing.assert_array_equal(out, src[offsets[:, None] + np.arange(itemsize)])


def test_gather_fixed_into_typed_output_and_empty(src):
    values = np.arange(50, dtype=np.float64) * 1.5
    picks = np.array([49, 0, 7, 7])
    out = np.empty(len(picks), dtype=np.float64)
    _native.gather_fixed(addresses(values, picks * 8), 8, out)
    np.testing.assert_array_equal(out, values[picks])
    empty = np.empty(0, dtype=np.uint8)
    _native.gather_fixed(np.empty(0, np.int64), 4, empty)  # nothing to copy, nothing read
    out = np.zeros(2, dtype=np.uint8)
    _native.gather_fixed(addresses(src, [5, 6]), 0, out)
    assert not out.any()


def test_gather_fixed_writes_only_its_part_of_a_larger_out(src):
    out = np.full(20, 7, dtype=np.uint8)
    _native.gather_fixed(addresses(src, [10, 20]), 4, out)
    np.testing.assert_array_equal(out[:8], np.concatenate([src[10:14], src[20:24]]))
    assert (out[8:] == 7).all()


def test_gather_var_matches_numpy(src):
    rng = np.random.default_rng(1)
    lengths = rng.integers(0, 40, 200)
    lengths[:2] = 0
    starts = rng.integers(0, len(src) - 40, 200)
    out = np.full(int(lengths.sum()) + 5, 0xCD, dtype=np.uint8)
    total = _native.gather_var(addresses(src, starts), lengths.astype(np.int64), out)
    assert total == int(lengths.sum())
    expected = np.concatenate([src[s : s + n] for s, n in zip(starts, lengths)])
    np.testing.assert_array_equal(out[:total], expected)
    assert (out[total:] == 0xCD).all()
    assert _native.gather_var(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.uint8)) == 0


@pytest.mark.parametrize("row_bytes", [0, 1, 16, 64])
def test_gather_padded_matches_numpy(src, row_bytes):
    rng = np.random.default_rng(2)
    lengths = rng.integers(0, 50, 100)
    lengths[:3] = [0, row_bytes, row_bytes + 7]  # empty, exactly full, truncated
    starts = rng.integers(0, len(src) - 60, 100)
    out = np.full((100, row_bytes), 0xEE, dtype=np.uint8)
    _native.gather_padded(addresses(src, starts), lengths.astype(np.int64), row_bytes, out)
    expected = np.zeros((100, row_bytes), dtype=np.uint8)
    for k, (s, n) in enumerate(zip(starts, lengths)):
        take = min(int(n), row_bytes)
        expected[k, :take] = src[s : s + take]
    np.testing.assert_array_equal(out, expected)


def test_gather_padded_treats_negative_lengths_as_empty(src):
    out = np.full((2, 4), 9, dtype=np.uint8)
    _native.gather_padded(addresses(src, [0, 8]), np.array([-3, 2], np.int64), 4, out)
    np.testing.assert_array_equal(out, [[0, 0, 0, 0], [src[8], src[9], 0, 0]])


# -- argument validation ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.uint8, ">i8"])
def test_addresses_must_be_int64(src, dtype):
    addrs = addresses(src, [0, 4]).astype(dtype)
    out = np.empty(8, np.uint8)
    with pytest.raises(TypeError, match="addrs must be a contiguous int64 array"):
        _native.gather_fixed(addrs, 4, out)
    with pytest.raises(TypeError, match="addrs must be a contiguous int64 array"):
        _native.gather_var(addrs, np.array([1, 1], np.int64), out)
    with pytest.raises(TypeError, match="addrs must be a contiguous int64 array"):
        _native.gather_padded(addrs, np.array([1, 1], np.int64), 4, out)


def test_lengths_must_be_int64(src):
    addrs = addresses(src, [0, 4])
    out = np.empty(8, np.uint8)
    with pytest.raises(TypeError, match="lengths must be a contiguous int64 array"):
        _native.gather_var(addrs, np.array([1, 1], np.int32), out)
    with pytest.raises(TypeError, match="lengths must be a contiguous int64 array"):
        _native.gather_padded(addrs, np.array([1.0, 1.0]), 4, out)


def test_non_buffers_and_wrong_arity_are_type_errors(src):
    with pytest.raises(TypeError):
        _native.gather_fixed([src.ctypes.data], 1, np.empty(1, np.uint8))
    with pytest.raises(TypeError):
        _native.gather_fixed(addresses(src, [0]), 1)
    with pytest.raises(TypeError):
        _native.gather_var(addresses(src, [0]), np.ones(1, np.int64), None)
    with pytest.raises(TypeError):
        _native.gather_fixed(addresses(src, [0]), "1", np.empty(1, np.uint8))


def test_out_too_small_is_a_value_error(src):
    addrs = addresses(src, [0, 10, 20])
    with pytest.raises(ValueError, match="out is smaller"):
        _native.gather_fixed(addrs, 4, np.empty(11, np.uint8))
    with pytest.raises(ValueError, match="out is smaller"):
        _native.gather_fixed(addrs, -1, np.empty(11, np.uint8))
    with pytest.raises(ValueError, match="fit in out"):
        _native.gather_var(addrs, np.array([4, 4, 4], np.int64), np.empty(11, np.uint8))
    with pytest.raises(ValueError, match="row_bytes"):
        _native.gather_padded(addrs, np.array([4, 4, 4], np.int64), 4, np.empty((3, 3), np.uint8))
    with pytest.raises(ValueError, match="row_bytes"):
        _native.gather_padded(addrs, np.array([4, 4, 4], np.int64), -1, np.empty((3, 3), np.uint8))


def test_lengths_must_match_addresses_and_be_non_negative(src):
    addrs = addresses(src, [0, 10, 20])
    out = np.empty(64, np.uint8)
    with pytest.raises(ValueError, match="lengths must match addrs"):
        _native.gather_var(addrs, np.array([1, 1], np.int64), out)
    with pytest.raises(ValueError, match=">= 0"):
        _native.gather_var(addrs, np.array([1, -1, 1], np.int64), out)
    with pytest.raises(ValueError, match="lengths must match addrs"):
        _native.gather_padded(addrs, np.array([1, 1, 1, 1], np.int64), 4, out)


def test_out_must_be_writable_and_contiguous(src):
    addrs = addresses(src, [0, 10])
    readonly = np.empty(8, np.uint8)
    readonly.flags.writeable = False
    with pytest.raises((ValueError, BufferError)):
        _native.gather_fixed(addrs, 4, readonly)
    with pytest.raises((ValueError, BufferError)):
        _native.gather_var(addrs, np.array([4, 4], np.int64), b"\x00" * 8)
    strided = np.empty(16, np.uint8)[::2]
    with pytest.raises((ValueError, BufferError)):
        _native.gather_fixed(addrs, 4, strided)
    with pytest.raises((ValueError, BufferError)):
        _native.gather_fixed(np.repeat(addrs, 2)[::2], 4, np.empty(8, np.uint8))


def test_concurrent_gathers_from_threads(src):
    """Several threads gathering at once (the copies run without the GIL) give the same results."""
    from concurrent.futures import ThreadPoolExecutor

    big = np.random.default_rng(3).integers(0, 256, 1 << 22, dtype=np.uint8)
    offsets = np.random.default_rng(4).integers(0, len(big) - 64, 20000)

    def run(_):
        out = np.empty((len(offsets), 64), np.uint8)
        _native.gather_fixed(addresses(big, offsets), 64, out)
        return out

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, range(8)))
    expected = big[offsets[:, None] + np.arange(64)]
    for r in results:
        np.testing.assert_array_equal(r, expected)


# -- gather_rows: a fixed-size field of one raw shard, block lookup in C ------------------------------
def blocks_of(sizes: list[int], itemsize: int, src: np.ndarray):
    """A fake shard: blocks of ``sizes`` records laid out in ``src`` with 64-byte gaps between."""
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum([n * itemsize + 64 for n in sizes])[:-1]]).astype(np.int64)
    return first, starts, int(sum(sizes))


@pytest.mark.parametrize("itemsize", [1, 4, 8, 24])
def test_gather_rows_matches_numpy(src, itemsize):
    first, starts, n_records = blocks_of([5, 1, 9, 3, 7], itemsize, src)
    local = np.random.default_rng(itemsize).integers(0, n_records, 200)
    local[:4] = [0, n_records - 1, 5, 5]  # both ends, a one-record block, a repeat
    out = np.empty((len(local), itemsize), np.uint8)
    _native.gather_rows(local, first, src.ctypes.data + starts, n_records, itemsize, out)
    block = np.searchsorted(first, local, side="right") - 1
    at = starts[block] + (local - first[block]) * itemsize
    np.testing.assert_array_equal(out, src[at[:, None] + np.arange(itemsize)])


def test_gather_rows_refuses_records_outside_the_shard(src):
    first, starts, n_records = blocks_of([4, 4], 8, src)
    out = np.empty((1, 8), np.uint8)
    for bad in (-1, n_records):
        with pytest.raises(IndexError, match=f"record {bad} is outside the shard's {n_records} records"):
            _native.gather_rows(np.array([bad], np.int64), first, src.ctypes.data + starts, n_records, 8, out)


def test_gather_rows_argument_checks(src):
    first, starts, n_records = blocks_of([4, 4], 8, src)
    addr = src.ctypes.data + starts
    local = np.array([0, 7], np.int64)
    with pytest.raises(ValueError, match="out hold n \\* itemsize"):
        _native.gather_rows(local, first, addr, n_records, 8, np.empty(15, np.uint8))
    with pytest.raises(ValueError, match="block tables must match"):
        _native.gather_rows(local, first, addr[:1], n_records, 8, np.empty(16, np.uint8))
    with pytest.raises(ValueError, match="non-empty"):
        _native.gather_rows(local, first[:0], addr[:0], n_records, 8, np.empty(16, np.uint8))
    with pytest.raises(ValueError):
        _native.gather_rows(local, first, addr, n_records, 0, np.empty(16, np.uint8))
    with pytest.raises(TypeError, match="local must be a contiguous int64 array"):
        _native.gather_rows(local.astype(np.int32), first, addr, n_records, 8, np.empty(16, np.uint8))
    with pytest.raises(TypeError, match="block_first must be a contiguous int64 array"):
        _native.gather_rows(local, first.astype(np.float64), addr, n_records, 8, np.empty(16, np.uint8))
    with pytest.raises(TypeError, match="block_addr must be a contiguous int64 array"):
        _native.gather_rows(local, first, addr.astype(np.uint32), n_records, 8, np.empty(16, np.uint8))
