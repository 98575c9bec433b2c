"""Nodes and partitions: each node's ranks read only their node's stretch of shards, the global
sequence stays a function of (seed, epoch, dataset, partitions), resume stays exact."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastload.plan import EpochPlan, LoaderState, World, detect_world, make_order
from fastload.plan.walk import partition_starts
from fastload.plan.world import node_rank_note

from .test_world import no_env  # noqa: F401 - the fixture

MODES = ["full", "block", "shards", "none"]


def _shards(n: int, sizes=(37, 0, 50, 13, 64, 29)) -> np.ndarray:
    """Uneven shard starts (with an empty shard) repeating ``sizes`` until n records are covered."""
    starts, at, k = [], 0, 0
    while at < n or not starts:
        starts.append(at)
        at += sizes[k % len(sizes)]
        k += 1
    return np.array(starts, dtype=np.int64)


def _order(mode, n, partitions, seed=3, epoch=1, window=2):
    groups = _shards(n)
    blocks = np.unique(np.concatenate([groups, np.arange(0, max(n, 1), 8)]))
    return make_order(mode, n, seed, epoch, block_starts=blocks, group_starts=groups,
                      window=window, partitions=partitions)


def _world(rank, nodes, local):
    return World(rank, nodes * local, local)


def test_world_counts_nodes():
    w = World(5, 8, 4)
    assert (w.nodes, w.node, w.local_rank) == (2, 1, 1)
    assert World(3, 4) == World(3, 4, 4) and World(3, 4).nodes == 1
    with pytest.raises(ValueError, match="local_world_size must divide world_size=6"):
        World(0, 6, 4)
    with pytest.raises(TypeError, match="local_world_size must be an int"):
        World(0, 4, 2.0)


def test_nodes_from_the_environment(no_env):
    no_env.setenv("RANK", "5")
    no_env.setenv("WORLD_SIZE", "8")
    assert detect_world().nodes == 1  # no LOCAL_WORLD_SIZE: one node
    no_env.setenv("LOCAL_WORLD_SIZE", "2")
    world = detect_world()
    assert world == World(5, 8, 2) and world.node == 2
    no_env.setenv("GROUP_RANK", "2")
    assert node_rank_note(world) is None
    no_env.setenv("GROUP_RANK", "0")
    assert "GROUP_RANK=0 but rank 5 // LOCAL_WORLD_SIZE=2 is node 2" in node_rank_note(world)
    no_env.setenv("LOCAL_WORLD_SIZE", "3")
    with pytest.raises(ValueError, match="LOCAL_WORLD_SIZE=3 does not divide the world size 8"):
        detect_world()


@given(n=st.integers(0, 400), partitions=st.integers(1, 7), mode=st.sampled_from(MODES),
       seed=st.integers(0, 2**64 - 1), window=st.integers(1, 5))
@settings(max_examples=120, deadline=None)
def test_partitioned_orders_are_permutations(n, partitions, mode, seed, window):
    order = _order(mode, n, partitions, seed=seed, window=window)
    got = order.indices(np.arange(n))
    assert np.array_equal(np.sort(got), np.arange(n))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("partitions", [2, 3, 4])
def test_a_residue_reads_one_stretch_of_shards(mode, partitions):
    n = 2000
    groups = _shards(n)
    order = _order(mode, n, partitions)
    records = order.indices(np.arange(n))
    shard_sets = [set(np.unique(np.searchsorted(groups, records[j::partitions], side="right") - 1).tolist())
                  for j in range(partitions)]
    sizes = [len(records[j::partitions]) for j in range(partitions)]
    assert max(sizes) - min(sizes) <= 1
    # partitions are consecutive stretches of the shard walk: they share only their boundary shards
    shared = sum(len(s) for s in shard_sets) - len(set().union(*shard_sets))
    assert shared <= partitions - 1
    non_empty = int(np.count_nonzero(np.diff(np.append(groups, n)) > 0))
    assert len(set().union(*shard_sets)) == non_empty


def test_partition_bounds_make_a_bijection():
    for n in range(0, 30):
        for p in range(1, 9):
            b = partition_starts(n, p)
            pos = np.arange(n)
            place = b[pos % p] + pos // p
            assert np.array_equal(np.sort(place), pos)


def test_one_partition_keeps_the_pinned_orders():
    n = 5000
    groups = np.arange(0, n, 700)
    blocks = np.arange(0, n, 64)
    pos = np.arange(n)
    for mode in ("full", "block", "none"):
        a = make_order(mode, n, 7, 2, block_starts=blocks, group_starts=groups)
        b = make_order(mode, n, 7, 2, block_starts=blocks, group_starts=groups, partitions=1)
        assert np.array_equal(a.indices(pos), b.indices(pos))


def test_shard_windows_mix_exactly_window_shards_and_read_each_shard_in_one_stretch():
    n, window = 6000, 3
    groups = np.arange(0, n, 500)  # 12 shards of 500
    order = make_order("shards", n, 1, 0, group_starts=groups, window=window)
    shard = np.searchsorted(groups, order.indices(np.arange(n)), side="right") - 1
    stretches = shard.reshape(-1, window * 500)
    assert all(len(np.unique(s)) == window for s in stretches)
    assert len(np.unique(stretches[:, 0])) == 4  # each stretch its own shards
    assert set(np.unique(shard).tolist()) == set(range(12))
    first = shard[:64]
    assert len(np.unique(first)) == window  # a batch already mixes the window's shards
    other = make_order("shards", n, 1, 1, group_starts=groups, window=window).indices(np.arange(n))
    assert not np.array_equal(other, order.indices(np.arange(n)))  # a new order each epoch


def _positions_by_rank(plans):
    return [[p.positions(k) for k in range(len(p))] for p in plans]


@pytest.mark.parametrize("nodes, local", [(1, 1), (2, 1), (4, 1), (2, 3), (4, 2)])
@pytest.mark.parametrize("even", ["pad", "drop"])
@pytest.mark.parametrize("drop_last", [False, True])
def test_nodes_take_their_residue_of_each_global_batch(nodes, local, even, drop_last):
    n, batch_size = 1003, 8
    order = _order("full", n, partitions=nodes * 2)
    world = nodes * local
    plans = [EpochPlan(n=n, batch_size=batch_size, order=order, world=_world(r, nodes, local), even=even,
                       drop_last=drop_last) for r in range(world)]
    pos = _positions_by_rank(plans)
    counts = {len(p) for p in pos}
    assert len(counts) == 1
    for k in range(counts.pop()):
        batch = np.concatenate([pos[r][k] for r in range(world)])
        start = plans[0].samples_after(k)
        assert np.array_equal(np.sort(batch), np.arange(start, start + len(batch)))  # one global batch
        for r in range(world):
            assert np.all(pos[r][k] % nodes == r // local)  # a node's residue only
            assert len(pos[r][k]) == len(pos[0][k])
    for r, plan in enumerate(plans):  # batches() agrees with batch(k)
        batches = list(plan.batches())
        for k in range(len(batches)):
            assert np.array_equal(batches[k], plan.batch(k))
    if even == "pad" and not drop_last:
        union = np.concatenate([b for plan in plans for b in plan.batches()])
        assert set(union.tolist()) == set(range(n))


@pytest.mark.parametrize("nodes", [2, 4])
def test_a_node_reads_only_its_partitions(nodes):
    n = 3000
    groups = _shards(n)
    order = _order("full", n, partitions=nodes)
    reads = []
    for node in range(nodes):
        plans = [EpochPlan(n=n, batch_size=16, order=order, world=_world(node * 2 + l, nodes, 2))
                 for l in range(2)]
        records = np.concatenate([b for p in plans for b in p.batches()])
        reads.append(set((np.searchsorted(groups, records, side="right") - 1).tolist()))
    assert sum(map(len, reads)) - len(set().union(*reads)) <= nodes - 1  # boundary shards only


def _global_run(order, n, batch_size, nodes, start=0, stop=None):
    """(position, record) pairs each rank delivered, for global batches [0, stop) from ``start``."""
    plans = [EpochPlan(n=n, batch_size=batch_size, order=order, world=_world(r, nodes, 1), start_sample=start)
             for r in range(nodes)]
    total = len(plans[0]) if stop is None else stop
    pos = np.concatenate([p.positions(k) for k in range(total) for p in plans] or [np.zeros(0, np.int64)])
    rec = np.concatenate([p.batch(k) for k in range(total) for p in plans] or [np.zeros(0, np.int64)])
    return pos, rec, plans[0].samples_after(total)


@pytest.mark.parametrize("old, new", [(4, 2), (4, 1), (2, 4), (4, 3), (3, 4)])
@pytest.mark.parametrize("mode", MODES)
def test_resume_onto_another_node_count_is_exact(old, new, mode):
    n, batch_size = 997, 5
    order = _order(mode, n, partitions=4)
    whole_pos, whole_rec, _ = _global_run(order, n, batch_size, old)
    for stop in (0, 3, 17, 49):
        pos_a, rec_a, done = _global_run(order, n, batch_size, old, stop=stop)
        state = LoaderState.from_dict(LoaderState(seed=3, epoch=1, samples_done=done, batch_size=batch_size,
                                                  world_size=old, shuffle=mode, n=n, partitions=4).to_dict())
        pos_b, rec_b, _ = _global_run(order, n, batch_size, new, start=state.samples_done)
        pos, rec = np.concatenate([pos_a, pos_b]), np.concatenate([rec_a, rec_b])
        real = pos < n
        # every position of the epoch exactly once, each with the record the sequence puts there
        assert np.array_equal(np.sort(pos[real]), np.arange(n))
        assert np.array_equal(rec[real], order.indices(pos[real]))


def test_state_keeps_partitions_and_window():
    state = LoaderState(seed=1, epoch=0, samples_done=5, batch_size=2, world_size=4, shuffle="shards",
                        partitions=4, window=6)
    d = state.to_dict()
    assert d["partitions"] == 4 and d["window"] == 6
    assert LoaderState.from_dict(d) == state
    plain = LoaderState(seed=1, epoch=0, samples_done=5, batch_size=2, world_size=4, shuffle="full").to_dict()
    assert "partitions" not in plain and "window" not in plain
    with pytest.raises(ValueError, match="partitions must be >= 1"):
        LoaderState.from_dict({**d, "partitions": 0})
