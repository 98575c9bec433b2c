"""Functions run in child processes by the storage tests (importable by spawned interpreters)."""

from __future__ import annotations

import hashlib
import os
import threading
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


def node_epoch(url: str, storage_options: dict, cache_dir: str, node: int, nodes: int, *, shuffle, batch_size: int,
               seed: int = 5, save_at: int | None = None, state: dict | None = None) -> dict:
    """One simulated node (one rank, its own cache directory) reading an epoch of ``url``; with
    ``save_at``, it also returns its state after that many batches (and how many records it had
    read then); with ``state``, it resumes."""
    import logging
    import os

    os.environ.update(RANK=str(node), WORLD_SIZE=str(nodes), LOCAL_WORLD_SIZE="1", GROUP_RANK=str(node))
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    logging.getLogger("fastload").addHandler(Keep())
    import fastload

    ds = fastload.open(url, storage_options=storage_options, cache_dir=cache_dir)
    loader = fastload.DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=0, seed=seed)
    forecast = None
    if state is not None:
        loader.load_state_dict(state)
    else:
        forecast = loader.io_plan().node_bytes[0]
    ids, saved, read_then = [], None, None
    for k, batch in enumerate(loader, 1):
        ids.append(batch["id"].numpy().copy())
        if k == save_at:
            saved, read_then = loader.state_dict(), sum(map(len, ids))
    return {"ids": np.concatenate(ids) if ids else np.zeros(0, np.int64), "read_then": read_then,
            "bytes": loader.stats()["storage"]["bytes_downloaded"], "forecast": forecast, "state": saved,
            "shuffle": loader.stats()["shuffle"], "log": [r.getMessage() for r in records]}


class CachePeak:
    """Samples the bytes in the node's cache directory while a loader runs, under the cache's own
    accounting lock (outside it, a scan racing an eviction and the next download counts both)."""

    def __init__(self, node):
        self.node, self.peak, self._stop = node, 0, threading.Event()
        self._thread = threading.Thread(target=self._sample)
        self._thread.start()

    def _sample(self):
        while not self._stop.is_set():
            sizes = {}  # by inode: a download renamed into place during the scan shows under both names
            with self.node.locked():  # a worker forked meanwhile closes its copy (storage.locks)
                for e in self.node.files():
                    try:
                        st = e.stat()
                    except FileNotFoundError:
                        continue
                    sizes[st.st_ino] = st.st_size
            self.peak = max(self.peak, sum(sizes.values()))
            time.sleep(0.05)  # the readers poll this lock every 20 ms: leave them room to take it

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak
