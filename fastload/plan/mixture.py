"""Weighted mixtures: which source, and which of its samples, sits at each position of an epoch.

A mixture of S sources with weights w is a deterministic interleaving, as Megatron's blended
index is, but computed per position in O(1) rather than stored:

* **Counts per period.** The weights become integer counts ``c`` over a period ``P``: the
  smallest ``P <= 65536`` at which ``w * P`` are whole (0.7/0.2/0.1 gives 7/2/1 over 10), else
  largest remainders over 65536. Every period holds exactly ``c[s]`` draws of source s.
* **Interleaving.** Within a period, source s's j-th draw sits at its ideal time
  ``(j + 1/2) / c[s]``, all sources merged in time order (ties by source number). Each
  source's count in any prefix of the pattern is within one draw (plus ``S/2 * w_s``) of
  ``w_s * length``, so every window of consecutive positions, a batch or a few, holds each source
  within about two samples of its share: exact in every window, not only in expectation.
* **Draws to records.** Position p is source s's k-th draw; the source's samples are visited
  in passes of ``n_s``: draw k is sample ``k % n_s`` of pass ``k // n_s``, through that pass's
  own order (a fresh keyed shuffle per pass, so "cycle" re-reads a source in a new order).
  Records are numbered globally: source s's records follow those of sources 0..s-1.

Policies when a source runs out (all of its ``n_s`` samples drawn in this epoch):
``"cycle"`` re-reads it (next pass, fresh shuffle), so the epoch needs a length: a total
(``epoch_samples``) or one source (``epoch_source``: the epoch ends with that source's last
sample); ``"stop"`` ends the epoch at the first source to run out; ``"rescale"`` drops it and
mixes the rest in their weights renormalised, until all have run out. ``epoch_samples`` and
``epoch_source`` also shorten a "stop" or "rescale" epoch.

Resume: everything above is a pure function of (sizes, weights, policy, seed, epoch) and the
position, so the state is the position (the loader's ``samples_done``), whatever the world size
or worker count. :meth:`MixtureSchedule.drawn` gives each source's draw count (and pass number)
at a position, which is what a **change of weights mid-run** builds on: ``rebase=(position,
drawn)`` starts a new mixture at that position in which every source continues from the sample
it had reached, in the same pass order; the new weights hold from there, and the epoch's length
is recomputed from there (a total stays the same total). Nothing is repeated or skipped within a
source. Positions before the rebase point (asked for only when ranks are padded) are drawn as if
the new weights had held from the epoch's start.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .bijection import mix_int
from .orders import MAX_N, _check_int, make_order

POLICIES = ("cycle", "stop", "rescale")
MAX_PERIOD = 1 << 16
_EXACT = 1e-9  # relative tolerance for "w * P is a whole number"
_SOURCE_SALT = 0x6D697874  # separates the per-source seeds from the loader's own seed


def apportion(weights: Sequence[float], max_period: int = MAX_PERIOD) -> np.ndarray:
    """Integer draws per period for each weight: exact when a period <= max_period makes them whole.

    Returns int64 counts whose sum is the period. Positive weights get at least one draw.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.size == 0 or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"weights must be finite, >= 0 and not all 0; got {list(weights)!r}")
    w = w / w.sum()
    periods = np.arange(1, max_period + 1, dtype=np.float64)[:, None]
    scaled = periods * w[None, :]
    whole = np.all(np.abs(scaled - np.round(scaled)) <= _EXACT * periods, axis=1)
    whole &= np.all((np.round(scaled) >= 1) | (w == 0), axis=1)  # every positive weight drawn
    if whole.any():
        return np.round(scaled[int(np.argmax(whole))]).astype(np.int64)
    ideal = w * max_period
    counts = np.floor(ideal).astype(np.int64)
    short = max_period - int(counts.sum())
    # largest remainders first; equal remainders go to the lower source number
    by_remainder = np.lexsort((np.arange(w.size), -(ideal - counts)))
    counts[by_remainder[:short]] += 1
    if np.any((counts == 0) & (w > 0)):
        raise ValueError(f"a weight below 1/{max_period} of the total cannot be mixed: {list(weights)!r}")
    return counts


