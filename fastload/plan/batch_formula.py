"""An epoch plan's full batches as arithmetic, for code that computes them without NumPy.

The loader's C threads (csrc/keyed_order.h) compute each batch's record indices themselves from
its number, rather than taking them from Python: mapping positions through the Feistel shuffle in
NumPy cost ~5 us per 64-record batch (a feeder thread's CPU on top of a ~45 us copy, on this
project's 2-core machine), where the same arithmetic in C takes about 1 us in the thread that
copies. A :class:`BatchFormula` holds what that needs; tests check the C side against
:meth:`EpochPlan.batches` bit for bit. :meth:`EpochPlan.formula` makes one.

Batch k (0 <= k < count) holds, for i < batch_size, position ``p = base + k * global_batch +
nodes * i``; with ``pad``, a position p >= n becomes ``(o - o % nodes + p % nodes) % n`` with
``o = p - n`` (as :meth:`EpochPlan._records`); its record is ``p`` (``keys`` None) or the keyed
permutation of [0, n) at p (:func:`.bijection.permute` with these keys and bit widths, by
cycle-walking: only for n above :data:`.bijection.SMALL`, below which the order ranks hashes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np



@dataclass(frozen=True)
class BatchFormula:
    """This rank's first ``count`` batches of an epoch plan, as arithmetic (see the module doc)."""

    count: int
    batch_size: int
    base: int
    global_batch: int
    nodes: int
    n: int
    pad: bool
    keys: np.ndarray | None  # the Feistel's ROUNDS uint64 round keys; None: no shuffle
    low: int
    high: int
