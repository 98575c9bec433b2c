"""torch Sampler faces of fastload's epoch plans, so frameworks see the Samplers they expect.

The loader itself reads batches straight from the plan as index arrays; these classes let code
that inspects or iterates ``loader.sampler`` / ``loader.batch_sampler`` (Lightning, Accelerate)
see the same order, one Python int at a time.
"""

from __future__ import annotations

from typing import Callable, Iterator

from torch.utils.data import BatchSampler, Sampler

from ..plan.epoch import EpochPlan


class PlanSampler(Sampler[int]):
    """Yields this rank's record indices for the current epoch, in the order the loader reads them."""

    def __init__(self, make_plan: Callable[[], EpochPlan], shuffle: str):
        self._make_plan = make_plan
        self.mode = shuffle
        self.shuffle = shuffle != "none"  # what frameworks look for to tell a shuffled loader

    def __iter__(self) -> Iterator[int]:
        for batch in self._make_plan().batches():
            yield from batch.tolist()

    def __len__(self) -> int:
        plan = self._make_plan()
        n = plan.num_batches()
        return 0 if n == 0 else (n - 1) * plan.batch_size + len(plan.batch(n - 1))


def uses_plan(batch_sampler: Sampler) -> bool:
    """True when ``batch_sampler`` is torch's BatchSampler over a PlanSampler with the plan's settings.

    torch groups the sampler's indices into chunks of ``batch_size`` (dropping a short last one
    with ``drop_last``); the plan's batches are exactly those chunks, so the loader can take them
    from the plan as arrays, without a Python int per sample. False for a user's or a
    framework's batch sampler.
    """
    if type(batch_sampler) is BatchSampler and isinstance(batch_sampler.sampler, PlanSampler):
        plan = batch_sampler.sampler._make_plan()
        return plan.batch_size == batch_sampler.batch_size and plan.drop_last == batch_sampler.drop_last
    return False
