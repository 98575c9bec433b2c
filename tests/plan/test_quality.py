"""Shuffle quality of "block" against "full" and "none", with the metrics stated in plan.quality."""

from __future__ import annotations

import numpy as np
import pytest

from fastload.plan import BlockShuffle, FullShuffle, SequentialOrder, make_order, shuffle_quality
from fastload.plan.quality import as_markdown, compare_shuffles, sampled_quality

N, BLOCK = 1_000_000, 1024
BLOCKS = -(-N // BLOCK)


@pytest.fixture(scope="module")
def table():
    rows = dict(compare_shuffles(n=N, block=BLOCK, batch_size=64, seed=0, windows=(1, 8, 64)))
    print("\n" + as_markdown(list(rows.items())))
    return rows


def test_full_is_uniform(table):
    full = table["full"]
    assert abs(full.spearman) < 0.01  # a uniform shuffle: ~N(0, 1/sqrt(n)) = 0.001
    assert abs(full.displacement - 1 / 3) < 0.005
    assert abs(full.blocks_per_batch - full.uniform_blocks_per_batch) < 0.5


def test_none_is_the_identity(table):
    none = table["none"]
    assert none.spearman == 1.0 and none.displacement == 0.0
    assert none.blocks_per_batch == 1.0  # 64 divides 1024: a batch never straddles two blocks


@pytest.mark.parametrize("window", [1, 8, 64])
def test_block_trades_locality_for_nothing_else_global(table, window):
    block = table[f"block, window {window}"]
    # the walk order of the ~977 blocks decorrelates the epoch: rho ~ N(0, 1/sqrt(blocks)) = 0.032
    assert abs(block.spearman) < 4 / np.sqrt(BLOCKS)
    assert abs(block.displacement - 1 / 3) < 0.02
    # a batch reads about `window` blocks (at most 64, one per sample), against 62 for "full"
    expected = window * (1 - (1 - 1 / window) ** 64)  # 64 draws among `window` blocks
    assert abs(block.blocks_per_batch - expected) < 0.05 * expected + 0.02


def test_block_window_8_correlation_over_seeds():
    # one seed's rho is a single draw with sd 0.032, so the bound is on the mean over epochs
    starts, pos = np.arange(0, N, BLOCK), np.arange(N)
    rhos = [np.corrcoef(pos, BlockShuffle(starts, N, seed=0, epoch=e, window=8).indices(pos))[0, 1]
            for e in range(6)]
    assert np.mean(np.abs(rhos)) < 0.05


def test_quality_validation():
    with pytest.raises(ValueError):
        shuffle_quality(SequentialOrder(1), np.array([0]))


def test_sampled_quality_estimates_the_whole_epoch():
    n, groups = 200_000, np.arange(0, 200_000, 5_000)
    for order in (FullShuffle(n, 1, 0), make_order("shards", n, 1, 0, group_starts=groups, window=4),
                  SequentialOrder(n)):
        whole = shuffle_quality(order, groups, batch_size=64)
        est = sampled_quality(order, groups, batch_size=64)
        assert abs(est.displacement - whole.displacement) < 0.01
        assert abs(est.spearman - whole.spearman) < 0.02
        assert abs(est.blocks_per_batch - whole.blocks_per_batch) < 0.05 * whole.blocks_per_batch + 0.1
