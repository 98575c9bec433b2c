"""Pack a Dask DataFrame or Bag with one Dask task per partition: ``fastload.pack(collection, out)``.

The tasks run on the scheduler in use (threads, processes, or a ``distributed`` cluster): each
encodes its partition into shards and publishes them as they are finished; the calling process
writes the manifest once every task succeeded, and removes what they wrote when one failed, so
a failed pack leaves no dataset. Partition ``i`` writes shards ``shard-{i:06d}-*.fls``, so a
fixed partitioning gives the same bytes whatever the number of workers. See
:mod:`fastload.pack.distributed` for the protocol.
"""

from __future__ import annotations

import os
import time
from functools import partial
from typing import Any

try:
    import dask
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError('fastload.dask needs Dask: pip install "fastload[dask]"') from exc

from .pack import distributed
from .pack.distributed import PartitionPlan, write_partition
from .pack.report import PackReport


def pack_collection(collection: Any, out: str | os.PathLike, *, overwrite: bool = False,
                    metadata: dict | None = None, scheduler: Any = None, **options: Any) -> PackReport:
    """Pack every partition of a Dask DataFrame (pandas partitions) or Bag (lists of dict
    records) into ``out``; ``scheduler`` is passed to ``dask.compute`` (default: the one in use).
    The other options are those of :func:`fastload.pack`; ``uploads`` and ``staging_limit``
    apply per task."""
    started = time.perf_counter()
    plan = PartitionPlan.make(out, **options)
    distributed.start(plan, overwrite)
    parts = collection.to_delayed()
    write = dask.delayed(partial(write_partition, plan), pure=False)
    tasks = [write(i, part, dask_key_name=f"fastload-write-{i}-{os.urandom(4).hex()}") for i, part in enumerate(parts)]
    try:
        results = list(dask.compute(*tasks, scheduler=scheduler))
        manifest = distributed.commit(plan, results, metadata)
    except BaseException:
        distributed.discard(plan)
        raise
    return distributed.report(plan, f"dask {type(collection).__name__} ({len(parts)} partitions)", results,
                              manifest, time.perf_counter() - started, _workers())


def _workers() -> int:
    try:
        from distributed import default_client

        return len(default_client().nthreads())
    except (ImportError, ValueError):
        return 1
