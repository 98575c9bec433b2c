"""Counter-based random numbers keyed by (seed, epoch, stream, record index): no RNG state.

Every augmentation draw is a pure function of its key, so a record gets the same crop and flip
whatever the worker, the worker count, the batch it lands in or a resume; defined by this file's
integer arithmetic (splitmix64's finaliser), not by NumPy's generators, so an upgrade cannot
change it.
"""

from __future__ import annotations

import numpy as np

from ..plan.bijection import mix_array, mix_int

_GOLDEN = 0x9E3779B97F4A7C15
MASK64 = (1 << 64) - 1

# one stream per kind of draw, so the draws are independent of each other
STREAM_AREA, STREAM_RATIO, STREAM_TOP, STREAM_LEFT, STREAM_FLIP = 11, 12, 13, 14, 15


def uniforms(seed: int, epoch: int, stream: int, indices: np.ndarray, count: int = 1) -> np.ndarray:
    """``(len(indices), count)`` float64 uniforms in [0, 1), one row per record index."""
    key = 0
    for word in (seed, epoch, stream):
        key = mix_int((key ^ (int(word) & MASK64)) + _GOLDEN)
    idx = np.asarray(indices, dtype=np.int64).astype(np.uint64)
    counter = idx[:, None] * np.uint64(count) + np.arange(count, dtype=np.uint64)[None, :]
    with np.errstate(over="ignore"):
        x = mix_array(mix_array(counter ^ np.uint64(key)) + np.uint64(_GOLDEN))
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
