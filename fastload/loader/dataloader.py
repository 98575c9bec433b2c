"""``fastload.DataLoader``: torch's DataLoader, with a native fast path for fastload datasets.

It is a subclass of ``torch.utils.data.DataLoader`` with the same arguments, defaults and
attributes, so frameworks that inspect or re-create loaders keep working. For a fastload dataset,
batches of indices (from fastload's epoch plan, or from any sampler or batch sampler given by the
user or injected by a framework) are gathered by workers straight into shared-memory slots and
handed over as tensors without a copy; a custom ``collate_fn`` runs in the workers on the
gathered rows. Other datasets run through torch's own iterator, in fastload's order when no
sampler is given. Every path has the same epochs (``set_epoch`` on the loader, its sampler or
its batch sampler) and an exact ``state_dict``.

Batch lifetime: tensors of a batch from the fast path are views of a shared-memory slot that is
reused once the next batch is requested. Keep a batch beyond that with :func:`copy_batch` (or any
``.clone()``); model steps that consume a batch before asking for the next need nothing.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader as TorchDataLoader
from torch.utils.data import IterableDataset

from ..format.dataset import Dataset
from ..opening import open_dataset
from ..plan.cursor import EpochCursor
from ..plan.epoch import EpochPlan
from ..plan.orders import make_order
from ..plan.state import LoaderState, state_from_dict
from ..plan.world import detect_world
from ..storage.prefetch import start_prefetch
from ..image.pipeline import loader_pipelines
from .buffers import normalise_strings, with_arenas
from .collate import FastloadCollate, normalise_pad, to_torch
from . import datasets as lm
from .device import pinned, to_device_stream
from .iterable import IterableOrder
from .reading import LoaderSettings, loader_reading
from .resume import InjectedOrder
from .samplers import PlanBatchSampler, PlanSampler, largest_batch, log_offset, uses_plan
from .slots import SlotLayout
from .stats import LoaderStats
from .transport import ARENA_BYTES, ARENA_FIELD
from .workers import BatchProducer, ProducedBatch, WorkerConfig

log = logging.getLogger("fastload.loader")

SHUFFLE_MODES = ("none", "block", "full")
WORKER_TYPES = ("process", "thread")
EVEN_MODES = ("pad", "drop")


class DataLoader(TorchDataLoader):
    """Drop-in for ``torch.utils.data.DataLoader``; fast for fastload datasets.

    Extra keyword-only arguments:
    ``seed`` (int; the shuffle seed shared by all ranks, default 0 or the generator's seed),
    ``shuffle`` also takes ``"block"`` (shards and blocks shuffled, samples shuffled within a
    window of blocks: sequential reads) or ``"full"`` (uniform at any size); ``True`` is uniform
    unless a remote dataset's node share exceeds its cache: then shard windows (docs/storage.md),
    ``partitions`` (each epoch's shards in this many canonical partitions, so each node reads only
    its own; default one per node; resumes onto any node count are exact),
    ``device`` (e.g. ``"cuda"``: the next batch is copied there on a side stream while the current
    step runs), ``worker_type`` (``"thread"`` or ``"process"``; by default threads, which the
    native gather and the image kernels suit (they release the GIL), and processes where a user's ``collate_fn`` runs,
    as torch runs it: it holds the GIL, and 2 processes ran a padding collate 1.1-1.4x as fast as
    2 threads on 2 free cores, bench/collate.py), ``even``
    (``"pad"`` or ``"drop"``: how ranks get equal shares, as DistributedSampler's drop_last
    False/True), ``fields`` (the fields to load), ``pad`` (``{"tokens": 0}`` or
    ``{"tokens": fastload.Pad(length=512, multiple=64, mask="attention_mask")}``: variable-length
    numeric fields padded in the workers, with a mask; see :class:`~fastload.loader.collate.Pad`),
    ``strings`` (``"buffers"`` or
    ``{"text": "buffers"}``: a str/bytes field as ``batch["text"]``, its rows' bytes back to back
    (uint8), and ``batch["text.offsets"]``, views of the slot; :mod:`fastload.loader.buffers`),
    ``on_error`` (``"raise"``, or ``"skip"``: a record that cannot be read is
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
                 device: str | torch.device | None = None, worker_type: str | None = None,
                 even: str = "pad", fields: list[str] | None = None, pad: dict | None = None,
                 on_error: str = "raise", log_every: float | None = None, transforms: dict | None = None,
                 partitions: int | None = None, strings: str | dict = "list"):
        if isinstance(dataset, (str, os.PathLike)):
            dataset = open_dataset(dataset)
        fastload_ds = lm.is_native(dataset)  # fastload datasets, packed sequences, mixtures
        iterable = isinstance(dataset, IterableDataset)
        schema = dataset.schema if fastload_ds else None
        self._pipelines = loader_pipelines(transforms, schema)
        custom_collate = collate_fn is not None and not isinstance(collate_fn, FastloadCollate)
        if worker_type is None:  # torch's placement of a collate_fn: in worker processes (it holds the GIL)
            worker_type = "process" if custom_collate and num_workers else "thread"
        if worker_type not in WORKER_TYPES:
            raise ValueError(f"worker_type must be one of {WORKER_TYPES}, not {worker_type!r}")
        if even not in EVEN_MODES:
            raise ValueError(f"even must be one of {EVEN_MODES}, not {even!r}")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
        if (pad or strings != "list") and custom_collate:
            raise ValueError("pad= and strings= make the default batch; with a collate_fn, do it inside it")
        if custom_collate and device is not None:
            raise ValueError("device= moves the default batch; with a collate_fn, move the batch in your step")
        self._pads, self._strings = normalise_pad(pad, schema, fields), normalise_strings(strings, schema, fields)
        mode = None if iterable else _shuffle_mode(shuffle)
        own_order = not iterable and sampler is None and batch_sampler is None
        self._cursor = EpochCursor()
        torch_shuffle = shuffle
        if own_order:
            sampler = PlanSampler(self._make_plan, mode, self._cursor, self.state_dict, self.load_state_dict,
                                  notice=self._note_rebuilt)
            torch_shuffle = None  # the order lives in the plan sampler
        elif isinstance(shuffle, str):
            torch_shuffle = mode != "none"
        if fastload_ds and not custom_collate:  # what a framework that rebuilds the loader collates with
            collate_fn = FastloadCollate(schema, fields, self._pads, self._strings)
        # the plan's inputs exist before torch's __init__, which may call len(sampler)
        self._seed = _seed_from(seed, generator)
        self._even = even
        self._mode = mode
        self._batch_size_for_plan = batch_size or 1
        self._drop_last_for_plan = drop_last
        self._dataset_for_plan = dataset
        # a fastload Dataset's order: shuffle=True resolves against the cache, partitions per node
        self._reading = loader_reading(dataset if not iterable else None, shuffle, mode, partitions, LoaderSettings(
            seed=self._seed, batch_size=batch_size or 1, drop_last=drop_last, even=even,
            num_workers=num_workers, prefetch_factor=prefetch_factor or 2))
        self._rebase = None  # (epoch, (position, drawn)): a mixture resumed with new weights
        self._sources = lm.SourceCounter(dataset)
        self._injected: InjectedOrder | None = None
        self._rebuilt_noted = False
        super().__init__(dataset, batch_size, torch_shuffle, sampler, batch_sampler, num_workers, collate_fn,
                         pin_memory, drop_last, timeout, worker_init_fn, multiprocessing_context, generator,
                         prefetch_factor=prefetch_factor, persistent_workers=persistent_workers,
                         pin_memory_device=pin_memory_device, in_order=in_order)
        if own_order and self.batch_sampler is not None:
            # torch built BatchSampler(sampler, batch_size, drop_last); ours is the same with set_epoch
            # and state_dict. Passed to torch's __init__ it would set batch_size to None (frameworks
            # read it), and torch's __setattr__ refuses batch_sampler afterwards.
            object.__setattr__(self, "batch_sampler", PlanBatchSampler(self.sampler, batch_size, drop_last))
        if not own_order and not iterable:
            self._injected = InjectedOrder(self.batch_sampler if self.batch_sampler is not None else self.sampler)
        self._iterable = IterableOrder() if iterable else None
        self.shuffle, self.seed = shuffle, self._seed
        self.device, self.worker_type, self.even = device, worker_type, even
        self.fields = fields
        self.pad, self.strings = pad, strings
        self.on_error = on_error
        self.transforms = transforms
        self._custom_collate = custom_collate
        if self._pipelines and (not self._native() or custom_collate):
            raise ValueError("transforms run in fastload's own batching: they need batch_size (or a batch_sampler) "
                             "and no collate_fn")
        self.log_every = log_every
        self._stats = LoaderStats(log_every=log_every)
        self._producer: BatchProducer | None = None

    # -- the plan --------------------------------------------------------------------------
    def _make_plan(self, epoch: int, start_sample: int = 0) -> EpochPlan:
        ds = self._dataset_for_plan
        rebase = self._rebase[1] if self._rebase is not None and self._rebase[0] == epoch else None
        own = lm.epoch_order(ds, self._mode, self._seed, epoch, rebase)  # a mixture's, or None
        if own is not None:
            return EpochPlan(n=own.n, batch_size=self._batch_size_for_plan, world=detect_world(), order=own,
                             drop_last=self._drop_last_for_plan, even=self._even, start_sample=start_sample)
        if self._reading is not None:
            return self._reading.plan(epoch, start_sample, detect_world())
        n = len(ds)
        order = make_order(self._mode, n, self._seed, epoch)
        return EpochPlan(n=n, batch_size=self._batch_size_for_plan, world=detect_world(), order=order,
                         drop_last=self._drop_last_for_plan, even=self._even, start_sample=start_sample)

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch`` for the next iteration (like DistributedSampler.set_epoch); after
        ``load_state_dict``, the loaded position is kept (see :mod:`fastload.plan.cursor`)."""
        if self._injected is not None:
            self._injected.set_epoch(epoch)
        elif self._iterable is not None:
            self._iterable.set_epoch(epoch)
        else:
            self._cursor.set_epoch(epoch)

    @property
    def epoch(self) -> int:
        if self._injected is not None:
            return self._injected.epoch
        if self._iterable is not None:
            return self._iterable.epoch
        return self._cursor.epoch

    @property
    def _index_sampler(self):
        # torch's iterator draws indices from here: through the injected order's record when the
        # loader follows a sampler it was given (state and fast-forward), else as torch does
        base = self.batch_sampler if self._auto_collation else self.sampler
        injected = self.__dict__.get("_injected")
        return base if injected is None else _Drawn(injected, base)

    def _note_rebuilt(self) -> None:
        if not self._rebuilt_noted and lm.is_native(self.dataset):
            self._rebuilt_noted = True
            log.warning("fastload: this loader's batches are drawn by another DataLoader (accelerate.prepare or "
                        "a rebuilt loader): the data is right, but fastload's shared-memory workers are bypassed. "
                        "To keep them, pass the fastload.DataLoader to the training loop as it is (for the HF "
                        "Trainer, return it from get_train_dataloader); prepare only the model and optimizer.")

    # -- iteration -------------------------------------------------------------------------
    def _native(self) -> bool:
        return lm.is_native(self.dataset) and self.batch_sampler is not None

    def __iter__(self):
        log_offset(self._cursor)
        if self._native():  # torch's iterator draws its base seed first: the user's RNG stream stays torch's
            torch.empty((), dtype=torch.int64).random_(generator=self.generator)
            return self._iterate()
        if self._iterable is not None:
            return self._iterable.iterate(self, super().__iter__)
        if self._injected is not None:
            return self._counted(super().__iter__())
        return self._iterate_torch()

    def _iterate_torch(self) -> Iterator[Any]:
        """A map-style dataset in fastload's order, batched by torch's iterator; the position
        follows the batches delivered, not those the workers prefetched."""
        epoch, start = self._cursor.begin(claim=True)
        plan = self._make_plan(epoch, start)
        total = plan.num_batches()
        for k, batch in enumerate(super().__iter__(), 1):
            self._cursor.advance(plan.samples_after(k)) if k < total else self._cursor.finish()
            yield batch

    def _counted(self, it) -> Iterator[Any]:
        for batch in it:
            self._injected.delivered()
            yield batch
        self._injected.ended()

    def _iterate(self) -> Iterator[dict[str, Any]]:
        own = uses_plan(self.batch_sampler)
        if own:
            epoch, start = self._cursor.begin()
            plan = self._make_plan(epoch, start)
            total = plan.num_batches()
            batches = plan.batches()
        else:
            plan = None
            batches = (np.asarray(b, dtype=np.int64) for b in self._injected.batches())
            epoch = self._injected.epoch
        # remote datasets: shards are downloaded ahead in the plan's order (a no-op for local ones);
        # a cache_limit too small is an error here, before workers start
        if self._reading is not None and plan is not None:
            prefetch = self._reading.start(plan, epoch)
        else:
            prefetch = start_prefetch(self.dataset, None, lag=1)
        drawn = batches
        batches = self._sources.counted(batches)  # per-source counts of a mixture (else a no-op)
        producer = self._get_producer()
        sent: deque = deque()  # index arrays in order, for fields decoded here on the GPU
        if any(p.decode.device == "cuda" for p in self._pipelines.values()):
            batches = _recorded(batches, sent)
        batches = prefetch.track(batches)
        # own: may be drawn ahead; and, where nothing wraps the plan's batches, computed by C threads
        produced = producer.run(batches, epoch=epoch, pure=own, plan=plan if own and batches is drawn else None)
        if self._custom_collate:  # the result as the worker made it (a process's is rebuilt by the producer)
            batches_out = (p.collated for p in produced)
        else:
            batches_out = map(self._converter(sent, epoch), produced)
        if self.device is not None:
            batches_out = to_device_stream(batches_out, self.device)
        elif self.pin_memory:
            batches_out = pinned(batches_out)
        cursor = self._cursor
        if own:  # plan.samples_after(k) for every k < total, without its checks on each batch
            first, step = plan.samples_after(0), plan.global_batch
        try:
            for k, batch in enumerate(batches_out, 1):
                if own:
                    cursor.advance(first + k * step) if k < total else cursor.finish()
                else:
                    self._injected.delivered()
                yield batch
            if not own:
                self._injected.ended()
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
        batch_size = largest_batch(self.batch_sampler)
        if self._custom_collate:  # the slot holds the result's bytes, for process workers
            room = ARENA_BYTES if self.num_workers and self.worker_type == "process" else 1
            layout = SlotLayout(batch_size, ((ARENA_FIELD, "|u1", (-(-room // batch_size),)),))
        else:
            layout = with_arenas(SlotLayout.for_dataset(ds.schema, batch_size, fields, {n: (p.dtype, p.shape)
                                                        for n, p in cpu.items()}), ds, fields)
        root, options, spec = lm.worker_spec(ds)
        if self._reading is not None:  # a remote dataset's workers keep as many shards mapped as planned
            options = {**options, **self._reading.worker_options(self._cursor.epoch)}
        config = WorkerConfig(dataset_root=root, dataset_options=options, dataset_spec=spec,
                              fields=fields, layout=layout, ring_name="",
                              worker_init_fn=self.worker_init_fn, seed=self._seed, on_error=self.on_error,
                              transforms=cpu, collate_fn=self.collate_fn if self._custom_collate else None,
                              pad=self._pads)
        self._producer = BatchProducer(config, num_workers=self.num_workers, worker_type=self.worker_type,
                                       prefetch_factor=self.prefetch_factor or 2, timeout=self.timeout,
                                       mp_context=self.multiprocessing_context, on_error=self.on_error,
                                       stats=self._stats,
                                       # no workers, or C threads: read through the loader's own dataset, whose
                                       # verified blocks carry over: later epochs hash nothing again
                                       dataset=lm.worker_dataset(ds) if self.num_workers == 0 or
                                       self.worker_type == "thread" else None)
        return self._producer

    def _close_producer(self) -> None:
        if self._producer is not None:
            self._producer.close()
            self._producer = None

    def close(self) -> None:
        """Stop workers and release shared memory (also done at the end of each epoch, unless
        ``persistent_workers``)."""
        self._close_producer()

    def _converter(self, sent: deque, epoch: int) -> Callable[[ProducedBatch], dict[str, Any]]:
        """What turns a produced batch into the user's, with everything that does not change
        between batches worked out once (the consumer's whole cost per batch is a few us)."""
        ds, pads, strings = self.dataset, self._pads, self._strings
        schema = ds.schema
        names = self.fields or schema.names
        gpu = {n: p for n, p in self._pipelines.items() if p.decode.device == "cuda"}
        if not gpu:
            if not lm.has_finish(ds):
                return lambda produced: to_torch(schema, produced.fixed, produced.var, names, pads, strings)
            return lambda p: lm.finish_torch(ds, to_torch(schema, p.fixed, p.var, names, pads, strings))
        # the whole batch on the GPU (nvJPEG); the workers sent the stored bytes
        from ..image.batch import payload_views
        from ..image.gpu import decode_batch_torch

        rest = [n for n in names if n not in gpu]

        def convert(produced: ProducedBatch) -> dict[str, Any]:
            indices = sent.popleft()
            decoded = {}
            for name, pipeline in gpu.items():
                col = produced.var.pop(name)
                decoded[name] = decode_batch_torch(pipeline, payload_views(col.data, col.offsets), indices,
                                                   self._seed, epoch, self.device or "cuda", field=name,
                                                   locate=ds.locate)
            batch = to_torch(schema, produced.fixed, produced.var, rest, pads, strings)
            batch.update(decoded)
            return lm.finish_torch(ds, {name: batch[name] for name in names})

        return convert

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """A small resumable state: restoring it yields exactly the batches not yet delivered.

        Plain ints and strings for fastload's own order; for a sampler the loader was given, the
        sampler's own state (or what replays its order); for an iterable dataset, its state per
        worker (or the counts to skip). It survives pickle and ``torch.load(weights_only=True)``.
        """
        if self._iterable is not None:
            return self._iterable.state().to_dict()
        if self._injected is not None:
            return self._injected.state().to_dict()
        epoch, done = self._cursor.position()
        ds = self._dataset_for_plan
        order = self._make_plan(epoch).order if lm.is_mixture(ds) else None  # the epoch's, rebased or not
        reading = self._reading.reading(epoch) if self._reading is not None else None
        state = LoaderState(seed=self._seed, epoch=epoch, samples_done=done,
                            batch_size=self._batch_size_for_plan, world_size=detect_world().world_size,
                            shuffle=self._mode if reading is None else reading.mode,
                            n=len(ds) if order is None else order.n,
                            partitions=1 if reading is None else reading.partitions,
                            window=None if reading is None else reading.window).to_dict()
        return {**state, **lm.dataset_state(ds, order, done)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if isinstance(state, dict) and lm.MIXTURE_KEY in state:  # a mixture's counters, beside the loader's state
            state = dict(state)
            mixture = state.pop(lm.MIXTURE_KEY)
        else:
            mixture = None
        st = state_from_dict(state)
        if self._iterable is not None:
            return self._iterable.load(st)
        if self._injected is not None:
            if not hasattr(st, "kind"):
                raise ValueError("the state was saved by a loader in fastload's own order; this one follows "
                                 f"the sampler {type(self._injected.index_sampler).__name__}")
            return self._injected.load(st)
        if not isinstance(st, LoaderState):
            raise ValueError(f"the state was saved by a loader following a {st.kind}; this one uses fastload's "
                             "own order (no sampler given)")
        if st.seed != self._seed:
            raise ValueError(f"state was saved with seed={st.seed}; this loader has seed={self._seed}")
        if self._reading is not None:
            self._reading.adopt(st)  # the state's order (mode, window, partitions) continues
        elif st.shuffle != self._mode or st.partitions != 1:
            raise ValueError(f"state was saved with shuffle={st.shuffle!r}, partitions={st.partitions}; this "
                             f"loader has shuffle={self._mode!r}, one partition")
        rebase = lm.resume_rebase(self._dataset_for_plan, mixture, st.samples_done)
        # a mixture checks its own sources; new weights change the epoch's length
        mixed = lm.is_mixture(self._dataset_for_plan)
        st.check_resumable(n=st.n if mixed else len(self._dataset_for_plan), shuffle=st.shuffle)
        self._rebase = None if rebase is None else (st.epoch, rebase)
        self._cursor.load(st.epoch, st.samples_done)

    def stats(self) -> dict[str, Any]:
        """Data stall (time waiting for batches), throughput and per-stage times so far; for a
        fastload dataset the order read (``"shuffle"``: mode, shard window, partitions, and its
        quality estimated on the current epoch), and a remote one's cache counters."""
        storage = self.dataset.storage_stats() if isinstance(self.dataset, Dataset) else {}
        shuffle = {"shuffle": self._reading.report(self._cursor.epoch)} if self._reading is not None else {}
        return {**self._stats.snapshot(), **storage, **shuffle, **self._sources.snapshot()}

    def io_plan(self, epoch: int | None = None, *, all_nodes: bool = False):
        """What an epoch (default: the current one) will download under the cache limit, before its
        first byte: an :class:`~fastload.storage.forecast.IOForecast` (bytes per node, multiple of
        the dataset, hit rate, peak, smallest workable limit) for this node, or every node's."""
        if self._reading is None:
            raise TypeError("io_plan() forecasts a fastload Dataset's reads; this loader reads another dataset")
        return self._reading.io_plan(self._cursor.epoch if epoch is None else epoch, all_nodes=all_nodes)


class _Drawn:
    """A sampler seen through an :class:`InjectedOrder`: iterating it records (and resumes) the position."""

    def __init__(self, order: InjectedOrder, base):
        self._order, self._base = order, base

    def __iter__(self):
        return self._order.batches()

    def __len__(self) -> int:
        return len(self._base)

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

