"""The I/O of an epoch, known before its first byte: the plan replayed against the cache's rules.

The order of an epoch is a pure function of its settings, so what a node downloads under a cache
limit can be computed rather than measured: walk the node's batches, let a model prefetcher keep
its window (:mod:`.lookahead`, the functions the real one runs) and the readers pin each batch's
shards in the order the gather visits them (format/staged.py), and evict with
:func:`~fastload.storage.eviction.choose_victims` whenever a download needs room. The model
assumes the prefetcher is always ahead (its window downloaded before the readers need it), which
is what it strives for; the moto tests check the figure against the bytes really downloaded.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from ..format.staged import visit_order
from .eviction import Entry, choose_victims
from .lookahead import first_uses, horizon_shards, window_bytes, window_of
MAX_VISITS = 4_000_000  # shard visits replayed before the rest of the epoch is extrapolated


@dataclass(frozen=True)
class Replay:
    """One node's epoch replayed (``batches`` of ``total_batches``; the figures are scaled to the
    whole epoch when the replay stopped early)."""

    bytes_fetched: int
    opens: int  # shards mapped by readers
    fetches: int  # downloads (readers' and the prefetcher's)
    peak_bytes: int
    batches: int
    total_batches: int
    stuck: bool  # a reader found no room: the limit is below what the readers hold at once

    @property
    def hit_rate(self) -> float:
        """Shard opens that needed no download: 1 - downloads / opens (whoever downloaded)."""
        return 1.0 - self.fetches / self.opens if self.opens else 1.0

    @property
    def complete(self) -> bool:
        return self.batches == self.total_batches


def node_stream(plans, shard_of) -> Iterator[list[np.ndarray]]:
    """The node's global batches: per batch number, each local rank's batch as its unique shards."""
    for batches in zip(*(p.batches() for p in plans)):
        yield [np.unique(shard_of(b)) for b in batches]


def resident_need(stream: Iterable[list[np.ndarray]], sizes: np.ndarray, *, readers: int, span: int) -> int:
    """The smallest limit under which the readers never wait on each other: over every run of
    ``span`` consecutive batch numbers (the batches that can be in progress at once), the bytes of
    the ``readers`` largest distinct shards they touch (a reader holds one shard at a time)."""
    ceiling = int(np.sort(sizes)[::-1][:readers].sum()) if len(sizes) else 0
    recent: deque[list[np.ndarray]] = deque()
    counts: Counter[int] = Counter()
    need = 0
    for batch in stream:
        recent.append(batch)
        for shards in batch:
            counts.update(shards.tolist())
        if len(recent) > span:
            for shards in recent.popleft():
                counts.subtract(shards.tolist())
            counts = +counts  # drops the shards no longer touched
        touched = np.fromiter(counts, dtype=np.int64, count=len(counts))
        need = max(need, int(np.sort(sizes[touched])[::-1][:readers].sum()))
        if need >= ceiling:
            break
    return need


class _Cache:
    """The node cache as the model sees it: cached shards, their last use, the readers' pins."""

    def __init__(self, sizes: np.ndarray, limit: int | None):
        self.sizes, self.limit = sizes, limit
        self.last_use: dict[int, int] = {}
        self.used = self.peak = self.fetched = self.fetches = self.clock = 0

    def fetch(self, s: int, pinned: set[int], protected: set[int], next_use: dict[int, float]) -> bool:
        size = int(self.sizes[s])
        need = self.used + size - self.limit if self.limit is not None else 0
        if need > 0:
            entries = [Entry(key=t, size=int(self.sizes[t]), in_use=t in pinned, protected=t in protected,
                             next_use=next_use.get(t), last_use=u) for t, u in self.last_use.items()]
            victims = choose_victims(entries, need)
            if not victims:
                return False
            for v in victims:
                del self.last_use[v.key]
                self.used -= v.size
        self.touch(s)
        self.used += size
        self.fetched += size
        self.fetches += 1
        self.peak = max(self.peak, self.used)
        return True

    def touch(self, s: int) -> None:
        self.clock += 1
        self.last_use[s] = self.clock


