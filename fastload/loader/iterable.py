"""Resuming an iterable dataset the way torchdata's StatefulDataLoader does.

With no workers the dataset's own ``state_dict`` (when it has one) is taken as the batch is
delivered; without one, a resume skips the batches already delivered by reading and dropping
them. With workers, each worker's batches carry a tag (its id and its dataset's ``state_dict``
after the batch), added by a wrapper around ``collate_fn`` in the worker; the loader keeps, per
worker, the count and the state of the last delivered batch and of the one before. torch's
iterator asks workers in turn from worker 0, so a resume restores every worker and lets the
workers before the next one in turn replay one batch (restored one batch earlier), which is
dropped: the turns then line up with the saved run. Without a dataset state, every worker
replays and drops all of its delivered batches.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from torch.utils.data import get_worker_info

from ..plan.state import SamplerState


def _stateful(obj) -> bool:
    return callable(getattr(obj, "state_dict", None)) and callable(getattr(obj, "load_state_dict", None))


class _Tagged:
    """A worker's batch (or a dropped replay, ``value`` None) with its worker id and dataset state."""

    __slots__ = ("worker", "value", "state", "dropped")

    def __init__(self, worker: int, value: Any, state: Any, dropped: bool):
        self.worker, self.value, self.state, self.dropped = worker, value, state, dropped


class _TaggingCollate:
    """``collate_fn`` in a worker: tags each batch, and drops the first ``drops[worker]``."""

    def __init__(self, collate_fn: Callable, drops: list[int], stateful: bool):
        self.collate_fn, self.drops, self.stateful = collate_fn, drops, stateful
        self.count = 0  # batches of this worker (each worker process has its own copy)

    def __call__(self, data):
        info = get_worker_info()
        self.count += 1
        state = info.dataset.state_dict() if self.stateful else None
        if self.count <= self.drops[info.id]:
            return _Tagged(info.id, None, state, True)
        return _Tagged(info.id, self.collate_fn(data), state, False)


class _WorkerResume:
    """``worker_init_fn`` in a worker: the user's, then the worker's saved dataset state."""

    def __init__(self, init_fn: Callable | None, states: list):
        self.init_fn, self.states = init_fn, states

    def __call__(self, worker_id: int) -> None:
        if self.init_fn is not None:
            self.init_fn(worker_id)
        if self.states[worker_id] is not None:
            get_worker_info().dataset.load_state_dict(self.states[worker_id])


class IterableOrder:
    """Position of a loader over an iterable dataset: epoch, batches and per-worker states."""

    def __init__(self):
        self.epoch = 0
        self.k = 0
        self.finished = False
        self._workers: list[list] = []  # per worker: [batches delivered, state after them, state before the last]
        self._last = -1
        self._pending: SamplerState | None = None
        self._started = self._chosen = False
        self._dataset = None

    def set_epoch(self, epoch: int) -> None:
        if self._pending is None:
            self.epoch, self._chosen = int(epoch), True

    def load(self, state) -> None:
        if getattr(state, "kind", None) != "iterable":
            raise ValueError("this loader reads an iterable dataset; the state was saved by another kind of loader")
        self._pending = state
        self.epoch, self._chosen = state.epoch, True

    def iterate(self, loader, make_iter: Callable[[], Iterator]) -> Iterator[Any]:
        if self._started and not self._chosen:
            self.epoch += 1
        self._started, self._chosen = True, False
        pending, self._pending = self._pending, None
        self._dataset = loader.dataset
        stateful = _stateful(loader.dataset)
        n = max(loader.num_workers, 1)
        saved = pending.workers if pending is not None and pending.workers else None
        if saved is not None and len(saved) != n:
            raise ValueError(f"the state was saved with {len(saved)} workers; this loader has {n}: an iterable "
                             "dataset's workers each hold a part of the stream")
        self.k = pending.batches_done if pending is not None else 0
        self.finished = False
        nxt = pending.next_worker if pending is not None else 0
        states, drops = [None] * n, [0] * n
        self._workers = [[0, None, None] for _ in range(n)]
        for w, (count, after, before) in enumerate(saved or []):
            self._workers[w] = [count, after, before]
            if stateful and after is not None:
                behind = loader.num_workers > 0 and w < nxt  # ahead of the next in turn by one batch
                states[w] = before if behind else after
                drops[w] = 1 if behind else 0
            else:
                drops[w] = count
        self._last = (nxt - 1) % n
        if loader.num_workers == 0:
            return self._single(loader, make_iter, states[0], drops[0], stateful)
        return self._multi(loader, make_iter, states, drops, stateful)

    def _single(self, loader, make_iter, state, drop: int, stateful: bool) -> Iterator[Any]:
        if state is not None:
            loader.dataset.load_state_dict(state)
        it = make_iter()
        for _ in range(drop):
            if next(it, _END) is _END:
                break
        for batch in it:
            self.k += 1
            w = self._workers[0]
            w[0] += 1
            w[2], w[1] = w[1], (loader.dataset.state_dict() if stateful else None)
            yield batch
        self.finished = True

    def _multi(self, loader, make_iter, states: list, drops: list[int], stateful: bool) -> Iterator[Any]:
        collate, init = loader.collate_fn, loader.worker_init_fn
        loader.collate_fn = _TaggingCollate(collate, drops, stateful)
        loader.worker_init_fn = _WorkerResume(init, states)
        try:
            it = make_iter()  # the workers start here, with the wrappers
        finally:
            loader.collate_fn, loader.worker_init_fn = collate, init
        for tagged in it:
            if tagged.dropped:
                continue
            self.k += 1
            w = self._workers[tagged.worker]
            w[0] += 1
            w[2], w[1] = w[1], tagged.state
            self._last = tagged.worker
            yield tagged.value
        self.finished = True

    def state(self) -> SamplerState:
        if self.finished:
            return SamplerState(kind="iterable", epoch=self.epoch + 1, batches_done=0)
        return SamplerState(kind="iterable", epoch=self.epoch, batches_done=self.k,
                            workers=[list(w) for w in self._workers] or None,
                            next_worker=(self._last + 1) % max(len(self._workers), 1))


_END = object()
