"""EpochPlan: equal, disjoint rank parts as DistributedSampler; batches cut from one order."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastload.plan import EpochPlan, SequentialOrder, World, make_order
from fastload.plan import epoch as epoch_module

from .helpers import delivered, rank_plans, sequence


def _sampler_total(n: int, world_size: int, even: str) -> int:
    # torch's DistributedSampler: drop_last=False pads to ceil(n / W) per rank, True floors
    return -(-n // world_size) * world_size if even == "pad" else n // world_size * world_size


def test_layout_by_hand():
    # 10 records, 2 ranks, batches of 2: global batches [0..3] [4..7] and a partial [8, 9]
    plans = rank_plans(2, n=10, batch_size=2, order=SequentialOrder(10))
    assert [b.tolist() for b in plans[0].batches()] == [[0, 1], [4, 5], [8]]
    assert [b.tolist() for b in plans[1].batches()] == [[2, 3], [6, 7], [9]]
    dropped = rank_plans(2, n=10, batch_size=2, order=SequentialOrder(10), drop_last=True)
    assert [b.tolist() for b in dropped[1].batches()] == [[2, 3], [6, 7]]


def test_padding_repeats_the_start_of_the_sequence():
    order = make_order("full", 10, seed=4, epoch=0)
    seq = sequence(order, 10, 10)
    plans = rank_plans(3, n=10, batch_size=4, order=order)  # 12 positions: 2 repeats
    assert [len(p) for p in plans] == [1, 1, 1]
    assert np.array_equal(delivered(plans), np.concatenate([seq, seq[:2]]))
    assert [p.batch(0).tolist() for p in plans] == [seq[0:4].tolist(), seq[4:8].tolist(),
                                                    [seq[8], seq[9], seq[0], seq[1]]]
    dropped = rank_plans(3, n=10, batch_size=4, order=order, even="drop")  # 9 positions
    assert np.array_equal(delivered(dropped), seq[:9])
    assert [p.batch(0).size for p in dropped] == [3, 3, 3]


def test_padding_more_than_the_dataset():
    # fewer records than ranks: DistributedSampler repeats as often as needed
    plans = rank_plans(4, n=1, batch_size=3, order=SequentialOrder(1))
    assert [p.batch(0).tolist() for p in plans] == [[0]] * 4
    assert [len(p) for p in rank_plans(4, n=1, batch_size=3, order=SequentialOrder(1),
                                       even="drop")] == [0] * 4


@given(n=st.integers(0, 300), batch_size=st.integers(1, 17), world_size=st.integers(1, 4),
       drop_last=st.booleans(), even=st.sampled_from(["pad", "drop"]),
       mode=st.sampled_from(["full", "block", "none"]), seed=st.integers(0, 2**64 - 1))
@settings(max_examples=80, deadline=None)
def test_ranks_partition_the_epoch(n, batch_size, world_size, drop_last, even, mode, seed):
    order = make_order(mode, n, seed=seed, epoch=0, block_starts=np.arange(0, max(n, 1), 13))
    plans = rank_plans(world_size, n=n, batch_size=batch_size, order=order, drop_last=drop_last,
                       even=even)
    total = _sampler_total(n, world_size, even)
    per_rank = [[b for b in p.batches()] for p in plans]
    # equal sizes: same batch count, and batch k has the same size on every rank
    assert len({len(b) for b in per_rank}) == 1
    for k, sizes in enumerate(zip(*[[len(b) for b in bs] for bs in per_rank])):
        assert len(set(sizes)) == 1
        assert sizes[0] == batch_size or (k == len(per_rank[0]) - 1 and not drop_last)
    # the ranks together deliver the global sequence: each record once, padding repeats the start
    got = delivered(plans)
    full_batches = total // (batch_size * world_size) * batch_size * world_size
    assert np.array_equal(got, sequence(order, n, full_batches if drop_last else total))
    if even == "pad" and not drop_last:
        assert np.array_equal(np.sort(got[:n]), np.arange(n))
    # rank parts are disjoint in positions (padding is the only repeat of a record)
    positions = np.concatenate([p.positions(k) for p in plans for k in range(len(p))] or [[]])
    assert len(np.unique(positions)) == len(positions)
    for plan, batches in zip(plans, per_rank):  # batches() and batch(k) agree
        for k in {0, len(batches) // 2, len(batches) - 1} if batches else ():
            assert np.array_equal(batches[k], plan.batch(k))


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
@pytest.mark.parametrize("even", ["pad", "drop"])
def test_union_is_the_dataset_or_the_sampler_subset(world_size, even):
    n = 1003
    order = make_order("full", n, seed=0, epoch=0)
    plans = rank_plans(world_size, n=n, batch_size=16, order=order, even=even)
    parts = [np.concatenate(list(p.batches())) for p in plans]
    assert len({len(part) for part in parts}) == 1
    union = np.concatenate(parts)
    assert len(union) == _sampler_total(n, world_size, even)
    if even == "pad":
        assert set(union.tolist()) == set(range(n))
    else:  # the dropped samples are the tail of the global sequence
        assert np.array_equal(np.sort(union), np.sort(sequence(order, n, len(union))))
        assert len(np.unique(union)) == len(union)


def test_batches_work_in_chunks(monkeypatch):
    monkeypatch.setattr(epoch_module, "_CHUNK_SAMPLES", 7)
    order = make_order("block", 500, seed=1, epoch=0)
    for plan in rank_plans(3, n=500, batch_size=4, order=order):
        assert [b.tolist() for b in plan.batches()] == [plan.batch(k).tolist()
                                                         for k in range(len(plan))]
        assert [b.tolist() for b in plan.batches(first=5)] == [plan.batch(k).tolist()
                                                                for k in range(5, len(plan))]
        assert list(plan.batches(first=len(plan))) == []


def test_batch_index_and_samples_after():
    plan = EpochPlan(n=10, batch_size=2, world=World(1, 2), order=SequentialOrder(10))
    assert len(plan) == plan.num_batches() == 3 and plan.end == 10 and plan.global_batch == 4
    assert [plan.samples_after(k) for k in range(4)] == [0, 4, 8, 10]
    for bad in (-1, 3, True, 1.0):
        with pytest.raises(IndexError):
            plan.batch(bad)
    with pytest.raises(IndexError):
        plan.samples_after(4)
    with pytest.raises(IndexError):
        list(plan.batches(first=4))
    dropped = EpochPlan(n=10, batch_size=2, world=World(0, 2), order=SequentialOrder(10),
                        drop_last=True)
    # the epoch counts as consumed after the last batch, dropped tail included
    assert len(dropped) == 2 and dropped.samples_after(2) == 10


def test_empty_dataset():
    plan = EpochPlan(n=0, batch_size=4, order=SequentialOrder(0))
    assert len(plan) == 0 and list(plan.batches()) == [] and plan.samples_after(0) == 0


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(batch_size=0), ValueError, "batch_size must be >= 1"),
    (dict(n=-1), ValueError, "n must be >= 0"),
    (dict(start_sample=-3), ValueError, "start_sample"),
    (dict(batch_size=2.0), TypeError, "batch_size must be an int"),
    (dict(even="repeat"), ValueError, "'pad' or 'drop'"),
    (dict(drop_last=1), TypeError, "drop_last must be a bool"),
    (dict(world=(0, 1)), TypeError, "World"),
    (dict(order=SequentialOrder(11)), ValueError, "n=11"),
])
def test_validation(kwargs, error, message):
    with pytest.raises(error, match=message):
        EpochPlan(**{"n": 10, "batch_size": 2, "order": SequentialOrder(10), **kwargs})


def test_keyword_only():
    with pytest.raises(TypeError):
        EpochPlan(10, 2, World(), SequentialOrder(10))  # type: ignore[misc]
