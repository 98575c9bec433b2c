"""Orders: exact permutations for any n, deterministic per (seed, epoch), O(1)/O(blocks) memory."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastload.plan import BlockShuffle, FullShuffle, Order, SequentialOrder, make_order
from fastload.plan import orders as orders_module
from fastload.plan.bijection import bit_widths

PRIMES = [2, 3, 5, 7, 11, 13, 97, 101, 509, 1021, 4093, 65521]
SIZES = sorted({*range(1, 70), *PRIMES, *(2**k + d for k in range(1, 17) for d in (-1, 0, 1))})


def _is_permutation(values: np.ndarray, n: int) -> bool:
    return values.dtype == np.int64 and np.array_equal(np.sort(values), np.arange(n))


def _all(order: Order) -> np.ndarray:
    return order.indices(np.arange(order.n))


@pytest.mark.parametrize("n", SIZES)
def test_full_shuffle_is_a_bijection(n):
    assert _is_permutation(_all(FullShuffle(n, seed=12345, epoch=3)), n)


@pytest.mark.parametrize("n", [0, *SIZES])
def test_a_full_shuffles_whole_permutation_is_its_per_position_order(n):
    """permutation() (the Feistel's table walked) gives what indices() computes position by position."""
    for seed, epoch in ((12345, 3), (0, 1)):
        order = FullShuffle(n, seed=seed, epoch=epoch)
        whole = order.permutation()
        assert whole.dtype == np.int64 and np.array_equal(whole, _all(order))


@pytest.mark.parametrize("n", SIZES)
def test_block_shuffle_is_a_bijection(n):
    rng = np.random.default_rng(n)
    cuts = np.unique(rng.integers(1, n, size=rng.integers(0, 20))) if n > 1 else []
    starts = np.array([0, *cuts], dtype=np.int64)
    for window in (1, 3, 8):
        assert _is_permutation(_all(BlockShuffle(starts, n, seed=7, epoch=1, window=window)), n)


@given(n=st.integers(1, 5000), seed=st.integers(-2**70, 2**70), epoch=st.integers(0, 10**6),
       block=st.integers(1, 600), window=st.integers(1, 12))
@settings(max_examples=60, deadline=None)
def test_bijection_property(n, seed, epoch, block, window):
    assert _is_permutation(_all(FullShuffle(n, seed, epoch)), n)
    starts = np.arange(0, n, block)
    assert _is_permutation(_all(BlockShuffle(starts, n, seed, epoch, window)), n)


def test_huge_n_without_memory():
    n = 2**62
    order = FullShuffle(n, seed=1, epoch=0)
    held = sum(v.nbytes for v in vars(order).values() if isinstance(v, np.ndarray))
    assert held <= 64  # six uint64 round keys, whatever n is
    out = order.indices(np.array([0, 1, n // 2, n - 1], dtype=np.int64))
    assert out.dtype == np.int64 and ((out >= 0) & (out < n)).all() and len(set(out)) == 4


def test_block_shuffle_memory_is_per_block():
    n, block = 10**7, 4096
    order = BlockShuffle(np.arange(0, n, block), n, seed=0, epoch=0)
    held = sum(v.nbytes for v in vars(order).values() if isinstance(v, np.ndarray))
    blocks = -(-n // block)
    assert held < 200 * blocks  # a few int64 per block and six keys per window: nothing per record


@pytest.mark.parametrize("make", [
    lambda e: FullShuffle(10_000, seed=99, epoch=e),
    lambda e: BlockShuffle(np.arange(0, 10_000, 100), 10_000, seed=99, epoch=e),
])
def test_deterministic_per_seed_and_epoch(make):
    first, again, next_epoch = _all(make(0)), _all(make(0)), _all(make(1))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, next_epoch)
    assert np.mean(first == next_epoch) < 0.05


def test_seed_changes_the_order():
    assert not np.array_equal(_all(FullShuffle(1000, 1, 0)), _all(FullShuffle(1000, 2, 0)))
    starts = np.arange(0, 1000, 10)
    assert not np.array_equal(_all(BlockShuffle(starts, 1000, 1, 0)),
                              _all(BlockShuffle(starts, 1000, 2, 0)))


def test_orders_are_pinned():
    # The order is part of the resume contract: a state saved with one fastload must continue
    # the same sequence with the next. These values may only change with a deliberate break.
    pos = np.array([0, 1, 2, 999_999])
    assert FullShuffle(10**6, 42, 0).indices(pos).tolist() == PINNED_FULL
    order = BlockShuffle(np.arange(0, 10**6, 1024), 10**6, 42, 0)
    assert order.indices(pos).tolist() == PINNED_BLOCK
    assert _all(FullShuffle(10, 42, 0)).tolist() == PINNED_SMALL


PINNED_FULL = [630057, 425146, 277308, 246856]
PINNED_BLOCK = [904870, 421457, 905078, 58014]
PINNED_SMALL = [4, 7, 3, 2, 5, 9, 0, 1, 6, 8]  # below bijection.SMALL: the keyed-rank path


@pytest.mark.parametrize("order", [
    FullShuffle(5000, 3, 1), BlockShuffle(np.arange(0, 5000, 64), 5000, 3, 1),
    SequentialOrder(5000),
])
def test_any_positions_any_shape(order):
    everything = _all(order)
    rng = np.random.default_rng(0)
    pos = rng.integers(0, order.n, size=(7, 11)).astype(np.int32)
    out = order.indices(pos)
    assert out.shape == (7, 11) and out.dtype == np.int64
    assert np.array_equal(out, everything[pos])
    assert order.indices(np.array([], dtype=np.int64)).shape == (0,)
    assert order.indices(np.zeros((0, 3), dtype=np.int64)).shape == (0, 3)


def test_large_calls_match_small_ones():
    # indices() works in pieces and BlockShuffle takes a per-window path for consecutive
    # positions: every path must agree with one-at-a-time answers
    n = 200_000
    for order in (FullShuffle(n, 5, 2), BlockShuffle(np.arange(0, n, 300), n, 5, 2, window=4)):
        whole = _all(order)
        rng = np.random.default_rng(1)
        scattered = rng.permutation(n)
        assert np.array_equal(order.indices(scattered), whole[scattered])
        for p in rng.integers(0, n, size=20):
            assert order.indices(np.array([p]))[0] == whole[p]


def test_block_shuffle_keeps_windows_local():
    n, block, window = 64 * 1000, 1000, 4
    starts = np.arange(0, n, block)
    order = BlockShuffle(starts, n, seed=3, epoch=0, window=window)
    blocks = _all(order) // block
    # each window of positions draws from exactly `window` whole blocks
    for w in range(n // (block * window)):
        chunk = blocks[w * block * window:(w + 1) * block * window]
        assert np.array_equal(np.bincount(chunk, minlength=n // block)[np.unique(chunk)],
                              [block] * window)
    # window 1 keeps a block's records together, in a shuffled order
    one = _all(BlockShuffle(starts, n, seed=3, epoch=0, window=1))
    assert all(len(np.unique(one[i:i + block] // block)) == 1 for i in range(0, n, block))
    assert not np.array_equal(one[:block], np.sort(one[:block]))


def test_block_shuffle_with_uneven_and_empty_blocks():
    starts = np.array([0, 0, 3, 3, 3, 10, 11, 40])  # repeated starts are empty blocks
    order = BlockShuffle(starts, 41, seed=0, epoch=0, window=2)
    assert order.n_blocks == 5 and _is_permutation(_all(order), 41)


@pytest.mark.parametrize("mode, kind", [
    ("full", FullShuffle), (True, FullShuffle), ("block", BlockShuffle),
    ("none", SequentialOrder), (False, SequentialOrder), (None, SequentialOrder),
])
def test_make_order(mode, kind):
    order = make_order(mode, 5000, seed=1, epoch=2)
    assert isinstance(order, kind) and isinstance(order, Order) and order.n == 5000
    assert _is_permutation(_all(order), 5000)


def test_make_order_virtual_and_real_blocks():
    virtual = make_order("block", 10_000, seed=1, epoch=0)
    assert virtual.n_blocks == -(-10_000 // orders_module.VIRTUAL_BLOCK)
    real = make_order("block", 10_000, seed=1, epoch=0, block_starts=np.array([0, 5000]), window=1)
    assert real.n_blocks == 2 and real.window == 1


@pytest.mark.parametrize("mode", ["random", "Full", 1, 0, "", object()])
def test_make_order_names_the_choices(mode):
    with pytest.raises(ValueError, match="'full', 'block', 'shards', 'none', True, False or None"):
        make_order(mode, 10, seed=0, epoch=0)


@pytest.mark.parametrize("mode", ["full", "block", "none"])
def test_empty_dataset(mode):
    order = make_order(mode, 0, seed=0, epoch=0)
    assert order.indices(np.array([], dtype=np.int64)).size == 0
    with pytest.raises(IndexError):
        order.indices(np.array([0]))


@pytest.mark.parametrize("order", [FullShuffle(10, 0, 0), SequentialOrder(10),
                                   BlockShuffle(np.array([0, 5]), 10, 0, 0)])
def test_positions_are_checked(order):
    with pytest.raises(IndexError, match=r"\[0, 10\)"):
        order.indices(np.array([3, 10]))
    with pytest.raises(IndexError):
        order.indices(np.array([-1]))
    with pytest.raises(TypeError, match="integers"):
        order.indices(np.array([1.0]))


@pytest.mark.parametrize("starts, message", [
    ([1, 5], "begin with 0"), ([], "begin with 0"), ([0, 5, 3], "sorted"), ([0, 11], "within"),
    ([[0, 1]], "1-D"), ([0.0, 2.5], "integer"),
])
def test_block_starts_are_checked(starts, message):
    with pytest.raises(ValueError, match=message):
        BlockShuffle(np.array(starts), 10, seed=0, epoch=0)


@pytest.mark.parametrize("kwargs, error", [
    (dict(n=-1), ValueError), (dict(epoch=-1), ValueError), (dict(seed=1.5), TypeError),
    (dict(n=2**63), ValueError), (dict(epoch=True), TypeError),
])
def test_arguments_are_checked(kwargs, error):
    with pytest.raises(error):
        FullShuffle(**{"n": 10, "seed": 0, "epoch": 0, **kwargs})


def test_window_is_checked():
    with pytest.raises(ValueError, match="window"):
        BlockShuffle(np.array([0]), 10, seed=0, epoch=0, window=0)


def test_bit_widths_are_exact_for_arrays():
    sizes = [1, 2, 3, 4, 5, 31, 32, 33, 2**53 + 1, 2**62]
    low, high = bit_widths(np.array(sizes, dtype=np.uint64))
    for size, lo, hi in zip(sizes, low, high):
        assert lo + hi == (size - 1).bit_length() and (lo, hi) == bit_widths(size)


# -- group-major block walk (shards) ------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_grouped_block_shuffle_is_a_permutation_reading_each_shard_in_one_stretch(seed):
    n = 50_000
    rng = np.random.default_rng(seed)
    shard_starts = np.concatenate([[0], np.sort(rng.choice(np.arange(1, n), 30, replace=False))])
    shard_starts = np.insert(shard_starts, 5, shard_starts[5])  # an empty shard
    block_starts = np.unique(np.concatenate([shard_starts, np.arange(0, n, 700)]))
    order = BlockShuffle(block_starts, n, seed, 0, window=1, group_starts=shard_starts)
    idx = order.indices(np.arange(n))
    assert np.array_equal(np.sort(idx), np.arange(n))
    shard = np.searchsorted(shard_starts, idx, side="right") - 1
    runs = shard[np.r_[True, shard[1:] != shard[:-1]]]
    assert len(runs) == len(np.unique(shard))  # window 1: every shard is one contiguous stretch
    assert not np.array_equal(runs, np.sort(runs))  # and the shards themselves are shuffled


def test_grouped_block_shuffle_windows_touch_few_shards_and_epochs_differ():
    n = 100_000
    shard_starts = np.arange(0, n, 10_000)
    block_starts = np.arange(0, n, 1_000)
    a = BlockShuffle(block_starts, n, 3, 0, window=4, group_starts=shard_starts)
    first = a.indices(np.arange(4_000))
    assert len(np.unique(first // 10_000)) <= 2  # the first batches wait for one or two shards
    again = BlockShuffle(block_starts, n, 3, 0, window=4, group_starts=shard_starts).indices(np.arange(n))
    assert np.array_equal(a.indices(np.arange(n)), again)
    other_epoch = BlockShuffle(block_starts, n, 3, 1, window=4, group_starts=shard_starts).indices(np.arange(n))
    assert not np.array_equal(again, other_epoch)


def test_group_starts_are_validated():
    with pytest.raises(ValueError, match="group_starts"):
        BlockShuffle(np.arange(0, 100, 10), 100, 0, 0, group_starts=np.array([5, 50]))
    with pytest.raises(ValueError, match="group_starts"):
        BlockShuffle(np.arange(0, 100, 10), 100, 0, 0, group_starts=np.array([0, 60, 30]))
