"""One rank's batches of an epoch: the global sample sequence cut in global batches, by rank.

The global sequence E of an epoch is ``order.indices(p)`` for positions p = 0, 1, ..., n - 1,
then (when ranks are padded to equal parts) repeats of its start. It does not depend on the world
size, so a run stopped after ``start_sample`` samples continues from that position under any world
size. From ``start_sample``, E is cut into global batches of ``batch_size * world_size``
consecutive positions. Within a global batch, node i takes the positions p with p % nodes == i
(a global batch is a multiple of the node count, so every node gets the same number), and the
node's r-th local rank takes the r-th ``batch_size`` run of them. With one node this is rank r
taking the r-th consecutive slice. The residue rule is what lets a partitioned order (one whose
position p reads partition p % partitions, see walk.py) send each node only its own partitions'
samples, whatever the resume point. The last global batch may be partial and is then split the
same way in equal shares (or dropped with ``drop_last``).

The part left after ``start_sample`` is made a multiple of the world size as torch's
DistributedSampler does: ``even="pad"`` repeats samples from the start of the epoch
(drop_last=False there), ``even="drop"`` drops the tail (drop_last=True there); a padded position p >= n
repeats a position of the epoch's start with the same residue modulo the node count, so padding
stays on the node's own partitions. From ``start_sample=0`` the two agree with DistributedSampler on which and how many samples an
epoch delivers; only the assignment to ranks differs (consecutive slices here, interleaved
there), which is what makes the sequence independent of the world size.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .batch_formula import BatchFormula
from .bijection import SMALL
from .orders import FullShuffle, Order, SequentialOrder
from .world import World

EVEN_MODES = ("pad", "drop")
# batches() maps positions through the order for this many samples at once: a call costs
# ~60-100 us of NumPy overhead, as much as a 64-sample batch's whole gather.
_CHUNK_SAMPLES = 1 << 16


@dataclass(frozen=True, kw_only=True)
class EpochPlan:
    """The int64 record indices of each batch one rank produces in an epoch, from a resume point."""

    n: int
    batch_size: int
    world: World = World()
    order: Order
    drop_last: bool = False
    even: str = "pad"
    start_sample: int = 0

    def __post_init__(self) -> None:
        for name, low in (("n", 0), ("batch_size", 1), ("start_sample", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"EpochPlan.{name} must be an int, got {value!r}")
            if value < low:
                raise ValueError(f"EpochPlan.{name} must be >= {low}, got {value}")
            object.__setattr__(self, name, int(value))
        if not isinstance(self.world, World):
            raise TypeError(f"EpochPlan.world must be a World, got {self.world!r}")
        if not isinstance(self.drop_last, bool):
            raise TypeError(f"EpochPlan.drop_last must be a bool, got {self.drop_last!r}")
        if self.even not in EVEN_MODES:
            raise ValueError(f"EpochPlan.even must be 'pad' or 'drop', got {self.even!r}")
        if getattr(self.order, "n", None) != self.n:
            raise ValueError(f"EpochPlan.order covers n={getattr(self.order, 'n', None)} records "
                             f"but the plan has n={self.n}")

    @property
    def end(self) -> int:
        """Global position where the epoch ends: start_sample plus the rest made even over ranks."""
        rest, size = max(self.n - self.start_sample, 0), self.world.world_size
        if self.even == "pad":
            rest = -(-rest // size) * size
        else:
            rest = rest // size * size
        return self.start_sample + rest

    @property
    def global_batch(self) -> int:
        """Samples per global batch: batch_size from each rank."""
        return self.batch_size * self.world.world_size

    def num_batches(self) -> int:
        """Batches this rank produces from start_sample to the end of the epoch."""
        full, tail = divmod(self.end - self.start_sample, self.global_batch)
        return full + (1 if tail and not self.drop_last else 0)

    def __len__(self) -> int:
        return self.num_batches()

    @property
    def _node_offset(self) -> int:
        """From a global batch's first position to this node's first one (the same for every
        global batch: they are multiples of the node count long)."""
        return (self.world.node - self.start_sample) % self.world.nodes

    def positions(self, k: int) -> np.ndarray:
        """Global positions (into the padded sequence) of this rank's k-th batch."""
        self._check_batch(k)
        start = self.start_sample + k * self.global_batch
        share = min(self.end - start, self.global_batch) // self.world.world_size
        nodes = self.world.nodes
        first = start + self._node_offset + nodes * self.world.local_rank * share
        return first + nodes * np.arange(share, dtype=np.int64)

    def batch(self, k: int) -> np.ndarray:
        """int64 record indices of this rank's k-th batch, k counted from start_sample."""
        return self._records(self.positions(k))

    def batches(self, first: int = 0) -> Iterator[np.ndarray]:
        """This rank's batches from the ``first``-th on, mapped through the order in chunks."""
        total = self.num_batches()
        if not 0 <= first <= total:
            raise IndexError(f"first batch {first} is outside [0, {total}]")
        full = (self.end - self.start_sample) // self.global_batch  # batches of batch_size
        per_chunk = max(1, _CHUNK_SAMPLES // self.batch_size)
        for k0 in range(first, min(full, total), per_chunk):
            k1 = min(k0 + per_chunk, full)
            nodes = self.world.nodes
            starts = (self.start_sample + self._node_offset + nodes * self.world.local_rank * self.batch_size
                      + np.arange(k0, k1, dtype=np.int64) * self.global_batch)
            records = self._records((starts[:, None] + nodes * np.arange(self.batch_size)).ravel())
            yield from records.reshape(k1 - k0, self.batch_size)
        if total > max(full, first):  # the last global batch, split in equal shares
            yield self.batch(full)

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.batches()

    def formula(self) -> BatchFormula | None:
        """This rank's full batches as arithmetic (batch_formula.py; the last, partial batch is
        left to :meth:`batch`), or None for orders without one: block, shard and partitioned
        orders, and full shuffles of at most bijection.SMALL records (which rank hashes)."""
        if type(self.order) is FullShuffle and self.n > SMALL:
            keys, low, high = self.order.feistel
        elif type(self.order) is SequentialOrder:
            keys, low, high = None, 0, 0
        else:
            return None
        full = (self.end - self.start_sample) // self.global_batch
        return BatchFormula(count=min(full, self.num_batches()), batch_size=self.batch_size,
                            base=self.start_sample + self._node_offset + self.world.nodes * self.world.local_rank
                            * self.batch_size, global_batch=self.global_batch, nodes=self.world.nodes, n=self.n,
                            pad=self.even == "pad" and self.n > 0, keys=keys, low=low, high=high)

    def samples_after(self, k: int) -> int:
        """Global samples consumed once every rank delivered k batches: LoaderState.samples_done.

        After the last batch this is ``end``, even when drop_last dropped the tail, so a state
        taken at the end of an epoch resumes to nothing under any world size. Before the first
        batch it is ``start_sample``, also when this world has no batch at all (n=11 cut in global
        batches of 12 with drop_last): nothing was delivered, so another world size that can
        make batches must deliver them.
        """
        total = self.num_batches()
        if not 0 <= k <= total:
            raise IndexError(f"k={k} is outside [0, {total}] batches")
        if k == total and k > 0:
            return self.end
        return self.start_sample + k * self.global_batch

    def _records(self, positions: np.ndarray) -> np.ndarray:
        # positions past n are padding: they repeat the epoch's sequence from its start, keeping
        # their residue modulo the node count (with one node: p % n)
        if self.even == "pad" and self.n:
            pad = positions >= self.n
            if pad.any():
                nodes = self.world.nodes
                positions = positions.copy()
                over = positions[pad] - self.n
                positions[pad] = (over - over % nodes + positions[pad] % nodes) % self.n
        return self.order.indices(positions)

    def _check_batch(self, k: int) -> None:
        total = self.num_batches()
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 0 <= k < total:
            raise IndexError(f"batch {k!r} is outside [0, {total})")
