"""``fastload.DataLoader``: torch's DataLoader, with a native fast path for fastload datasets.

It is a subclass of ``torch.utils.data.DataLoader`` with the same arguments, defaults and
attributes, so frameworks that inspect or re-create loaders keep working. For a fastload dataset
with the default collate, batches of indices (from fastload's epoch plan, or from any sampler or
batch sampler given by the user or injected by a framework) are gathered by workers straight into
shared-memory slots and handed over as tensors without a copy. Anything else (another dataset, a
custom ``collate_fn``) runs through torch's own iterator unchanged.

Batch lifetime: tensors of a batch from the fast path are views of a shared-memory slot that is
reused once the next batch is requested. Keep a batch beyond that with :func:`copy_batch` (or any
``.clone()``); model steps that consume a batch before asking for the next need nothing.
"""

from __future__ import annotations

import os
import warnings
from collections import deque
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader as TorchDataLoader

from ..format.dataset import Dataset
from ..opening import open_dataset
from ..plan.epoch import EpochPlan
from ..plan.orders import make_order
from ..plan.state import LoaderState
from ..plan.world import World, detect_world
from ..storage.prefetch import start_prefetch
from ..image.pipeline import loader_pipelines
from .batch_form import in_field_order, torch_entries
from .device import to_device_stream
from .samplers import PlanSampler, uses_plan
from .slots import SlotLayout
from .stats import LoaderStats
from .workers import BatchProducer, ProducedBatch, WorkerConfig

SHUFFLE_MODES = ("none", "block", "full")
WORKER_TYPES = ("process", "thread")
EVEN_MODES = ("pad", "drop")


