"""Pack a Ray Dataset with Ray's own write tasks: ``Datasink``, or ``fastload.pack(ray_dataset, out)``.

Each write task encodes its blocks into shards and publishes them (a rename, or uploads in
background threads) as they are finished; the driver writes the manifest in
``on_write_complete``, after every task succeeded, and ``on_write_failed`` removes what the tasks
wrote, so a failed write leaves no dataset. Shards are numbered by write task, and a task's
number follows Ray's block order when the dataset preserves order (``fastload.pack`` sets
``preserve_order`` for its write): the same dataset and partitioning give the same bytes,
whatever the number of workers. See :mod:`fastload.pack.distributed` for the protocol.
"""

from __future__ import annotations

import os
import time
import warnings
from typing import Any

try:
    import ray
    from ray.data import Datasink as _RayDatasink
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError('fastload.ray needs Ray Data: pip install "fastload[ray]"') from exc

from .pack import distributed
from .pack.distributed import PartitionPlan, TableStream, write_partition
from .pack.report import PackReport


class Datasink(_RayDatasink):
    """``ray_dataset.write_datasink(fastload.ray.Datasink(out, schema=..., shard_size=...))``.

    ``out`` is a local directory every worker can reach or any fsspec URL (``s3://bucket/ds``).
    ``schema`` is a full schema, type overrides (``"tokens:uint16[2049]"``) or None (each task
    infers it from its rows; the driver checks that all agree). The other options are those of
    :func:`fastload.pack`; ``uploads`` and ``staging_limit`` apply per write task. After the
    write, ``manifest`` and ``results`` (one :class:`PartitionResult` per task) are set.
    """

    def __init__(self, out: str | os.PathLike, *, schema: Any = None, shard_size: int | str = "256MB",
                 block_size: int | str = "1MB", compression: str = "none", level: int = 3,
                 on_error: str = "raise", overwrite: bool = False, metadata: dict | None = None,
                 storage_options: dict | None = None, timeout: float = 60.0, retries: int = 5,
                 staging_dir: str | os.PathLike | None = None, staging_limit: int | str = "2GB",
                 uploads: int = 2):
        self.plan = PartitionPlan.make(out, schema=schema, shard_size=shard_size, block_size=block_size,
                                       compression=compression, level=level, on_error=on_error,
                                       storage_options=storage_options, timeout=timeout, retries=retries,
                                       staging_dir=staging_dir, staging_limit=staging_limit, uploads=uploads)
        self.overwrite = overwrite
        self.metadata = dict(metadata or {})
        self.manifest = None
        self.results: list = []
        self._started = False  # on_write_failed cleans up only after start() cleared the output

    def on_write_start(self, *args, **kwargs) -> None:
        if not ray.data.DataContext.get_current().execution_options.preserve_order:
            warnings.warn("the Ray DataContext does not preserve order: shards follow the order in which "
                          "blocks reach the write tasks, which may change between runs; set "
                          "DataContext.get_current().execution_options.preserve_order = True, or use "
                          "fastload.pack(dataset, out)", stacklevel=2)
        distributed.start(self.plan, self.overwrite)
        self._started = True

    def write(self, blocks, ctx) -> distributed.PartitionResult:
        return write_partition(self.plan, ctx.task_idx, TableStream(blocks, f"ray write task {ctx.task_idx}"))

    def on_write_complete(self, write_result) -> None:
        self.results = [r for r in write_result.write_returns if r is not None]
        self.manifest = distributed.commit(self.plan, self.results, self.metadata)

    def on_write_failed(self, error: Exception) -> None:
        if self._started:
            distributed.discard(self.plan)

    def get_name(self) -> str:
        return "FastloadWrite"


def pack_dataset(dataset: Any, out: str | os.PathLike, *, concurrency: int | None = None,
                 ray_remote_args: dict | None = None, **options: Any) -> PackReport:
    """``fastload.pack(ray_dataset, out, ...)``: write through :class:`Datasink` in Ray's block order."""
    started = time.perf_counter()
    sink = Datasink(out, **options)
    context = ray.data.DataContext.get_current()
    before = context.execution_options.preserve_order
    context.execution_options.preserve_order = True  # task numbers follow block order
    try:
        dataset.write_datasink(sink, concurrency=concurrency, ray_remote_args=ray_remote_args)
    finally:
        context.execution_options.preserve_order = before
    workers = int(ray.cluster_resources().get("CPU", 1))
    return distributed.report(sink.plan, f"ray dataset ({len(sink.results)} write tasks)", sink.results,
                              sink.manifest, time.perf_counter() - started, workers)
