"""The remote locator a :class:`~fastload.format.dataset.Dataset` reads through: manifest from the
URL, shards from the node cache (downloaded on first use, pinned while mapped)."""

from __future__ import annotations

import secrets
import time
from typing import Any

import numpy as np

from ..errors import StorageError
from ..format.codec import checksum
from ..format.manifest import Manifest
from ..format.spec import MANIFEST_NAME, MAX_MANIFEST_BYTES
from .cache import NOT_WRITABLE, DatasetCache, not_writable
from .node import NodeCache
from .config import CacheConfig, PrefetchWindow
from .counters import read_totals
from .remote import Remote, RetryPolicy, normalise_url

KEEP_OPEN = ("auto", "all")


class RemoteShards:
    """Shards of a dataset at an fsspec URL, read through the node's cache directory.

    ``keep_open``: how many shards a reader (one Dataset) keeps mapped. A mapped shard is pinned:
    never evicted. ``"all"`` keeps every shard it read (what a cache that holds the whole dataset,
    or no limit, allows); an int k keeps the k last and gathers a batch touching more than k
    shards one shard at a time (format/staged.py); ``"auto"`` is ``"all"`` when the dataset fits
    the limit (or there is none) and 1 otherwise. A loader passes its own choice to its workers
    (it knows the node's share of the dataset).
    """

    def __init__(self, url: str, *, storage_options: dict | None = None, cache_dir=None, cache_limit=None,
                 timeout: float = 60.0, retries: int = 5, stats_group: str | None = None,
                 manifest_checksum: str | None = None, prefetch_window: int | str | None = None,
                 keep_open: int | str = "auto"):
        if not (keep_open in KEEP_OPEN or (isinstance(keep_open, int) and not isinstance(keep_open, bool)
                                             and keep_open >= 1)):
            raise ValueError(f"keep_open must be 'auto', 'all' or an int >= 1, not {keep_open!r}")
        self.keep_open = keep_open
        self.root = normalise_url(url)
        self.prefetch_window = PrefetchWindow.parse(prefetch_window)
        self.config = CacheConfig.resolve(cache_dir=cache_dir, cache_limit=cache_limit)
        self.remote = Remote(self.root, storage_options, policy=RetryPolicy(attempts=retries, timeout_s=timeout))
        self.group = stats_group or secrets.token_hex(6)
        self.cache: DatasetCache | None = None
        self.manifest_checksum = manifest_checksum  # the manifest a reopen must find (a worker's)
        self._opened = time.perf_counter()
        self._memory_noted = (0, 0)
        self._usage = (-1.0, 0)  # (when, bytes): the directory scan is reused for a second

    def open(self) -> Manifest:
        data = self.remote.read_bounded(MANIFEST_NAME, MAX_MANIFEST_BYTES)
        found = f"{checksum(data):016x}"
        if self.manifest_checksum is not None and found != self.manifest_checksum:
            # a worker must read exactly the dataset its loader planned batches for
            raise StorageError(f"{self.remote.url_of(MANIFEST_NAME)} changed since the dataset was first "
                               f"opened (manifest checksum {found}, was {self.manifest_checksum}): the "
                               "dataset was rewritten at the same URL during the job; reopen it and start again")
        self.manifest_checksum = found
        self.manifest = Manifest.loads(data, self.remote.url_of(MANIFEST_NAME))
        # the manifest is fetched from the source on every open: a rewritten dataset's shards have
        # new checksums and so new cache names, and a stale copy is never read
        try:
            self.cache = DatasetCache(NodeCache(self.config), self.remote, self.manifest, group=self.group,
                                      wait_timeout=max(10 * self.remote.policy.timeout_s, 60.0))
        except OSError as exc:
            if exc.errno not in NOT_WRITABLE or isinstance(exc, StorageError):
                raise
            raise not_writable(self.config.cache_dir, exc) from exc
        return self.manifest

    @property
    def max_open(self) -> int | None:
        """Shards a Dataset keeps mapped (None: all), from ``keep_open``."""
        if self.keep_open == "all":
            return None
        if self.keep_open == "auto":
            limit = self.config.cache_limit
            return None if limit is None or self.manifest.n_bytes <= limit else 1
        return self.keep_open

    def where(self, name: str) -> str:
        return self.remote.url_of(name)

    def map(self, s: int) -> np.ndarray:
        return self.cache.pin(s)

    def open_options(self) -> dict[str, Any]:
        p = self.remote.policy
        return {"storage_options": dict(self.remote.storage_options), "cache_dir": str(self.config.cache_dir),
                "cache_limit": self.config.cache_limit, "timeout": p.timeout_s, "retries": p.attempts,
                "stats_group": self.group, "manifest_checksum": self.manifest_checksum,
                "prefetch_window": self.prefetch_window.option, "keep_open": self.keep_open}

    def note_memory(self, hits: int, misses: int) -> None:
        # the block cache reports running totals; the counters file is shared by every dataset of
        # this group in the process, so only the increase is added
        h0, m0 = self._memory_noted
        self._memory_noted = (hits, misses)
        self.cache.counters.add(memory_hits=hits - h0, memory_misses=misses - m0)

    def _cache_bytes(self) -> int:
        when, nbytes = self._usage
        if time.monotonic() - when > 1.0:
            self._usage = (time.monotonic(), self.cache.node.usage())
        return self._usage[1]

    def stats(self) -> dict[str, Any]:
        """This dataset's counters, summed over every process that opened it with the same group."""
        c = read_totals(self.cache.dir / "counters", self.group)
        node = self.cache.node
        return {"storage": {
            "bytes_downloaded": int(c["bytes_downloaded"]),
            # per download stream: bytes over the seconds spent downloading (streams overlap)
            "download_mb_per_s": c["bytes_downloaded"] / c["download_s"] / 1e6 if c["download_s"] else 0.0,
            "download_s": c["download_s"],
            "disk_hits": int(c["hits"]), "disk_misses": int(c["misses"]),
            "memory_hits": int(c["memory_hits"]), "memory_misses": int(c["memory_misses"]),
            "wait_s": c["wait_s"],
            "evictions": int(c["evictions"]),
            "cache_bytes": self._cache_bytes(),
            "cache_limit": node.limit,
        }}
