"""The plan's full batches computed in C (csrc/keyed_order.h) against EpochPlan.batches, bit for bit.

The loader's C threads compute a full shuffle's batches from their number; the order, resume and
ranks of the loader rest on these being exactly the plan's, for every size, batch size, world,
node layout, resume point and padding mode. Also the documented formula (plan/batch_formula.py)
evaluated with NumPy, and the refusals of bad arguments.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fastload._gather_pool import GatherPool
from fastload.plan.bijection import SMALL, permute
from fastload.plan.epoch import EpochPlan
from fastload.plan.orders import make_order
from fastload.plan.world import World

pytestmark = pytest.mark.timeout(60)


def plans():
    grid = itertools.product([SMALL + 1, 100, 1031], [1, 7, 64], ["full", "none"], [(1, 1), (2, 1), (6, 2), (4, 4)],
                             [0, 5, 77], ["pad", "drop"])
    big = [(100_003, 64, "full", (1, 1), 12_345, "pad"), (1 << 20, 256, "full", (8, 2), 0, "drop")]
    for n, batch_size, mode, (world_size, nodes), start, even in itertools.chain(grid, big):
        for rank in range(world_size):
            world = World(rank=rank, world_size=world_size, local_world_size=world_size // nodes)
            yield EpochPlan(n=n, batch_size=batch_size, world=world, order=make_order(mode, n, 99 + rank, 3),
                            even=even, start_sample=start)


def c_batches(pool: GatherPool, plan: EpochPlan) -> list[np.ndarray]:
    f = plan.formula()
    pool.set_order(f.count, f.batch_size, f.base, f.global_batch, f.nodes, f.n, f.pad, f.keys, f.low, f.high)
    out = []
    for k in range(f.count):
        batch = np.empty(f.batch_size, dtype=np.int64)
        pool.order_batch(k, batch)
        out.append(batch)
    return out


def numpy_batches(plan: EpochPlan) -> list[np.ndarray]:
    """The formula as the module doc states it, in NumPy."""
    f = plan.formula()
    p = f.base + f.global_batch * np.arange(f.count)[:, None] + f.nodes * np.arange(f.batch_size)[None, :]
    if f.pad:
        over = p - f.n
        p = np.where(p >= f.n, (over - over % f.nodes + p % f.nodes) % f.n, p)
    if f.keys is None:
        return list(p)
    flat = permute(p.ravel().astype(np.uint64), np.uint64(f.n), np.uint64(f.low), np.uint64(f.high), f.keys)
    return list(flat.astype(np.int64).reshape(p.shape))


def test_c_batches_are_the_plans_bit_for_bit():
    pool = GatherPool(1, 2, 256)
    try:
        checked = 0
        for plan in plans():
            want = list(plan.batches())
            f = plan.formula()
            assert f is not None and len(want) - f.count in (0, 1)  # at most the partial last batch is left
            for got in (c_batches(pool, plan), numpy_batches(plan)):
                assert len(got) == f.count
                for k, (g, w) in enumerate(zip(got, want)):
                    np.testing.assert_array_equal(g, w, err_msg=f"{plan} batch {k}")
            checked += f.count
        assert checked > 10_000
    finally:
        pool.close()


def test_orders_without_a_formula():
    assert EpochPlan(n=SMALL, batch_size=4, order=make_order("full", SMALL, 1, 0)).formula() is None  # ranks hashes
    assert EpochPlan(n=5000, batch_size=4, order=make_order("block", 5000, 1, 0)).formula() is None
    assert EpochPlan(n=5000, batch_size=4, order=make_order("full", 5000, 1, 0, partitions=2)).formula() is None


def test_bad_orders_and_batch_numbers_are_refused():
    pool = GatherPool(1, 2, 8)
    plan = EpochPlan(n=100, batch_size=8, order=make_order("full", 100, 1, 0))
    f = plan.formula()
    args = [f.count, f.batch_size, f.base, f.global_batch, f.nodes, f.n, f.pad, f.keys, f.low, f.high]
    try:
        with pytest.raises(RuntimeError, match="no order"):
            pool.order_batch(0, np.empty(8, np.int64))
        for i, bad in ((1, 9), (3, 0), (4, 0), (7, f.keys[:4]), (7, f.keys.astype(np.int32)), (8, 1)):
            with pytest.raises((ValueError, TypeError)):
                pool.set_order(*args[:i], bad, *args[i + 1:])
        pool.set_order(*args)
        with pytest.raises(IndexError, match="outside"):
            pool.order_batch(f.count, np.empty(8, np.int64))
        with pytest.raises(ValueError, match="batch_size"):
            pool.order_batch(0, np.empty(7, np.int64))
        with pytest.raises(RuntimeError, match="before configure"):
            pool.submit_batch(0, 0)
    finally:
        pool.close()