class DataLoader(TorchDataLoader):
    """Drop-in for ``torch.utils.data.DataLoader``; fast for fastload datasets.

    Extra keyword-only arguments:
    ``seed`` (int; the shuffle seed shared by all ranks, default 0 or the generator's seed),
    ``shuffle`` also takes ``"block"`` (shards and blocks shuffled, samples shuffled within a
    window of blocks: sequential reads) or ``"full"`` (uniform permutation; ``True`` means this),
    ``device`` (e.g. ``"cuda"``: the next batch is copied there on a side stream while the current
    step runs), ``worker_type`` (``"thread"``, the default, or ``"process"``; the native gather
    releases the GIL, and with a 300 us step per batch 2 threads stalled 6% of the time against 8%
    for 2 processes on this project's 2-core machine), ``even`` (``"pad"`` or ``"drop"``:
    how ranks get equal shares, as DistributedSampler's drop_last False/True), ``fields`` (the
    fields to load), ``on_error`` (``"raise"``, or ``"skip"``: a record that cannot be read is
    replaced by the next readable one in dataset order, the same on every run and resume, counted
    in ``stats()["skipped"]``, so batches stay full), ``log_every`` (seconds: log a one-line summary
    of throughput and data stall at most this often, to the ``fastload.loader`` logger at INFO),
    ``transforms`` (``{"image": [RandomResizedCrop(224), RandomHorizontalFlip()]}``: operations of
    :mod:`fastload.image` per image field; the workers decode and transform the field into one batch
    tensor, augmentations keyed by (seed, epoch, record index); see docs/images.md. An image field
    without transforms comes out as a list of its stored bytes).

    A remote dataset's ``cache_limit`` (given to ``fastload.open``) is node-wide: the check at the
    start of an epoch counts only this loader's readers, but every rank, worker and job sharing
    the cache directory counts against the same limit, so it must cover all of them.
    """

    def __init__(self, dataset: Any, batch_size: int | None = 1, shuffle: bool | str | None = None,
                 sampler=None, batch_sampler=None, num_workers: int = 0, collate_fn=None,
                 pin_memory: bool = False, drop_last: bool = False, timeout: float = 0,
                 worker_init_fn=None, multiprocessing_context=None, generator=None, *,
                 prefetch_factor: int | None = None, persistent_workers: bool = False,
                 pin_memory_device: str = "", in_order: bool = True, seed: int | None = None,
                 device: str | torch.device | None = None, worker_type: str = "thread",
                 even: str = "pad", fields: list[str] | None = None, on_error: str = "raise",
                 log_every: float | None = None, transforms: dict | None = None):
        if isinstance(dataset, (str, os.PathLike)):
            dataset = open_dataset(dataset)
        self._pipelines = loader_pipelines(transforms, dataset.schema if isinstance(dataset, Dataset) else None)
        if worker_type not in WORKER_TYPES:
            raise ValueError(f"worker_type must be one of {WORKER_TYPES}, not {worker_type!r}")
        if even not in EVEN_MODES:
            raise ValueError(f"even must be one of {EVEN_MODES}, not {even!r}")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
        fastload_ds = isinstance(dataset, Dataset)
        mode = _shuffle_mode(shuffle) if fastload_ds else None
        own_order = fastload_ds and sampler is None and batch_sampler is None and batch_size is not None
        torch_shuffle = shuffle
        if own_order:
            sampler = PlanSampler(self._plan, mode)
            torch_shuffle = None  # the order lives in the plan sampler
        elif isinstance(shuffle, str):
            torch_shuffle = mode != "none"
        # the plan's inputs exist before torch's __init__, which may call len(sampler)
        self._seed = _seed_from(seed, generator)
        self._epoch = 0
        self._epoch_set = False
        self._resume_samples = 0
        self._delivered = 0
        self._started = False
        self._epoch_done = False
        self._even = even
        self._mode = mode
        self._batch_size_for_plan = batch_size
        self._drop_last_for_plan = drop_last
        self._dataset_for_plan = dataset
        self._block_starts = None
        self._shard_starts = None
        super().__init__(dataset, batch_size, torch_shuffle, sampler, batch_sampler, num_workers, collate_fn,
                         pin_memory, drop_last, timeout, worker_init_fn, multiprocessing_context, generator,
                         prefetch_factor=prefetch_factor, persistent_workers=persistent_workers,
                         pin_memory_device=pin_memory_device, in_order=in_order)
        self.shuffle = shuffle
        self.seed = self._seed
        self.device = device
        self.worker_type = worker_type
        self.even = even
        self.fields = fields
        self.on_error = on_error
        self.transforms = transforms
        self._custom_collate = collate_fn is not None
        if self._pipelines and not self._fast_path():
            raise ValueError("transforms run in fastload's own batching: they need batch_size (or a batch_sampler) "
                             "and no collate_fn")
        self.log_every = log_every
        self._stats = LoaderStats(log_every=log_every)
        self._producer: BatchProducer | None = None

    # -- the plan --------------------------------------------------------------------------
    def _plan(self, start_sample: int | None = None) -> EpochPlan:
        ds = self._dataset_for_plan
        n = len(ds)
        if self._mode == "block" and self._block_starts is None:
            self._block_starts = _block_starts(ds)  # ~1 s for 100,000 shards: once per loader
            self._shard_starts = _shard_starts(ds)
        block = self._mode == "block"
        # "block" walks shard by shard: a remote first batch waits for one shard, and a cache
        # smaller than the dataset holds each shard once per epoch
        order = make_order(self._mode, n, self._seed, self._epoch,
                           block_starts=self._block_starts if block else None,
                           group_starts=self._shard_starts if block else None)
        return EpochPlan(n=n, batch_size=self._batch_size_for_plan, world=_world(), order=order,
                         drop_last=self._drop_last_for_plan, even=self._even,
                         start_sample=self._resume_samples if start_sample is None else start_sample)

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch`` for the next iteration (like DistributedSampler.set_epoch)."""
        self._epoch = int(epoch)
        self._epoch_set = True
        self._resume_samples = 0

    @property
    def epoch(self) -> int:
        return self._epoch

    # -- iteration -------------------------------------------------------------------------
    def _fast_path(self) -> bool:
        return isinstance(self.dataset, Dataset) and not self._custom_collate and self.batch_sampler is not None

    def __iter__(self):
        if not self._fast_path():
            return super().__iter__()
        if self._started and not self._epoch_set:
            self._epoch += 1  # re-iteration starts the next epoch, unless set_epoch chose one
            self._resume_samples = 0
        self._started = True
        self._epoch_set = False
        return self._iterate()

    def _iterate(self) -> Iterator[dict[str, Any]]:
        plan = self._plan() if uses_plan(self.batch_sampler) else None
        self._delivered = 0
        self._epoch_done = False
        if plan is not None:
            batches = plan.batches()
        else:
            batches = (np.asarray(b, dtype=np.int64) for b in self.batch_sampler)
        # remote datasets: shards are downloaded ahead in the plan's order (a no-op for local ones);
        # a cache_limit too small is an error here, before workers start
        prefetch = start_prefetch(self.dataset, plan, num_workers=self.num_workers,
                                  prefetch_factor=self.prefetch_factor or 2)
        producer = self._get_producer()
        sent: deque = deque()  # index arrays in order, for fields decoded here on the GPU
        if any(p.decode.device == "cuda" for p in self._pipelines.values()):
            batches = _recorded(batches, sent)
        batches_out = (self._to_torch(p, sent) for p in producer.run(prefetch.track(batches), epoch=self._epoch))
        if self.device is not None:
            batches_out = to_device_stream(batches_out, self.device)
        elif self.pin_memory:
            batches_out = _pinned(batches_out)
        try:
            for batch in batches_out:
                self._delivered += 1
                if plan is not None:
                    self._resume_samples = plan.samples_after(self._delivered)
                yield batch
            self._resume_samples = 0
            self._epoch_done = True
        finally:
            prefetch.close()
            if not self.persistent_workers:
                self._close_producer()

    def _get_producer(self) -> BatchProducer:
        if self._producer is not None and not self._producer.closed:
            return self._producer  # persistent workers; a producer closed by a worker failure is replaced
        ds = self.dataset
        fields = tuple(self.fields) if self.fields is not None else None
        cpu = {n: p for n, p in self._pipelines.items() if p.decode.device == "cpu"}  # the workers' part
        layout = SlotLayout.for_dataset(ds.schema, self.batch_sampler.batch_size or 1, fields,
                                        {n: (p.dtype, p.shape) for n, p in cpu.items()})
        config = WorkerConfig(dataset_root=str(ds.root), dataset_options=ds.open_options(),
                              fields=fields, layout=layout, ring_name="",
                              worker_init_fn=self.worker_init_fn, seed=self._seed, on_error=self.on_error,
                              transforms=cpu)
        self._producer = BatchProducer(config, num_workers=self.num_workers, worker_type=self.worker_type,
                                       prefetch_factor=self.prefetch_factor or 2, timeout=self.timeout,
                                       mp_context=self.multiprocessing_context, on_error=self.on_error,
                                       stats=self._stats,
                                       # with no workers, read through the loader's own dataset, whose
                                       # verified blocks carry over: later epochs hash nothing again
                                       dataset=ds if self.num_workers == 0 else None)
        return self._producer

    def _close_producer(self) -> None:
        if self._producer is not None:
            self._producer.close()
            self._producer = None

    def close(self) -> None:
        """Stop workers and release shared memory (also done at the end of each epoch, unless
        ``persistent_workers``)."""
        self._close_producer()

    def _to_torch(self, produced: ProducedBatch, sent: deque | None = None) -> dict[str, Any]:
        batch: dict[str, Any] = {name: torch.from_numpy(arr) for name, arr in produced.fixed.items()}
        gpu = {n: p for n, p in self._pipelines.items() if p.decode.device == "cuda"}
        if gpu:  # the whole batch on the GPU (nvJPEG); the workers sent the stored bytes
            from ..image.batch import payload_views
            from ..image.gpu import decode_batch_torch

            indices = sent.popleft()
            for name, pipeline in gpu.items():
                col = produced.var.pop(name)
                batch[name] = decode_batch_torch(pipeline, payload_views(col.data, col.offsets), indices,
                                                 self._seed, self._epoch, self.device or "cuda", field=name,
                                                 locate=self.dataset.locate)
        for name, col in produced.var.items():
            batch.update(torch_entries(self.dataset.schema[name], col))
        return in_field_order(batch, self.fields or self.dataset.schema.names)

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """A small resumable state: restoring it yields exactly the batches not yet delivered."""
        if not isinstance(self.sampler, PlanSampler):
            raise ValueError("state_dict needs fastload's own order (no custom sampler or batch_sampler)")
        done = self._epoch_done and not self._epoch_set  # a finished epoch resumes at the next one
        return LoaderState(seed=self._seed, epoch=self._epoch + done, samples_done=self._resume_samples,
                           batch_size=self._batch_size_for_plan, world_size=_world().world_size,
                           shuffle=self._mode).to_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        st = LoaderState.from_dict(state)
        if st.shuffle != self._mode or st.seed != self._seed:
            raise ValueError(f"state was saved with shuffle={st.shuffle!r}, seed={st.seed}; this loader "
                             f"has shuffle={self._mode!r}, seed={self._seed}")
        self._epoch = st.epoch
        self._epoch_set = True
        self._resume_samples = st.samples_done

    def stats(self) -> dict[str, Any]:
        """Data stall (time waiting for batches), throughput and per-stage times so far."""
        storage = self.dataset.storage_stats() if isinstance(self.dataset, Dataset) else {}
        return {**self._stats.snapshot(), **storage}


def copy_batch(batch: Any) -> Any:
    """A copy of a batch that stays valid after the loader moves on (slots are reused)."""
    if isinstance(batch, torch.Tensor):
        return batch.clone()
    if isinstance(batch, dict):
        return {k: copy_batch(v) for k, v in batch.items()}
    if isinstance(batch, list):
        return [copy_batch(v) for v in batch]
    return batch


def _recorded(batches: Iterator[np.ndarray], sent: deque) -> Iterator[np.ndarray]:
    """Pass index arrays through, keeping them in ``sent`` (batches are delivered in this order)."""
    for b in batches:
        b = np.asarray(b, dtype=np.int64)
        sent.append(b)
        yield b


def _pinned(batches: Iterator[dict]) -> Iterator[dict]:
    if not torch.cuda.is_available():
        warnings.warn("pin_memory=True but no CUDA device is available: batches are not pinned", stacklevel=3)
        yield from batches
        return
    for batch in batches:
        yield {k: (v.pin_memory() if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def _shuffle_mode(shuffle: bool | str | None) -> str:
    if shuffle is None or shuffle is False:
        return "none"
    if shuffle is True:
        return "full"
    if isinstance(shuffle, str) and shuffle in SHUFFLE_MODES:
        return shuffle
    raise ValueError(f"shuffle must be True, False, None or one of {SHUFFLE_MODES}, not {shuffle!r}")


def _seed_from(seed: int | None, generator: torch.Generator | None) -> int:
    if seed is not None:
        return int(seed)
    if generator is not None:
        return int(generator.initial_seed())
    return 0  # shared by every rank, like DistributedSampler's default


def _world() -> World:
    return detect_world()


def _shard_starts(ds: Dataset) -> np.ndarray:
    """First record of every shard (empty shards repeat their successor's start)."""
    m = ds.manifest
    return np.concatenate([[0], np.cumsum(m.shard_records)[:-1]]).astype(np.int64) if m.n_shards else np.zeros(1, np.int64)


def _block_starts(ds: Dataset) -> np.ndarray:
    """Approximate first record of every block, from the manifest alone (no shard is opened)."""
    m = ds.manifest
    if not m.n_shards:
        return np.zeros(1, np.int64)
    blocks = np.maximum(m.shard_blocks, 1)
    shard = np.repeat(np.arange(m.n_shards), blocks)
    first_block = np.concatenate([[0], np.cumsum(blocks)[:-1]])
    k = np.arange(int(blocks.sum())) - first_block[shard]
    shard_start = np.concatenate([[0], np.cumsum(m.shard_records)[:-1]])
    return np.unique(shard_start[shard] + k * m.shard_records[shard] // blocks[shard])
