"""How a loader reads a fastload Dataset: the order its shuffle resolves to, the partitions, and,
for a remote dataset, the cache's side (shards kept mapped, the resident check, the prefetcher,
the I/O forecast, the shuffle report). The plan arithmetic is in plan/, the cache rules in
storage/ (epochs.py, forecast.py); this module applies them to one loader's settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from itertools import islice

from ..format.dataset import Dataset
from ..plan.epoch import EpochPlan
from ..plan.quality import sampled_quality
from ..plan.state import LoaderState
from ..plan.world import World, detect_world, node_rank_note
from ..storage.epochs import AUTO, Layout, Reading, prefetches, rank_plans, resolve
from ..storage.forecast import IOForecast, forecast, node_stream, resident_need
from ..storage.prefetch import start_prefetch

log = logging.getLogger("fastload.loader")

# the resident check at an epoch's start maps this many positions of the node's plan (~0.2 s);
# a longer epoch is checked on its first stretch (docs/storage.md)
CHECK_SAMPLES = 1 << 22
# the warning for shuffle="full" under a small cache replays this many shard opens, then extrapolates
WARN_VISITS = 200_000


@dataclass(frozen=True)
class LoaderSettings:
    """The loader arguments the reading depends on."""

    seed: int
    batch_size: int
    drop_last: bool
    even: str
    num_workers: int
    prefetch_factor: int


def loader_reading(ds, shuffle, mode: str, partitions: int | None, settings: LoaderSettings):
    """The reading of a fastload Dataset (``shuffle=True`` resolves against its cache), else None."""
    if isinstance(ds, Dataset):
        return DatasetReading(ds, AUTO if shuffle is True else mode, partitions, settings)
    if partitions is not None:
        raise ValueError("partitions= splits a fastload Dataset's shards among nodes; this dataset has none")
    return None


class DatasetReading:
    """The reading of one fastload Dataset by one loader: resolved once, kept for the run (a
    loaded state's reading replaces it)."""

    def __init__(self, ds, request: str, partitions: int | None, settings: LoaderSettings):
        if partitions is not None and (isinstance(partitions, bool) or not isinstance(partitions, int)
                                       or partitions < 1):
            raise ValueError(f"partitions must be None (one per node) or an int >= 1, not {partitions!r}")
        self.ds, self.request, self.partitions_arg, self.settings = ds, request, partitions, settings
        self.layout = Layout(ds.manifest)
        cache = getattr(ds.locator, "cache", None)
        self.remote = cache is not None
        self.limit = cache.node.limit if cache is not None else None
        self._reading: Reading | None = None
        self._keep_all: bool | None = None
        self._noted: set[str] = set()
        self._quality: tuple | None = None

    # -- the order -------------------------------------------------------------------------
    @property
    def readers(self) -> int:
        """Readers sharing the node's cache: this loader's, times the node's ranks (assumed alike)."""
        return detect_world().local_world_size * max(self.settings.num_workers, 1)

    def reading(self, epoch: int) -> Reading:
        if self._reading is None:
            world = detect_world()
            partitions = self.partitions_arg if self.partitions_arg is not None else world.nodes
            self._reading, note = resolve(self.request, self.layout, remote=self.remote, limit=self.limit,
                                          readers=self.readers, world=world, partitions=partitions,
                                          seed=self.settings.seed, epoch=epoch)
            if note:
                self._log_once(note, logging.INFO)
            self._check_nodes(world)
        return self._reading

    def plan(self, epoch: int, start_sample: int, world: World) -> EpochPlan:
        s = self.settings
        return rank_plans(self.layout, self.reading(epoch), world, seed=s.seed, epoch=epoch, batch_size=s.batch_size,
                          drop_last=s.drop_last, even=s.even, start_sample=start_sample, ranks=[world.rank])[0]

    def adopt(self, state: LoaderState) -> None:
        """Continue the reading a state was saved with: its mode, window and partitions decide the
        sequence, whatever this loader would have chosen."""
        explicit = self.request if self.request != AUTO else None
        if explicit is not None and state.shuffle != explicit:
            raise ValueError(f"state was saved with shuffle={state.shuffle!r}; this loader has shuffle={explicit!r}")
        if self.request == AUTO and state.shuffle not in ("full", "shards"):
            raise ValueError(f"state was saved with shuffle={state.shuffle!r}; this loader has shuffle=True")
        if self.partitions_arg is not None and self.partitions_arg != state.partitions:
            raise ValueError(f"state was saved with partitions={state.partitions}; this loader was given "
                             f"partitions={self.partitions_arg}: the sequence depends on it, leave partitions=None "
                             "to continue the state's")
        self._reading = Reading(state.shuffle, state.window, state.partitions)
        self._keep_all = None
        self._check_nodes(detect_world())

    def _check_nodes(self, world: World) -> None:
        note = node_rank_note(world)
        if note:
            self._log_once(note)
        p = self._reading.partitions
        if world.nodes > 1 and p % world.nodes:
            from math import gcd

            g = gcd(world.nodes, p)
            self._log_once(f"{world.nodes} nodes do not divide the {p} partitions of this run's order: the sample "
                           f"sequence continues exactly, but each node reads {p // g} of the {p} partitions "
                           f"(1/{g} of the dataset) instead of {p // world.nodes if p >= world.nodes else 1}; "
                           f"a node count dividing {p} reads 1/nodes")

    def _log_once(self, text: str, level: int = logging.WARNING) -> None:
        if text not in self._noted:
            self._noted.add(text)
            log.log(level, "fastload: %s", text)

    # -- the cache's side ------------------------------------------------------------------
    def keep_all(self, epoch: int) -> bool:
        """Whether readers keep every shard mapped: no limit, or the node's share fits it."""
        if self._keep_all is None:
            if self.limit is None:
                self._keep_all = True
            else:
                world = detect_world()
                order = self.layout.order(self.reading(epoch), self.settings.seed, epoch)
                share = int(self.layout.sizes[self.layout.node_shards(order, world)].sum())
                self._keep_all = share <= self.limit
        return self._keep_all

    def worker_options(self, epoch: int) -> dict:
        """Open options that make a worker's dataset keep as many shards mapped as planned."""
        if not self.remote:
            return {}
        keep = "all" if self.keep_all(epoch) else 1
        self.ds.locator.keep_open = keep  # the loader's own dataset reads the same way (no workers)
        return {"keep_open": keep}

    def start(self, plan: EpochPlan, epoch: int):
        """Before an epoch of a remote dataset: refuse a limit below what the readers need (naming
        the smallest that works), warn when shuffle="full" means downloading the data many times,
        and start the prefetcher."""
        s = self.settings
        lag = s.num_workers * s.prefetch_factor + 1
        world = detect_world()
        if not self.remote:
            return start_prefetch(self.ds, None, lag=lag)
        keep_all = self.keep_all(epoch)
        resident = 0
        if not keep_all:
            plans = self._node_plans(epoch, plan.start_sample, world)
            batches = max(64, CHECK_SAMPLES // (s.batch_size * world.local_world_size))
            resident = resident_need(islice(node_stream(plans, self.layout.shard_of), batches), self.layout.sizes,
                                     readers=self.readers, span=lag)
            if self.limit < resident:
                raise ValueError(
                    f"cache_limit {self.limit} bytes is too small for {self.ds.root}: {self.readers} reader(s) on this "
                    f"node ({s.num_workers} worker(s) x {world.local_world_size} rank(s)) hold up to {resident} bytes "
                    f"of shards at once in this plan (one shard each); the smallest limit that works is {resident} "
                    "bytes (more leaves room to prefetch); or use fewer workers")
            if self._reading.mode == "full":
                fc = self.io_plan(epoch, max_visits=WARN_VISITS)
                self._log_once(f"shuffle='full' over {self.ds.root} with cache_limit {self.limit}: each epoch downloads "
                               f"about {fc.multiple:.1f}x the dataset per node ({fc.bytes_per_node / 1e9:.2f} GB, shard hit "
                               f"rate {fc.hit_rate:.0%}); shuffle=True keeps it to about once", logging.WARNING)
        return start_prefetch(self.ds, plan, lag=lag, resident=resident, ranks=world.local_world_size,
                              keep_all=keep_all, fetch=prefetches(self._reading, keep_all))

    def _node_plans(self, epoch: int, start_sample: int, world: World) -> list[EpochPlan]:
        s = self.settings
        return rank_plans(self.layout, self.reading(epoch), world, seed=s.seed, epoch=epoch, batch_size=s.batch_size,
                          drop_last=s.drop_last, even=s.even, start_sample=start_sample)

    def io_plan(self, epoch: int, *, all_nodes: bool = False, max_visits: int | None = None) -> IOForecast:
        """The forecast of one epoch under this loader's settings (this node, or every node)."""
        s = self.settings
        world = detect_world()
        window = self.ds.locator.prefetch_window if self.remote else None
        kwargs = {} if window is None else {"window_shards": window.shards, "configured_window_bytes": window.bytes}
        if max_visits is not None:
            kwargs["max_visits"] = max_visits
        return forecast(self.layout, self.reading(epoch), world, seed=s.seed, epoch=epoch, batch_size=s.batch_size,
                        limit=self.limit, workers=s.num_workers, prefetch_factor=s.prefetch_factor,
                        drop_last=s.drop_last, even=s.even, nodes=None if all_nodes else [world.node], **kwargs)

    def report(self, epoch: int) -> dict:
        """stats()["shuffle"]: the order read, and its quality estimated on this epoch."""
        reading = self.reading(epoch)
        if self._quality is None or self._quality[0] != epoch:
            order = self.layout.order(reading, self.settings.seed, epoch)
            q = sampled_quality(order, self.layout.shard_starts, self.settings.batch_size) if order.n >= 2 else None
            self._quality = (epoch, q)
        q = self._quality[1]
        quality = None if q is None else {
            "displacement": q.displacement, "spearman": q.spearman, "shards_per_batch": q.blocks_per_batch,
            "uniform_shards_per_batch": q.uniform_blocks_per_batch}
        return {"mode": reading.mode, "window_shards": reading.window, "partitions": reading.partitions,
                "quality": quality}
