"""How random an order is, and how local its reads are: the figures that compare "block" and "full".

Three metrics over one epoch (this materialises the epoch's n indices: a diagnostic, not a
loader path):

- displacement: mean |index - position| / n. A uniform random permutation gives ~1/3, no
  shuffle 0.
- spearman: rank correlation between position and record index. ~0 (within ~1/sqrt(n)) for a
  uniform shuffle, 1 for none. For "block" its spread is set by the number of blocks,
  ~1/sqrt(blocks), since the walk order of the blocks is what decorrelates the epoch.
- blocks_per_batch: mean number of distinct storage blocks among the ``batch_size`` samples of
  a batch (consecutive positions). This is what "block" trades: fewer blocks means fewer
  sequential reads per batch, but also samples that sat together on disk meet in a batch.
  ``uniform_blocks_per_batch`` is its expectation under a uniform shuffle, for reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .orders import BlockShuffle, FullShuffle, Order, SequentialOrder


@dataclass(frozen=True)
class ShuffleQuality:
    """The three metrics of one order (see the module docstring)."""

    displacement: float
    spearman: float
    blocks_per_batch: float
    uniform_blocks_per_batch: float


def shuffle_quality(order: Order, block_starts: np.ndarray, batch_size: int = 64) -> ShuffleQuality:
    """Measure an order over one epoch, against storage blocks starting at ``block_starts``."""
    n = order.n
    if n < 2 or batch_size < 1:
        raise ValueError("shuffle quality needs n >= 2 records and batch_size >= 1")
    starts = np.asarray(block_starts, dtype=np.int64)
    pos = np.arange(n, dtype=np.int64)
    idx = order.indices(pos)
    d = (idx - pos).astype(np.float64)
    # Spearman's formula: positions and indices of a permutation are already ranks
    spearman = 1.0 - 6.0 * float(np.dot(d, d)) / (n * (float(n) ** 2 - 1))
    usable = n // batch_size * batch_size
    block = (np.searchsorted(starts, idx[:usable], side="right") - 1).reshape(-1, batch_size)
    block.sort(axis=1)
    distinct = 1 + np.count_nonzero(np.diff(block, axis=1), axis=1)
    return ShuffleQuality(
        displacement=float(np.abs(d).mean() / n),
        spearman=spearman,
        blocks_per_batch=float(distinct.mean()) if len(distinct) else float("nan"),
        uniform_blocks_per_batch=_uniform_blocks(np.diff(np.append(starts, n)), n, batch_size),
    )


def sampled_quality(order: Order, group_starts: np.ndarray, batch_size: int = 64, samples: int = 1 << 16,
                    seed: int = 0) -> ShuffleQuality:
    """The same metrics estimated from ``samples`` random positions (and as many positions in
    random whole batches), against groups (shards) starting at ``group_starts``: O(samples)
    whatever n, so a loader can report them for any dataset. The estimates are within about
    1/sqrt(samples) of the whole-epoch values (0.004 at the default)."""
    n = order.n
    if n < 2 or batch_size < 1:
        raise ValueError("shuffle quality needs n >= 2 records and batch_size >= 1")
    rng = np.random.default_rng(seed)  # a diagnostic's sample, not an order: NumPy's generator is fine
    pos = rng.integers(0, n, size=min(samples, n), dtype=np.int64)
    d = (order.indices(pos) - pos).astype(np.float64)
    starts = np.asarray(group_starts, dtype=np.int64)
    n_batches = n // batch_size
    if n_batches:
        first = rng.integers(0, n_batches, size=max(1, min(samples // batch_size, n_batches)), dtype=np.int64)
        idx = order.indices(first[:, None] * batch_size + np.arange(batch_size))
        group = np.sort(np.searchsorted(starts, idx, side="right") - 1, axis=1)
        per_batch = float((1 + np.count_nonzero(np.diff(group, axis=1), axis=1)).mean())
    else:
        per_batch = float("nan")
    return ShuffleQuality(
        displacement=float(np.abs(d).mean() / n),
        spearman=1.0 - 6.0 * float(np.mean(d * d)) / (float(n) ** 2 - 1),
        blocks_per_batch=per_batch,
        uniform_blocks_per_batch=_uniform_blocks(np.diff(np.append(starts, n)), n, batch_size),
    )


def compare_shuffles(n: int = 1_000_000, block: int = 1024, batch_size: int = 64,
                     seed: int = 0, windows: tuple[int, ...] = (1, 8, 64)
                     ) -> list[tuple[str, ShuffleQuality]]:
    """The metrics of "full", "block" at each window, and "none" on n records in equal blocks."""
    starts = np.arange(0, n, block, dtype=np.int64)
    orders = [("full", FullShuffle(n, seed, 0))]
    orders += [(f"block, window {w}", BlockShuffle(starts, n, seed, 0, window=w)) for w in windows]
    orders.append(("none", SequentialOrder(n)))
    return [(name, shuffle_quality(order, starts, batch_size)) for name, order in orders]


def as_markdown(rows: list[tuple[str, ShuffleQuality]], batch_size: int = 64) -> str:
    """compare_shuffles' rows as a Markdown table for the docs."""
    lines = [f"| order | displacement (uniform ~0.333) | Spearman rho | blocks per batch of "
             f"{batch_size} (uniform {rows[0][1].uniform_blocks_per_batch:.1f}) |",
             "|---|---|---|---|"]
    lines += [f"| {name} | {q.displacement:.4f} | {q.spearman:+.4f} | {q.blocks_per_batch:.2f} |"
              for name, q in rows]
    return "\n".join(lines)


def _uniform_blocks(sizes: np.ndarray, n: int, k: int) -> float:
    # E[distinct] = sum over blocks of P(block hit) = 1 - C(n - s, k) / C(n, k)
    i = np.arange(min(k, n), dtype=np.float64)
    sizes = sizes[sizes > 0].astype(np.float64)
    miss = np.prod(np.clip((n - sizes[:, None] - i) / (n - i), 0.0, None), axis=1)
    return float(np.sum(1.0 - miss))
