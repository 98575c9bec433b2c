"""What a node reads of a remote dataset in an epoch: the order a shuffle request resolves to
under the cache, the partitions, and the order's inputs taken from the manifest (nothing opened).

Shared by the loader and ``fastload cache plan``, so the forecast replays exactly the plan the
loader runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..plan.epoch import EpochPlan
from ..plan.orders import Order, make_order
from ..plan.walk import WindowedWalk
from ..plan.world import World

AUTO = "auto"  # shuffle=True: the best order the cache allows
REQUESTS = (AUTO, "full", "block", "none")
MODES = ("full", "block", "shards", "none")


@dataclass(frozen=True)
class Reading:
    """What decides an epoch's sequence besides seed and epoch (a loader state carries it)."""

    mode: str  # "full", "block", "shards" or "none"
    window: int | None = None  # shards per window of "shards"
    partitions: int = 1

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"Reading.mode must be one of {MODES}, not {self.mode!r}")
        if (self.mode == "shards") != (self.window is not None):
            raise ValueError("a window (shards per window) goes with mode 'shards' and only with it")
        if not isinstance(self.partitions, int) or self.partitions < 1:
            raise ValueError(f"partitions must be an int >= 1, not {self.partitions!r}")


class Layout:
    """The manifest's shards as the plan needs them: record starts, block starts, sizes."""

    def __init__(self, manifest):
        self.manifest = manifest
        self.sizes = np.asarray(manifest.shard_bytes, dtype=np.int64)
        records = np.asarray(manifest.shard_records, dtype=np.int64)
        self.n = int(records.sum())
        self.record_starts = np.zeros(len(records) + 1, dtype=np.int64)  # with the end: for shard_of
        np.cumsum(records, out=self.record_starts[1:])
        self._blocks: np.ndarray | None = None

    @property
    def n_bytes(self) -> int:
        return int(self.sizes.sum())

    @property
    def shard_starts(self) -> np.ndarray:
        """First record of every shard (empty shards repeat their successor's start)."""
        return self.record_starts[:-1] if len(self.sizes) else np.zeros(1, np.int64)

    @property
    def block_starts(self) -> np.ndarray:
        """Approximate first record of every block, from the manifest alone (~1 s for 100,000
        shards: computed once)."""
        if self._blocks is None:
            m = self.manifest
            if not m.n_shards:
                self._blocks = np.zeros(1, np.int64)
            else:
                blocks = np.maximum(m.shard_blocks, 1)
                shard = np.repeat(np.arange(m.n_shards), blocks)
                first_block = np.concatenate([[0], np.cumsum(blocks)[:-1]])
                k = np.arange(int(blocks.sum())) - first_block[shard]
                self._blocks = np.unique(self.shard_starts[shard] + k * m.shard_records[shard] // blocks[shard])
        return self._blocks

    def shard_of(self, indices: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.record_starts, indices, side="right") - 1

    def order(self, reading: Reading, seed: int, epoch: int) -> Order:
        """The epoch's order; "block" and "shards" walk shard by shard."""
        block = reading.mode == "block"
        shards = reading.mode in ("block", "shards") or reading.partitions > 1
        return make_order(reading.mode, self.n, seed, epoch, block_starts=self.block_starts if block else None,
                          window=reading.window or 8, group_starts=self.shard_starts if shards else None,
                          partitions=reading.partitions)

    def node_shards(self, order: Order, world: World) -> np.ndarray:
        """The shards ``world``'s node reads in the epoch of ``order`` (bool per shard). A node
        takes the positions p % nodes == node; with P partitions those read the partitions
        j % gcd(nodes, P) == node % gcd(nodes, P): its own ones when nodes divides P."""
        read = np.zeros(len(self.sizes), dtype=bool)
        if not isinstance(order, WindowedWalk) or order.partitions == 1 or world.nodes == 1:
            read[np.asarray(self.manifest.shard_records) > 0] = True
            return read
        g = math.gcd(world.nodes, order.partitions)
        mine = [j for j in range(order.partitions) if j % g == world.node % g]
        read[self.shard_of(order.stretch_sources(mine))] = True
        return read


def prefetches(reading: Reading, keep_all: bool) -> bool:
    """Whether a prefetcher runs. Not for a uniform shuffle of more than the cache holds: each
    batch needs nearly every shard of the node, more than the cache can stage ahead, so readers
    download on demand (in Belady's order from the plan, which the forecast replays exactly;
    downloads racing with the readers would make the figure depend on timing)."""
    return keep_all or reading.mode != "full"


def shard_window(limit: int, sizes: np.ndarray, readers: int) -> int:
    """Shards per window of the "shards" order under ``limit``: the cache holds the window being
    read, the next one arriving, and a shard per reader straddling the two (so the link keeps
    busy across window boundaries): 2 w + readers shards of the largest size."""
    capacity = int(limit // max(int(sizes.max()), 1)) if len(sizes) else 1
    return max(1, min((capacity - readers) // 2, len(sizes)))


def resolve(request: str, layout: Layout, *, remote: bool, limit: int | None, readers: int, world: World,
            partitions: int, seed: int, epoch: int) -> tuple[Reading, str | None]:
    """The reading a shuffle request gets, and a note to log once when "auto" did not give the
    uniform shuffle. "auto" is the uniform shuffle for a local dataset, one with no cache limit,
    or one whose node share fits the limit; else the "shards" order with the largest window the
    cache and the node's ``readers`` allow."""
    if request not in REQUESTS:
        raise ValueError(f"shuffle must be one of {REQUESTS}, not {request!r}")
    if request != AUTO:
        return Reading(request, None, partitions), None
    full = Reading("full", None, partitions)
    if not remote or limit is None:
        return full, None
    share = int(layout.sizes[layout.node_shards(layout.order(full, seed, epoch), world)].sum())
    if share <= limit:
        return full, None
    window = shard_window(limit, layout.sizes, readers)
    note = (f"shuffle=True: this node reads {share} bytes, more than cache_limit {limit}, so shards come in a "
            f"random order and samples are shuffled within windows of {window} shards (what the cache holds "
            "while the next window downloads); shuffle='full' keeps the uniform shuffle at the cost of "
            "downloading shards many times (see loader.io_plan())")
    return Reading("shards", window, partitions), note


def rank_plans(layout: Layout, reading: Reading, world: World, *, seed: int, epoch: int, batch_size: int,
               drop_last: bool = False, even: str = "pad", start_sample: int = 0,
               ranks: list[int] | None = None) -> list[EpochPlan]:
    """The plans of the given ranks (default: every rank of ``world``'s node)."""
    order = layout.order(reading, seed, epoch)
    if ranks is None:
        first = world.node * world.local_world_size
        ranks = list(range(first, first + world.local_world_size))
    return [EpochPlan(n=layout.n, batch_size=batch_size, order=order, drop_last=drop_last, even=even,
                      start_sample=start_sample, world=World(r, world.world_size, world.local_world_size))
            for r in ranks]