def interleave(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One period's pattern: the source of each slot, and which of that source's draws it is.

    Source s's j-th draw has the ideal time (2j + 1) / (2 c[s]); slots follow these times
    (equal times: lower source first). Distinct times differ by at least 1 / (4 c_a c_b), far
    above float64 rounding for periods <= 2**16, so the float comparison is exact.
    """
    counts = np.asarray(counts, dtype=np.int64)
    src = np.repeat(np.arange(len(counts)), counts)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    j = np.arange(len(src), dtype=np.int64) - first[src]
    times = (2 * j + 1) / (2.0 * counts[src])
    order = np.lexsort((src, times))
    return src[order], j[order]


class _Phase:
    """A stretch of the epoch mixed with one set of counts, from ``start`` with ``base`` draws done."""

    def __init__(self, start: int, base: np.ndarray, weights: np.ndarray):
        self.start = start
        self.base = base.astype(np.int64)
        self.counts = apportion(weights)
        self.period = int(self.counts.sum())
        self.pattern, self.rank = interleave(self.counts)
        by_source = np.argsort(self.pattern, kind="stable")  # slots of each source, in slot order
        self._slots = by_source
        self._slot_start = np.concatenate([[0], np.cumsum(self.counts)])

    def slots(self, s: int) -> np.ndarray:
        """The slots of the period where source s is drawn, ascending."""
        return self._slots[self._slot_start[s]:self._slot_start[s + 1]]

    def draws(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Source and draw number of phase-relative positions q."""
        m, r = np.divmod(q, self.period)
        src = self.pattern[r]
        return src, self.base[src] + m * self.counts[src] + self.rank[r]

    def drawn(self, q: int) -> np.ndarray:
        """Draws of each source once q positions of this phase are done (base included)."""
        m, r = divmod(int(q), self.period)
        within = np.array([np.searchsorted(self.slots(s), r) for s in range(len(self.counts))], dtype=np.int64)
        return self.base + m * self.counts + within

    def position_of(self, s: int, draws: int) -> int:
        """Phase-relative position of source s's ``draws``-th draw in this phase (1-based)."""
        m, j = divmod(int(draws) - 1, int(self.counts[s]))
        return m * self.period + int(self.slots(s)[j])


class MixtureSchedule:
    """Position -> (source, draw number) for one epoch of a mixture; its length under the policy.

    ``sizes`` are the sources' sample counts, ``weights`` their shares (any non-negative scale),
    ``rebase`` an optional ``(position, drawn)`` where new weights take over (see the module doc).
    """

    def __init__(self, sizes: Sequence[int], weights: Sequence[float], *, policy: str = "cycle",
                 epoch_samples: int | None = None, epoch_source: int | None = None,
                 rebase: tuple[int, Sequence[int]] | None = None):
        self.sizes = np.array([_check_int("source size", n, 0, MAX_N) for n in sizes], dtype=np.int64)
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != self.sizes.shape:
            raise ValueError(f"{len(self.sizes)} sources but {w.size} weights")
        apportion(w)  # validates the weights
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, not {policy!r}")
        self.weights = w / w.sum()
        self.policy = policy
        self.epoch_samples = None if epoch_samples is None else _check_int("epoch_samples", epoch_samples, 0, MAX_N)
        self.epoch_source = None if epoch_source is None else _check_int("epoch_source", epoch_source, 0,
                                                                         len(self.sizes) - 1)
        if self.epoch_source is not None and self.weights[self.epoch_source] == 0:
            raise ValueError(f"epoch_source {self.epoch_source} has weight 0: it never ends an epoch")
        if policy == "cycle" and epoch_samples is None and epoch_source is None:
            raise ValueError("policy 'cycle' never runs out: give epoch_samples (a total) or epoch_source")
        if policy == "cycle" and np.any((self.sizes == 0) & (self.weights > 0)):
            empty = int(np.flatnonzero((self.sizes == 0) & (self.weights > 0))[0])
            raise ValueError(f"source {empty} is empty: it cannot be cycled (give it weight 0)")
        self.phases: list[_Phase] = []
        start, base = 0, np.zeros(len(self.sizes), dtype=np.int64)
        if rebase is not None:
            start, base = _check_rebase(rebase, len(self.sizes))
            self.phases.append(_Phase(0, np.zeros_like(base), self.weights))  # padding before the rebase
        self.rebase = (start, base.copy()) if rebase is not None else None  # what a resumed state repeats
        self.length = self._build(start, base)
        self._starts = np.array([p.start for p in self.phases], dtype=np.int64)

    def _build(self, start: int, base: np.ndarray) -> int:
        """Append the phases from ``start``; returns the epoch length."""
        w, n = self.weights.copy(), self.sizes
        cap = MAX_N if self.epoch_samples is None else max(self.epoch_samples, start)
        if self.policy == "cycle":
            phase = _Phase(start, base, w)
            self.phases.append(phase)
            if self.epoch_source is not None:
                e = self.epoch_source
                left = int(n[e] - base[e])
                end = start if left <= 0 else start + phase.position_of(e, left) + 1
                return min(end, cap) if self.epoch_samples is not None else end
            return cap
        while True:
            left = n - base
            active = (w > 0) & (left > 0)
            if self.epoch_source is not None and left[self.epoch_source] <= 0:
                return min(start, cap)
            if not active.any() or (self.policy == "stop" and np.any((w > 0) & (left <= 0))):
                return min(start, cap)
            phase = _Phase(start, base, np.where(active, w, 0.0))
            self.phases.append(phase)
            ends = {int(s): start + phase.position_of(int(s), int(left[s])) + 1 for s in np.flatnonzero(active)}
            end = min(ends.values())
            if self.policy == "stop" or end >= cap:
                return min(end, cap)
            base = phase.drawn(end - start)
            start = end

    def draws(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """int64 (source, draw number) of each position in [0, length)."""
        pos = np.asarray(positions, dtype=np.int64)
        if pos.size and (pos.min() < 0 or pos.max() >= self.length):
            raise IndexError(f"mixture positions must be in [0, {self.length}); got [{pos.min()}, {pos.max()}]")
        if len(self.phases) == 1:
            return self.phases[0].draws(pos)
        which = np.searchsorted(self._starts, pos, side="right") - 1
        src = np.empty(pos.shape, dtype=np.int64)
        k = np.empty(pos.shape, dtype=np.int64)
        for i in np.unique(which).tolist():
            sel = which == i
            src[sel], k[sel] = self.phases[i].draws(pos[sel] - self.phases[i].start)
        return src, k

    def drawn(self, position: int) -> np.ndarray:
        """Draws of each source in positions [0, position): the per-source counters at a resume point."""
        position = _check_int("position", position, 0, self.length)
        i = int(np.searchsorted(self._starts, position, side="right")) - 1
        return self.phases[i].drawn(position - self.phases[i].start)

    def __repr__(self) -> str:
        return (f"MixtureSchedule(sizes={self.sizes.tolist()}, weights={np.round(self.weights, 6).tolist()}, "
                f"policy={self.policy!r}, length={self.length})")


class MixtureOrder:
    """An :class:`~fastload.plan.orders.Order` over a mixture epoch: position -> global record.

    Global records are numbered source by source (``offsets[s]`` is source s's first). Each
    source's passes are ordered by ``mode`` ("full", "block" or "none"), keyed by the seed, the
    source number, the epoch and the pass.
    """

    def __init__(self, schedule: MixtureSchedule, *, seed: int, epoch: int, mode: str = "full",
                 block_starts: Sequence[np.ndarray | None] | None = None):
        self.schedule = schedule
        self.n = schedule.length
        self.seed = _check_int("seed", seed)
        self.epoch = _check_int("epoch", epoch, 0)
        self.mode = mode
        make_order(mode, 0, 0, 0)  # validates the mode
        self.offsets = np.concatenate([[0], np.cumsum(schedule.sizes)]).astype(np.int64)
        self._block_starts = list(block_starts) if block_starts is not None else [None] * len(schedule.sizes)
        self._orders: dict[tuple[int, int], object] = {}

    def source_order(self, s: int, passes: int):
        """The order of source s's ``passes``-th pass (0-based) in this epoch."""
        key = (s, passes)
        order = self._orders.get(key)
        if order is None:
            if len(self._orders) >= 64:  # a few passes per source are live at once
                self._orders.clear()
            seed = mix_int(self.seed ^ mix_int(_SOURCE_SALT + s))
            pass_key = (self.epoch + passes) * (self.epoch + passes + 1) // 2 + passes  # (epoch, pass) pairing
            order = make_order(self.mode, int(self.schedule.sizes[s]), seed, pass_key,
                               block_starts=self._block_starts[s])
            self._orders[key] = order
        return order

    def sources(self, positions: np.ndarray) -> np.ndarray:
        """The source of each position."""
        return self.schedule.draws(positions)[0]

    def indices(self, positions: np.ndarray) -> np.ndarray:
        """Global record numbers at these positions of the mixture epoch."""
        pos = np.asarray(positions)
        src, k = self.schedule.draws(pos.ravel())
        out = np.empty(src.shape, dtype=np.int64)
        sizes = self.schedule.sizes
        for s in np.unique(src).tolist():
            sel = np.flatnonzero(src == s)
            passes, j = np.divmod(k[sel], sizes[s])
            if passes.min() == passes.max():  # the usual case: a batch within one pass
                out[sel] = self.offsets[s] + self.source_order(s, int(passes[0])).indices(j)
                continue
            for p in np.unique(passes).tolist():
                this = passes == p
                out[sel[this]] = self.offsets[s] + self.source_order(s, p).indices(j[this])
        return out.reshape(pos.shape)

    def __repr__(self) -> str:
        return f"MixtureOrder({self.schedule!r}, seed={self.seed}, epoch={self.epoch}, mode={self.mode!r})"


def _check_rebase(rebase, n_sources: int) -> tuple[int, np.ndarray]:
    try:
        position, drawn = rebase
    except (TypeError, ValueError):
        raise ValueError(f"rebase must be (position, drawn per source), not {rebase!r}") from None
    position = _check_int("rebase position", position, 0, MAX_N)
    drawn = np.asarray(drawn)
    if drawn.shape != (n_sources,) or drawn.dtype.kind not in "iu" or np.any(drawn < 0):
        raise ValueError(f"rebase draws must be {n_sources} non-negative integers, not {drawn!r}")
    return position, drawn.astype(np.int64)


__all__ = ["MixtureOrder", "MixtureSchedule", "POLICIES", "apportion", "interleave"]