class _Horizon:
    """Each rank's upcoming batches, pulled until every rank knows ``target`` distinct shards
    ahead (or 65,536 batches), as the prefetcher pulls them."""

    def __init__(self, stream: Iterable[list[np.ndarray]], target: int):
        self._it, self.target = iter(stream), target
        self.batches: deque[list[np.ndarray]] = deque()
        self._counts: list[Counter[int]] = []

    def fill(self) -> None:
        while len(self.batches) < 1 << 16 and (not self._counts or min(map(len, self._counts)) < self.target):
            batch = next(self._it, None)
            if batch is None:
                return
            if not self._counts:
                self._counts = [Counter() for _ in batch]
            for counts, shards in zip(self._counts, batch):
                counts.update(shards.tolist())
            self.batches.append(batch)

    def pop(self) -> None:
        for counts, shards in zip(self._counts, self.batches.popleft()):
            for s in shards.tolist():
                counts[s] -= 1
                if not counts[s]:
                    del counts[s]


def replay(stream: Iterable[list[np.ndarray]], sizes: np.ndarray, shard_records: np.ndarray, *,
           limit: int | None, total_batches: int, keep_all: bool, window_shards: int, window_max_bytes: int,
           workers: int = 1, max_visits: int = MAX_VISITS) -> Replay:
    """Replay a node's batches (:func:`node_stream`) against the cache's rules; see the module doc.

    ``keep_all``: readers keep every shard they opened (a node share that fits the limit), else
    one at a time; ``window_max_bytes``: one rank's prefetch window (:func:`.lookahead.window_bytes`);
    ``workers``: each rank's readers, batch k going to reader k % workers (as the loader sends it).
    A reader starting a batch that does not read the shard it holds releases it at once (the
    gather's first step), before the prefetcher's downloads for that batch look for room.
    """
    cache = _Cache(sizes, limit)
    horizon = _Horizon(stream, horizon_shards(window_shards, shard_records))
    held: list[set[int]] = []
    windows: list[list[int]] = []
    uses: dict[int, float] = {}
    last_sets = None
    opens = k = 0
    stuck = False
    while not stuck and opens < max_visits:
        horizon.fill()
        if not horizon.batches:
            break
        batch = horizon.batches[0]
        held = held or [set() for _ in range(len(batch) * workers)]
        readers = [r * workers + k % workers for r in range(len(batch))]
        if not keep_all:
            for r, shards in zip(readers, batch):
                held[r] &= set(shards.tolist())
        sets = [frozenset(b.tolist()) for b in batch]
        if sets != last_sets:  # the window only moves when the batch's shards change
            rank_uses = [first_uses((j, a[r]) for j, a in enumerate(horizon.batches)) for r in range(len(batch))]
            windows = [window_of(u, sizes, window_shards, window_max_bytes) for u in rank_uses]
            uses = {}
            for u in rank_uses:
                for s, v in u.items():
                    uses[s] = min(v, uses.get(s, v))
            last_sets = sets
        protected = set().union(*windows)
        for window in windows:  # the prefetchers, assumed ahead: their windows downloaded
            for s in window:
                if s not in cache.last_use:
                    cache.fetch(s, set().union(*held), protected, uses)
        for r, shards in zip(readers, batch):
            for s in visit_order(shards, held[r]):
                if s in held[r]:
                    continue  # still mapped from the reader's last batch: no open
                held[r] = held[r] | {s} if keep_all else {s}
                opens += 1
                if s in cache.last_use:
                    cache.touch(s)
                elif not cache.fetch(s, set().union(*held) - {s}, protected, uses):
                    stuck = True
                    break
            if stuck:
                break
        else:
            horizon.pop()
            k += 1
    scale = total_batches / k if 0 < k < total_batches and not stuck else 1.0
    return Replay(bytes_fetched=round(cache.fetched * scale), opens=round(opens * scale),
                  fetches=round(cache.fetches * scale),
                  peak_bytes=cache.peak, batches=k, total_batches=total_batches, stuck=stuck)


