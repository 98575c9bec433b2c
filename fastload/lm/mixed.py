"""``fastload.mix``: several datasets read as one, in set proportions, exactly and resumably.

A :class:`MixedDataset` has two index spaces:

* **positions** of a mixture epoch (``len(mix)``; ``mix[i]``, ``get_batch``): position p is the
  sample the mixture puts there (:class:`~fastload.plan.mixture.MixtureOrder`: which source, then
  which of its samples, in a keyed shuffle per pass over the source);
* **records**, the sources' records numbered one source after another, read by
  :meth:`gather_records` (what a loader's workers read, after the loader mapped positions
  through the epoch's order in its own process).

Sources can be any fastload datasets (local or remote, each opened with its own cache
settings, packed sequences too) with different schemas, as long as the ``fields`` read agree
(same kind, dtype and shape in every source).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from .. import _native
from ..errors import SchemaError
from ..format.columns import VarColumn
from ..format.schema import Schema
from ..opening import Reopen, reopen_spec
from ..plan.mixture import MixtureOrder, MixtureSchedule
from .outputs import finish_batch
from .readable import BatchReadable, check_indices, check_out


class MixedDataset(BatchReadable):
    """Sources mixed in proportion ``weights`` (see :func:`mix`)."""

    def __init__(self, sources: Mapping[str, Any], weights: Mapping[str, float], *, policy: str = "cycle",
                 epoch_samples: int | None = None, epoch_source: str | None = None,
                 fields: Sequence[str] | None = None, shuffle: str = "full", seed: int = 0):
        if not isinstance(sources, Mapping) or not sources:
            raise ValueError("mix takes a non-empty dict of name -> dataset")
        if set(weights) != set(sources):
            raise ValueError(f"weights name {sorted(weights)}, the sources are {sorted(sources)}: give one weight each")
        self.names = list(sources)
        self.sources = [sources[name] for name in self.names]
        self.weights = {name: float(weights[name]) for name in self.names}
        if epoch_source is not None and epoch_source not in sources:
            raise ValueError(f"epoch_source {epoch_source!r} is not one of the sources {self.names}")
        self.policy, self.epoch_samples, self.epoch_source = policy, epoch_samples, epoch_source
        self.schema = _common_schema(self.names, self.sources, fields)
        self.fields = tuple(self.schema.names)
        self.sizes = [len(s) for s in self.sources]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        self.schedule = self.make_schedule()
        self.shuffle, self.seed, self.epoch = shuffle, int(seed), 0
        self._order = self.epoch_order(shuffle, self.seed, 0)

    # -- the mixture -----------------------------------------------------------------------
    def make_schedule(self, rebase: tuple[int, Sequence[int]] | None = None) -> MixtureSchedule:
        """The epoch schedule of these sources and weights (from ``rebase`` when given)."""
        e = None if self.epoch_source is None else self.names.index(self.epoch_source)
        return MixtureSchedule(self.sizes, [self.weights[n] for n in self.names], policy=self.policy,
                               epoch_samples=self.epoch_samples, epoch_source=e, rebase=rebase)

    def epoch_order(self, shuffle: str, seed: int, epoch: int,
                    rebase: tuple[int, Sequence[int]] | None = None) -> MixtureOrder:
        """Positions of mixture epoch ``epoch`` -> records, each source shuffled per ``shuffle``."""
        schedule = self.schedule if rebase is None else self.make_schedule(rebase)
        return MixtureOrder(schedule, seed=seed, epoch=epoch, mode=shuffle)

    def set_epoch(self, epoch: int) -> None:
        """Read mixture epoch ``epoch`` through ``mix[i]`` and ``get_batch`` (each epoch reshuffles)."""
        self.epoch = int(epoch)
        self._order = self.epoch_order(self.shuffle, self.seed, self.epoch)

    def state_at(self, position: int, schedule: MixtureSchedule | None = None) -> dict[str, Any]:
        """Per-source counters after ``position`` samples of an epoch: draws and passes (O(sources)),
        the weights, and where the epoch's weights last changed (``rebase``: position and draws)."""
        schedule = schedule or self.schedule
        drawn = schedule.drawn(position)
        rebase = None
        if schedule.rebase is not None:
            rebase = [int(schedule.rebase[0]), [int(d) for d in schedule.rebase[1]]]
        return {"weights": dict(self.weights),
                "drawn": {n: int(d) for n, d in zip(self.names, drawn)},
                "passes": {n: int(d // max(s, 1)) for n, d, s in zip(self.names, drawn, self.sizes)},
                "rebase": rebase}

    def records(self) -> "MixtureRecords":
        """The mixture's records (numbered source after source) as a dataset: what loader workers read."""
        return MixtureRecords(self)

    def source_of(self, records: np.ndarray) -> np.ndarray:
        """The source number of each record."""
        return np.searchsorted(self.offsets, np.asarray(records, dtype=np.int64), side="right") - 1

    def source_counts(self, records: np.ndarray) -> dict[str, int]:
        """How many of ``records`` each source gave."""
        counts = np.bincount(self.source_of(records), minlength=len(self.names))
        return {n: int(c) for n, c in zip(self.names, counts)}

    # -- the read interface ----------------------------------------------------------------
    def __len__(self) -> int:
        return self.schedule.length

    @property
    def n_records(self) -> int:
        return int(self.offsets[-1])

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}: {len(s)} x {self.weights[n]:g}" for n, s in zip(self.names, self.sources))
        return f"fastload.MixedDataset({{{parts}}}, policy={self.policy!r}, samples={len(self)}, fields={self.fields})"

    def reopen_spec(self) -> Reopen:
        kwargs = dict(sources={n: reopen_spec(s) for n, s in zip(self.names, self.sources)}, weights=self.weights,
                      policy=self.policy, epoch_samples=self.epoch_samples, epoch_source=self.epoch_source,
                      fields=self.fields, shuffle=self.shuffle, seed=self.seed)
        return Reopen(reopen_mixed, kwargs)

    def storage_stats(self) -> dict[str, Any]:
        return {n: s.storage_stats() for n, s in zip(self.names, self.sources) if hasattr(s, "storage_stats")}

    def finish_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        if "cu_seqlens" in batch and "input_ids" in self.schema.names:
            return finish_batch(batch, self.schema["input_ids"].shape[0])
        return batch

    def gather(self, indices, fields=None, out=None) -> dict[str, Any]:
        """Positions ``indices`` of the current epoch (see :meth:`set_epoch`)."""
        pos = check_indices(indices, len(self))
        return self.gather_records(self._order.indices(pos), fields, out)

    def gather_records(self, records, fields: Sequence[str] | None = None,
                       out: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
        """Records (numbered source after source) as one batch, in the order given."""
        rec = check_indices(records, self.n_records)
        wanted = list(self.fields) if fields is None else list(fields)
        for name in wanted:
            self.schema[name]  # KeyError naming the field
        out = check_out(self.schema, out, len(rec))
        src = self.source_of(rec)
        present = np.unique(src)
        if len(present) == 1:  # one source: its gather writes straight into out
            s = int(present[0])
            return self.sources[s].gather(rec - self.offsets[s], wanted, out=out or None)
        rows = [np.flatnonzero(src == s) for s in present.tolist()]
        parts = [self.sources[s].gather(rec[r] - self.offsets[s], wanted) for s, r in zip(present.tolist(), rows)]
        result: dict[str, Any] = {}
        for name in wanted:
            f = self.schema[name]
            if f.is_fixed:
                arr = out.get(name)
                if arr is None:
                    arr = np.empty((len(rec), *f.shape), dtype=f.np_dtype)
                for r, part in zip(rows, parts):
                    arr[r] = part[name]
                result[name] = arr
            else:
                result[name] = _merge_var([p[name] for p in parts], rows, len(rec))
        return result


class MixtureRecords(BatchReadable):
    """A mixture's records, source after source, read by number (no mixing: the loader's plan
    maps positions to records in the main process and workers read these)."""

    def __init__(self, mixture: MixedDataset):
        self.mixture = mixture
        self.schema = mixture.schema
        self.root = f"mixture of {', '.join(mixture.names)}"  # named in workers' error messages

    def __len__(self) -> int:
        return self.mixture.n_records

    def gather(self, indices, fields=None, out=None) -> dict[str, Any]:
        return self.mixture.gather_records(indices, fields, out)

    def finish_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        return self.mixture.finish_batch(batch)

    def locate(self, index: int) -> str:
        s = int(self.mixture.source_of(np.array([index]))[0])
        source = self.mixture.sources[s]
        local = int(index - self.mixture.offsets[s])
        where = source.locate(local) if hasattr(source, "locate") else f"record {local}"
        return f"source {self.mixture.names[s]!r}: {where}"

    def reopen_spec(self) -> Reopen:
        return Reopen(reopen_records, {"mixture": self.mixture.reopen_spec()})


def reopen_records(mixture: Reopen) -> MixtureRecords:
    """Open a mixture's records in a worker."""
    return mixture.open().records()


def _merge_var(cols: list[VarColumn], rows: list[np.ndarray], n: int) -> VarColumn:
    """Variable columns of row subsets, merged back in row order with one native copy."""
    lengths = np.empty(n, dtype=np.int64)
    addrs = np.empty(n, dtype=np.int64)
    lo = np.empty(n, dtype=np.int64)
    hi = np.empty(n, dtype=np.int64)
    for col, r in zip(cols, rows):
        lengths[r] = np.diff(col.offsets)
        addrs[r] = col.data.ctypes.data + col.offsets[:-1]
        lo[r] = col.data.ctypes.data
        hi[r] = col.data.ctypes.data + col.data.nbytes
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    data = np.empty(int(offsets[-1]), dtype=np.uint8)
    _native.gather_var(addrs, lengths, data, lo, hi)  # the parts' buffers are alive in cols
    return VarColumn(offsets, data)


def _common_schema(names: list[str], sources: list[Any], fields: Sequence[str] | None) -> Schema:
    """The fields read from every source: ``fields``, or those all sources share; they must agree."""
    first = sources[0].schema
    wanted = list(fields) if fields is not None else [
        f.name for f in first if all(f.name in s.schema.names for s in sources[1:])]
    if not wanted:
        raise SchemaError(f"the sources {names} share no field: pass fields=[...] that all of them have")
    out = []
    for name in wanted:
        defs = {}
        for src_name, s in zip(names, sources):
            if name not in s.schema.names:
                raise SchemaError(f"source {src_name!r} has no field {name!r} (it has {s.schema.names})")
            defs[src_name] = s.schema[name]
        kinds = {(f.kind, f.dtype, f.shape) for f in defs.values()}
        if len(kinds) > 1:
            what = ", ".join(f"{n}: {f.spec}" for n, f in defs.items())
            raise SchemaError(f"field {name!r} differs between sources ({what}); mixed fields must agree")
        out.append(defs[names[0]])
    return Schema(tuple(out))


def reopen_mixed(sources: Mapping[str, Reopen], **kwargs) -> MixedDataset:
    """Open a mixture in a worker: each source from its own spec."""
    return MixedDataset({name: spec.open() for name, spec in sources.items()}, **kwargs)


def mix(sources: Mapping[str, Any], weights: Mapping[str, float] | None = None, *, policy: str = "cycle",
        epoch_samples: int | None = None, epoch_source: str | None = None,
        fields: Sequence[str] | None = None, shuffle: str = "full", seed: int = 0) -> MixedDataset:
    """Read several datasets as one, each in its share ``weights[name]`` (any scale; equal by default).

    The proportions hold exactly over every few batches (a deterministic interleaving, see
    :mod:`fastload.plan.mixture`). ``policy`` says what happens when a source runs out within an
    epoch: ``"cycle"`` re-reads it in a fresh shuffle (the epoch is then ``epoch_samples`` long,
    or ends with ``epoch_source``'s last sample), ``"stop"`` ends the epoch, ``"rescale"`` goes on
    with the others in their renormalised weights until all have run out. Sources are opened
    datasets (``fastload.open(url, cache_limit=...)`` for each remote one, with its own cache
    settings, or ``pack_sequences(...)``), or paths. ``fields`` (default: those all sources share)
    must agree between sources. ``shuffle`` and ``seed`` order ``mix[i]``/``get_batch``; a
    ``fastload.DataLoader`` uses its own ``shuffle`` and ``seed``.
    """
    from ..opening import open_dataset

    sources = {name: open_dataset(ds) if isinstance(ds, (str, bytes)) or hasattr(ds, "__fspath__") else ds
               for name, ds in sources.items()}
    weights = {name: 1.0 for name in sources} if weights is None else weights
    return MixedDataset(sources, weights, policy=policy, epoch_samples=epoch_samples, epoch_source=epoch_source,
                        fields=fields, shuffle=shuffle, seed=seed)


__all__ = ["MixedDataset", "MixtureRecords", "mix"]
