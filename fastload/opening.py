"""``fastload.open``: a URL to a :class:`~fastload.format.dataset.Dataset`, local or remote.

It sits above both ``format`` (which knows only locators) and ``storage`` (which provides the
remote one), so neither imports the other upward.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

from .format.dataset import Dataset
from .storage.locator import RemoteShards


def open_dataset(url: str | os.PathLike, *, verify: str = "first", block_cache: int | str = "64MB",
                 storage_options: dict | None = None, cache_dir: str | os.PathLike | None = None,
                 cache_limit: int | str | None = None, timeout: float = 60.0, retries: int = 5,
                 stats_group: str | None = None, manifest_checksum: str | None = None,
                 prefetch_window: int | str | None = None, keep_open: int | str = "auto") -> Dataset:
    """Open a dataset: a local directory (read in place, never copied) or any fsspec URL.

    Remote datasets (``s3://``, ``gs://``, ``https://``, ...) are read through the node's shard
    cache (:mod:`fastload.storage`): ``storage_options`` go to the fsspec filesystem;
    ``cache_dir`` and ``cache_limit`` (e.g. ``"200GB"``) default to ``FASTLOAD_CACHE_DIR`` /
    ``FASTLOAD_CACHE_LIMIT``, the config file, then ``~/.cache/fastload`` with no limit. The limit
    is node-wide: every rank, worker and job sharing the cache directory counts against it, so set
    it for all of them. Each request gets ``timeout`` seconds and ``retries`` attempts.
    ``prefetch_window`` bounds how far a loader downloads ahead of its slowest reader: a number of
    shards (int) or a size (``"4GB"``); default 16 shards or 2 GB, whichever comes first, and never
    more than the cache limit leaves.
    ``stats_group``, ``manifest_checksum`` and ``keep_open`` are internal: the loader's workers
    reopen the dataset with them so their counters add up, they read the manifest the loader
    planned with, and they keep as many shards mapped as the loader's plan allows
    (:class:`~fastload.storage.locator.RemoteShards`).
    """
    text = os.fspath(url)
    scheme = text.split("://", 1)[0].lower() if "://" in text else "file"
    if scheme == "file":
        if storage_options:
            raise ValueError(f"storage_options apply to remote URLs; {text} is a local dataset")
        if prefetch_window is not None:
            raise ValueError(f"prefetch_window applies to remote URLs; {text} is a local dataset")
        if keep_open != "auto":
            raise ValueError(f"keep_open applies to remote URLs; {text} is a local dataset")
        return Dataset(text.split("://", 1)[-1], verify=verify, block_cache=block_cache)
    locator = RemoteShards(text, storage_options=storage_options, cache_dir=cache_dir, cache_limit=cache_limit,
                           timeout=timeout, retries=retries, stats_group=stats_group,
                           manifest_checksum=manifest_checksum, prefetch_window=prefetch_window,
                           keep_open=keep_open)
    return Dataset(text, verify=verify, block_cache=block_cache, locator=locator)


@dataclass(frozen=True)
class Reopen:
    """How another process opens its own copy of a dataset: a module-level factory and its
    keyword arguments, all picklable (a worker calls :meth:`open`)."""

    factory: Callable[..., Any]
    kwargs: dict

    def open(self) -> Any:
        return self.factory(**self.kwargs)


def reopen_spec(ds: Any) -> Reopen:
    """The :class:`Reopen` of an open dataset: a fastload Dataset (its URL and open options), or
    any dataset that provides ``reopen_spec()`` (packed sequences, mixtures)."""
    if isinstance(ds, Dataset):
        return Reopen(open_dataset, {"url": str(ds.root), **ds.open_options()})
    spec = getattr(ds, "reopen_spec", None)
    if spec is None:
        raise TypeError(f"cannot reopen a {type(ds).__name__} in another process: it is not a fastload dataset")
    return spec()
