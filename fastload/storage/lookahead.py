"""What the prefetcher knows of the shards ahead, as pure functions: the first use of each
upcoming shard and the window kept downloaded. The prefetcher runs them on the loader's plan and
the I/O forecast replays them, so both make the same choices."""

from __future__ import annotations

from typing import Iterable

import numpy as np

HORIZON = 4  # next uses are known for this many windows ahead


def first_uses(events: Iterable[tuple[int, np.ndarray]]) -> dict[int, float]:
    """Each upcoming shard's first use, in order of need: the number of the batch that first needs
    it, plus its place among that batch's (ascending) shards over their count, so that Belady's
    rule also tells apart shards needed by one batch (a batch is gathered shard by shard)."""
    uses: dict[int, float] = {}
    for k, shards in events:
        m = len(shards)
        for i, s in enumerate(shards.tolist()):
            if s not in uses:
                uses[s] = k + i / m
    return uses


def horizon_shards(window_shards: int, shard_records: np.ndarray) -> int:
    """How many distinct upcoming shards the prefetcher learns the next use of: HORIZON windows,
    or every shard holding records (never more: a horizon waiting for shards no batch reads
    would pull the whole epoch's batches)."""
    return min(HORIZON * window_shards, int(np.count_nonzero(shard_records)) or 1)


def window_of(uses: dict[int, float], sizes: np.ndarray, max_shards: int, max_bytes: int) -> list[int]:
    """The window: the first shards in order of need, at most ``max_shards`` of them and
    ``max_bytes`` together."""
    window, total = [], 0
    for s in uses:  # dicts keep insertion order: order of first need
        size = int(sizes[s])
        if len(window) >= max_shards or total + size > max_bytes:
            break
        window.append(s)
        total += size
    return window


def window_bytes(configured: int, sizes: np.ndarray, limit: int | None, resident: int, ranks: int = 1) -> int:
    """Bytes one prefetcher's window may hold: what was configured (at least the largest shard),
    and under a limit no more than this rank's part of what the readers' shards leave (the
    ``ranks`` of a node share the cache). 0: no room to prefetch; readers download on demand."""
    largest = int(sizes.max()) if len(sizes) else 0
    budget = max(configured, largest)
    if limit is not None:
        budget = min(budget, max(limit - resident, 0) // ranks)
    return budget
