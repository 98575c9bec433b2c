"""What the loader needs of the datasets it reads natively, beyond :class:`fastload.Dataset`.

Packed sequences (:class:`fastload.lm.PackedDataset`) and mixtures (:class:`fastload.lm.MixedDataset`)
have a fastload dataset's read interface (``schema``, ``len``, ``gather(indices, fields, out=)``)
and a picklable ``reopen_spec()``. This module is the loader's only knowledge of them, so the
loader itself checks a protocol in a few places:

* :func:`is_native`: the loader's shared-memory path reads it;
* :func:`worker_dataset`: what workers read (a mixture's *records*: the loader maps positions
  to records itself, with the mixture's order);
* :func:`epoch_order`: the order of an epoch (a mixture brings its own, from its schedule);
* :func:`finish_torch`: batch-level outputs (a packed batch's ``cu_seqlens`` and ``max_seqlen``);
* :class:`SourceCounter`, :func:`dataset_state` and :func:`resume_rebase`: per-source counts in
  ``stats()``, the mixture's counters in ``state_dict()``, new weights on ``load_state_dict()``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..format.dataset import Dataset
from ..opening import Reopen, reopen_spec

MIXTURE_KEY = "mixture"  # the state_dict entry of a mixture's counters


def is_native(ds: Any) -> bool:
    """A fastload Dataset, or a dataset with its read interface and a reopen spec."""
    return isinstance(ds, Dataset) or all(hasattr(ds, a) for a in ("schema", "gather", "reopen_spec"))


def is_mixture(ds: Any) -> bool:
    return hasattr(ds, "epoch_order") and hasattr(ds, "records")


def worker_dataset(ds: Any) -> Any:
    """The dataset workers gather from: a mixture's records, anything else itself."""
    return ds.records() if is_mixture(ds) else ds


def worker_spec(ds: Any) -> tuple[str, dict, Reopen | None]:
    """(root, open options, reopen spec) for a WorkerConfig: a Dataset reopens by URL."""
    if isinstance(ds, Dataset):
        return str(ds.root), ds.open_options(), None
    view = worker_dataset(ds)
    return str(getattr(view, "root", type(view).__name__)), {}, reopen_spec(view)


def epoch_order(ds: Any, mode: str, seed: int, epoch: int, rebase=None):
    """A mixture's order for this epoch (positions -> records), or None: the loader's own."""
    if not is_mixture(ds):
        return None
    return ds.epoch_order(mode, seed, epoch, rebase=rebase)


def has_finish(ds: Any) -> bool:
    """Whether :func:`finish_torch` adds anything to ``ds``'s batches."""
    return getattr(ds, "finish_batch", None) is not None and not isinstance(ds, Dataset)


def finish_torch(ds: Any, batch: dict[str, Any]) -> dict[str, Any]:
    """A loader batch with the dataset's batch-level outputs (a packed batch's ``cu_seqlens`` for
    the whole batch, ``max_seqlen``), computed from its per-record values, as tensors."""
    if not has_finish(ds):
        return batch
    import torch

    return {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in ds.finish_batch(batch).items()}


class SourceCounter:
    """Samples delivered per source of a mixture, counted from the record indices of each batch."""

    def __init__(self, ds: Any):
        self.ds = ds if is_mixture(ds) else None
        self.counts = np.zeros(len(ds.names) if self.ds is not None else 0, dtype=np.int64)

    def add(self, records: np.ndarray) -> None:
        if self.ds is not None:
            self.counts += np.bincount(self.ds.source_of(records), minlength=len(self.counts))

    def counted(self, batches):
        """Pass index batches through, counting each (a no-op for anything but a mixture)."""
        if self.ds is None:
            return batches
        return (self._add_and_pass(b) for b in batches)

    def _add_and_pass(self, batch):
        self.add(np.asarray(batch, dtype=np.int64))
        return batch

    def snapshot(self) -> dict[str, Any]:
        if self.ds is None:
            return {}
        return {"sources": {n: int(c) for n, c in zip(self.ds.names, self.counts)}}


def dataset_state(ds: Any, order: Any, position: int) -> dict[str, Any]:
    """A mixture's counters at ``position`` of the epoch whose order is ``order`` (else nothing)."""
    if not is_mixture(ds) or order is None:
        return {}
    return {MIXTURE_KEY: ds.state_at(min(position, order.n), order.schedule)}


def resume_rebase(ds: Any, saved: dict[str, Any] | None, position: int):
    """``(position, drawn)`` where the resumed epoch's schedule starts over: at the saved position
    when the weights changed since ``saved`` (each source continues from its saved draw count),
    else where the saved run's own weights last changed; None for an unchanged mixture."""
    if not is_mixture(ds) or not saved:
        return None
    if set(saved.get("drawn", {})) != set(ds.names):
        raise ValueError(f"the state was saved by a mixture of {sorted(saved.get('drawn', {}))}; this loader "
                         f"mixes {sorted(ds.names)}")
    if saved.get("weights") == dict(ds.weights):
        if not saved.get("rebase"):
            return None
        start, drawn = saved["rebase"]
        return int(start), np.array(drawn, dtype=np.int64)
    return position, np.array([int(saved["drawn"][n]) for n in ds.names], dtype=np.int64)
