"""Run every rank of an epoch plan in lockstep, as the ranks of a job would."""

from __future__ import annotations

from itertools import islice

import numpy as np

from fastload.plan import EpochPlan, World


def rank_plans(world_size: int, **kwargs) -> list[EpochPlan]:
    return [EpochPlan(world=World(r, world_size), **kwargs) for r in range(world_size)]


def delivered(plans: list[EpochPlan], stop: int | None = None) -> np.ndarray:
    """Records of global batches 0..stop-1, in global order: batch by batch, rank by rank."""
    counts = {p.num_batches() for p in plans}
    assert len(counts) == 1, "every rank must produce the same number of batches"
    stop = counts.pop() if stop is None else stop
    # batches() maps a whole chunk at once: far fewer order calls than batch(k) per batch
    per_rank = [list(islice(p.batches(), stop)) for p in plans]
    parts = [per_rank[r][k] for k in range(stop) for r in range(len(plans))]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def sequence(order, n: int, length: int) -> np.ndarray:
    """The first `length` samples of the epoch's global sequence, padding included."""
    return order.indices(np.arange(length) % n) if length else np.zeros(0, dtype=np.int64)
