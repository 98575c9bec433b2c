"""Functions run in child processes by the storage tests (importable by spawned interpreters)."""

from __future__ import annotations

import hashlib
import time

import numpy as np


def read_all(url: str, cache_dir: str, start_at: float = 0.0, group: str | None = None) -> str:
    """Open ``url`` through the cache, wait until ``start_at`` (so processes start together), read
    every record; returns a digest of the data."""
    import fastload

    ds = fastload.open(url, cache_dir=cache_dir, timeout=30, stats_group=group)
    time.sleep(max(0.0, start_at - time.time()))
    batch = ds.get_batch(np.arange(len(ds)))
    h = hashlib.sha256()
    for name in sorted(batch):
        value = batch[name]
        h.update(value.tobytes() if isinstance(value, np.ndarray) else "\x00".join(value).encode())
    return h.hexdigest()
