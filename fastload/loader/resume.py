"""Resuming orders the loader does not own: a user's or a framework's sampler or batch sampler.

:class:`InjectedOrder` wraps the index sampler for one iteration. A sampler with
``state_dict``/``load_state_dict`` (torchdata's, a user's) is saved through it: its state is
snapshotted after each batch is drawn and the snapshot of the last *delivered* batch is kept, so
batches prefetched by workers are not counted. Any other sampler is resumed by replaying its
first index batches (no data is read) from the same start: its epoch (``set_epoch``), its torch
generator's state or torch's global RNG state when the epoch began (what torch's RandomSampler
draws its seed from). A warning says so once per loader.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from typing import Any, Iterator

import torch

from ..plan.state import SamplerState

log = logging.getLogger("fastload.loader")


def _has(obj, *methods: str) -> bool:
    return obj is not None and all(callable(getattr(obj, m, None)) for m in methods)


class InjectedOrder:
    """Position of a loader in a sampler it was given: batches delivered, and how to restore."""

    def __init__(self, index_sampler):
        self.index_sampler = index_sampler
        inner = getattr(index_sampler, "sampler", None)
        candidates = (index_sampler, inner)
        self.stateful = next((c for c in candidates if _has(c, "state_dict", "load_state_dict")), None)
        self.epoch_holder = next((c for c in candidates if _has(c, "set_epoch")), None)
        gen = next((getattr(c, "generator", None) for c in candidates
                    if isinstance(getattr(c, "generator", None), torch.Generator)), None)
        self.generator = gen
        self.epoch = 0  # iterations begun, unless set_epoch chose
        self.k = 0  # batches delivered in the current epoch
        self.finished = False
        self.total: int | None = None
        self._snapshots: deque = deque()
        self._saved: Any = None
        self._rng: Any = None
        self._rng_kind: str | None = None
        self._pending: SamplerState | None = None
        self._started = False
        self._chosen = False
        self._warned = False

    # -- choosing ----------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        if self._pending is not None:  # a loaded position wins (see plan/cursor.py)
            return
        self.epoch = int(epoch)
        self._chosen = True
        if self.epoch_holder is not None:
            self.epoch_holder.set_epoch(self.epoch)

    def load(self, state: SamplerState) -> None:
        if state.kind != "sampler":
            raise ValueError(f"this loader follows a sampler; the state was saved by an {state.kind} loader")
        if state.order_state is not None and self.stateful is None:
            raise ValueError(f"the state holds a sampler state but {type(self.index_sampler).__name__} "
                             "has no load_state_dict")
        self._pending = state
        self.epoch = state.epoch
        self._chosen = True
        if self.epoch_holder is not None:
            self.epoch_holder.set_epoch(state.epoch)

    # -- iterating ---------------------------------------------------------------------------
    def batches(self) -> Iterator[Any]:
        """The index batches of the iteration now starting, from a loaded position if any. A
        generator: nothing happens until the first batch is asked for, which is when torch's
        samplers draw their seed, so the RNG state is captured (and restored) at that moment."""
        if self._started and not self._chosen:
            self.epoch += 1
        self._started, self._chosen = True, False
        pending, self._pending = self._pending, None
        self._snapshots.clear()
        self.finished = False
        self.k = pending.batches_done if pending else 0
        self._saved = pending.order_state if pending else None
        skip = self.k
        if pending is not None and pending.order_state is not None:
            self.stateful.load_state_dict(pending.order_state)
            skip = 0
        rng, rng_kind = (pending.rng, pending.rng_kind) if pending is not None else (None, None)
        if rng is not None and rng_kind == "generator" and self.generator is not None:
            self.generator.set_state(rng)
        try:
            self.total = len(self.index_sampler)
        except TypeError:
            self.total = None
        self._capture_rng()
        it = iter(self.index_sampler)
        if rng is not None and rng_kind == "global":
            with torch.random.fork_rng(devices=[]):
                torch.set_rng_state(rng)
                first = next(it, None)  # torch's RandomSampler draws its seed on the first next()
            self._rng = rng
        else:
            first = next(it, None)
        if first is None:
            return
        it = itertools.chain([first], it)
        if skip:
            it = itertools.islice(it, skip, None)
        for batch in it:
            if self.stateful is not None:
                self._snapshots.append(self.stateful.state_dict())
            yield batch

    def _capture_rng(self) -> None:
        self._rng, self._rng_kind = None, None
        if self.stateful is not None:
            return
        if self.generator is not None:
            self._rng, self._rng_kind = self.generator.get_state(), "generator"
        else:
            self._rng, self._rng_kind = torch.get_rng_state(), "global"

    def delivered(self) -> None:
        self.k += 1
        if self._snapshots:
            self._saved = self._snapshots.popleft()
        if self.total is not None and self.k >= self.total:
            self.finished = True

    def ended(self) -> None:
        self.finished = True

    def state(self) -> SamplerState:
        self._warn_replay()
        if self.finished:
            return SamplerState(kind="sampler", epoch=self._sampler_epoch() + 1, batches_done=0,
                                order_state=self._saved)
        return SamplerState(kind="sampler", epoch=self._sampler_epoch(), batches_done=self.k,
                            order_state=self._saved if self.stateful is not None else None,
                            rng=self._rng, rng_kind=self._rng_kind)

    def _sampler_epoch(self) -> int:
        epoch = getattr(self.epoch_holder, "epoch", None)
        return int(epoch) if isinstance(epoch, int) else self.epoch

    def _warn_replay(self) -> None:
        if self.stateful is None and not self._warned:
            self._warned = True
            log.warning("fastload: %s has no state_dict; a resume replays its first index batches (no data is "
                        "read). The order is the same when it depends only on set_epoch, its torch generator or "
                        "torch's global RNG (as torch's samplers do)", type(self.index_sampler).__name__)
