"""torch Sampler faces of fastload's epoch plans, so frameworks see the Samplers they expect.

The loader reads batches straight from the plan as index arrays; :class:`PlanSampler` and
:class:`PlanBatchSampler` give code that inspects, iterates or re-wraps ``loader.sampler`` /
``loader.batch_sampler`` (Lightning, Accelerate, torchdata's StatefulDataLoader) the same order,
with ``set_epoch`` and ``state_dict``/``load_state_dict`` on each. All of them share the loader's
:class:`~fastload.plan.cursor.EpochCursor`, so whichever one a framework calls, the loader
follows.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterator

import numpy as np
from torch.utils.data import BatchSampler, Sampler

from ..plan.cursor import EpochCursor
from ..plan.epoch import EpochPlan

MakePlan = Callable[[int, int], EpochPlan]  # (epoch, start_sample) -> that iteration's plan
log = logging.getLogger("fastload.loader")


def largest_batch(batch_sampler) -> int:
    """The most indices a batch of ``batch_sampler`` holds, which sizes the loader's slots: its
    ``batch_size`` (torch's BatchSampler and fastload's), else the longest batch of a list of
    lists, which torch's DataLoader accepts as a batch_sampler too."""
    size = getattr(batch_sampler, "batch_size", None)
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool) and size > 0:
        return int(size)
    if isinstance(batch_sampler, (list, tuple)):
        return max((len(b) for b in batch_sampler), default=1) or 1
    raise ValueError(f"batch_sampler {type(batch_sampler).__name__} has no batch_size: fastload sizes its "
                     "batch buffers from it; give it a batch_size attribute (the most indices a batch holds), "
                     "or pass a list of index lists")


def log_offset(cursor: EpochCursor) -> None:
    """Say once that set_epoch numbers now count from a loaded state's epoch (see plan/cursor.py)."""
    if cursor.offset_note:
        log.warning("fastload: %s", cursor.offset_note)
        cursor.offset_note = None


class PlanSampler(Sampler[int]):
    """Yields this rank's record indices for an epoch, in the order the loader reads them."""

    def __init__(self, make_plan: MakePlan, shuffle: str, cursor: EpochCursor, state: Callable[[], dict],
                 load: Callable[[dict], None], notice: Callable[[], None] = lambda: None):
        self._make_plan = make_plan
        self.notice = notice  # called when another loader draws the batches (the loader logs it once)
        self.cursor = cursor
        self.mode = shuffle
        self.shuffle = shuffle != "none"  # what frameworks look for to tell a shuffled loader
        self._state, self._load = state, load

    def plan(self, epoch: int | None = None, start: int = 0) -> EpochPlan:
        return self._make_plan(self.cursor.epoch if epoch is None else epoch, start)

    def __iter__(self) -> Iterator[int]:
        for batch in _drawn(self):
            yield from batch.tolist()

    def __len__(self) -> int:
        plan = self.plan()
        n = plan.num_batches()
        return 0 if n == 0 else (n - 1) * plan.batch_size + len(plan.batch(n - 1))

    def set_epoch(self, epoch: int) -> None:
        """Run epoch ``epoch`` next (what Lightning and Accelerate call before every epoch)."""
        self.cursor.set_epoch(epoch)

    def state_dict(self) -> dict:
        return self._state()

    def load_state_dict(self, state: dict) -> None:
        self._load(state)


class PlanBatchSampler(BatchSampler):
    """torch's BatchSampler over a :class:`PlanSampler`, stateful: the loader's own batch sampler.

    Iterated by the loader's own iteration, it only hands out the plan; iterated by another
    loader (a framework's rebuilt one), it also moves the shared position, one batch per batch
    drawn, so that loader's ``state_dict`` (torchdata's, Accelerate's) holds an exact position.
    """

    sampler: PlanSampler

    def __iter__(self) -> Iterator[list[int]]:
        plan = self.sampler.plan()
        if plan.batch_size != self.batch_size or plan.drop_last != self.drop_last:
            yield from super().__iter__()  # someone changed our settings: group the sampler's indices
            return
        for batch in _drawn(self.sampler, count=True):
            yield batch.tolist()

    def __len__(self) -> int:
        return self.sampler.plan().num_batches()

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def state_dict(self) -> dict:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state)


def _drawn(sampler: PlanSampler, count: bool = False) -> Iterator[np.ndarray]:
    """The plan's batches for the iteration now starting (or joined); with ``count``, the shared
    position follows the batches drawn, unless the loader's own iteration counts deliveries."""
    cursor = sampler.cursor
    joined = cursor.claimed
    log_offset(cursor)
    epoch, start = cursor.begin()
    plan = sampler.plan(epoch, start)
    counting = count and not joined
    if counting:
        sampler.notice()
    total = plan.num_batches()
    for k, batch in enumerate(plan.batches(), 1):
        if counting:  # before the hand-out: a state taken once the batch is out counts it
            cursor.advance(plan.samples_after(k)) if k < total else cursor.finish()
        yield batch


def uses_plan(batch_sampler: Sampler) -> bool:
    """True when ``batch_sampler`` is the loader's own (a :class:`PlanBatchSampler` whose settings
    are the plan's), so the loader can take batches from the plan as arrays, with no Python int
    per sample. False for a user's or a framework's batch sampler."""
    if type(batch_sampler) is PlanBatchSampler:
        plan = batch_sampler.sampler.plan()
        return plan.batch_size == batch_sampler.batch_size and plan.drop_last == batch_sampler.drop_last
    return False