@dataclass(frozen=True)
class IOForecast:
    """What an epoch will download, per node, under ``limit`` (:func:`forecast`)."""

    mode: str
    window: int | None
    partitions: int
    nodes: int
    dataset_bytes: int
    limit: int | None
    node_bytes: tuple[int, ...]  # per node replayed: bytes downloaded in the epoch
    hit_rate: float  # shard opens that needed no download (1 - downloads / opens), over the nodes replayed
    peak_bytes: int  # the most the cache holds at once (largest over the nodes)
    min_limit: int  # the smallest cache_limit under which the readers never wait on each other
    replayed: float  # fraction of the epoch replayed; below 1 the figures are extrapolated
    stuck: bool = False  # the replay found a reader with no room: the limit is below min_limit

    @property
    def bytes_per_node(self) -> float:
        return sum(self.node_bytes) / len(self.node_bytes) if self.node_bytes else 0.0

    @property
    def multiple(self) -> float:
        """Bytes per node per epoch over the dataset's bytes (1/nodes when nothing is read twice)."""
        return self.bytes_per_node / self.dataset_bytes if self.dataset_bytes else 0.0

    @property
    def workable(self) -> bool:
        return not self.stuck and (self.limit is None or self.limit >= self.min_limit)

    def to_dict(self) -> dict:
        return {"mode": self.mode, "window": self.window, "partitions": self.partitions, "nodes": self.nodes,
                "dataset_bytes": self.dataset_bytes, "limit": self.limit, "node_bytes": list(self.node_bytes),
                "bytes_per_node": self.bytes_per_node, "multiple": self.multiple, "hit_rate": self.hit_rate,
                "peak_bytes": self.peak_bytes, "min_limit": self.min_limit, "replayed": self.replayed,
                "workable": self.workable}


def forecast(layout, reading, world, *, seed: int, epoch: int, batch_size: int, limit: int | None, workers: int,
             prefetch_factor: int = 2, drop_last: bool = False, even: str = "pad", window_shards: int = 16,
             configured_window_bytes: int = 2 << 30, nodes: list[int] | None = None,
             max_visits: int = MAX_VISITS) -> IOForecast:
    """Replay one epoch per node (``nodes``: which ones; default all) of the plan the loader runs
    with these settings (``layout``/``reading`` from :mod:`.epochs`, ``world`` any rank's world)."""
    from .epochs import prefetches, rank_plans
    from ..plan.world import World

    L = world.local_world_size
    readers = L * max(workers, 1)
    span = max(workers, 1) * prefetch_factor + 1
    chosen = range(world.nodes) if nodes is None else nodes
    node_bytes, opens, fetches, peak, need, done, total, stuck = [], 0, 0, 0, 0, 0, 0, False
    for node in chosen:
        node_world = World(node * L, world.world_size, L)
        plans = rank_plans(layout, reading, node_world, seed=seed, epoch=epoch, batch_size=batch_size,
                           drop_last=drop_last, even=even)
        share = int(layout.sizes[layout.node_shards(plans[0].order, node_world)].sum())
        keep_all = limit is None or share <= limit
        resident = resident_need(node_stream(plans, layout.shard_of), layout.sizes, readers=readers, span=span)
        budget = window_bytes(configured_window_bytes, layout.sizes, None if keep_all else limit,
                              resident, ranks=L) if prefetches(reading, keep_all) else 0
        r = replay(node_stream(plans, layout.shard_of), layout.sizes, layout.manifest.shard_records, limit=limit,
                   keep_all=keep_all, workers=max(workers, 1),
                   total_batches=plans[0].num_batches(), window_shards=window_shards, window_max_bytes=budget,
                   max_visits=max_visits)
        node_bytes.append(r.bytes_fetched)
        opens, fetches, peak = opens + r.opens, fetches + r.fetches, max(peak, r.peak_bytes)
        need = max(need, resident)
        stuck = stuck or r.stuck
        done, total = done + r.batches, total + r.total_batches
    return IOForecast(mode=reading.mode, window=reading.window, partitions=reading.partitions, nodes=world.nodes,
                      dataset_bytes=layout.n_bytes, limit=limit, node_bytes=tuple(node_bytes),
                      hit_rate=1.0 - fetches / opens if opens else 1.0, peak_bytes=peak, min_limit=need,
                      replayed=done / total if total else 1.0, stuck=stuck)
