"""The read interface that packed and mixed datasets share with :class:`fastload.Dataset`.

A subclass provides ``schema``, ``__len__`` and ``gather(indices, fields, out=)`` (fixed fields
as arrays, written into ``out`` when given; variable ones as VarColumns); this base adds
``get_batch``, ``ds[i]``, ``__getitems__`` (for torch's DataLoader) and iteration on top, the
same way :class:`~fastload.format.dataset.Dataset` builds them on its gather.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np

from ..format.dataset import decode_var


class BatchReadable:
    """``get_batch``, ``ds[i]``, ``__getitems__`` and iteration over a subclass's ``gather``."""

    schema: Any

    def __len__(self) -> int:  # pragma: no cover - provided by subclasses
        raise NotImplementedError

    def gather(self, indices, fields=None, out=None) -> dict:  # pragma: no cover
        raise NotImplementedError

    def finish_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Batch-level outputs computed from the decoded records (none by default)."""
        return batch

    def decode(self, cols: dict[str, Any], pad: bool = False) -> dict[str, Any]:
        """Python values of gathered columns: fixed fields as they are, variable ones decoded."""
        return {name: col if self.schema[name].is_fixed else decode_var(self.schema[name], col, pad)
                for name, col in cols.items()}

    def get_batch(self, indices: Sequence[int] | np.ndarray, fields: Sequence[str] | None = None,
                  *, pad: bool = False) -> dict[str, Any]:
        """Records ``indices`` as one batch: fixed fields stacked, plus batch-level outputs."""
        return self.finish_batch(self.decode(self.gather(indices, fields), pad))

    def _check_index(self, i) -> int:
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"dataset indices must be integers, not {type(i).__name__}; use get_batch for many")
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of range for a dataset of {n} records")
        return int(i) % n if n else int(i)

    def __getitem__(self, i: int) -> dict[str, Any]:
        values = self.decode(self.gather(np.array([self._check_index(i)], dtype=np.int64)))
        return {name: (v[0] if not isinstance(v, np.ndarray) or v.ndim else v.item()) for name, v in values.items()}

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """Batched fetch for torch's DataLoader: one gather, then one dict per record."""
        values = self.decode(self.gather(np.asarray(indices, dtype=np.int64)))
        return [{name: v[k] for name, v in values.items()} for k in range(len(indices))]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        step = 256
        for lo in range(0, len(self), step):
            values = self.decode(self.gather(np.arange(lo, min(lo + step, len(self)), dtype=np.int64)))
            for k in range(min(step, len(self) - lo)):
                yield {name: v[k] for name, v in values.items()}


def check_indices(indices, n: int) -> np.ndarray:
    """int64 indices in [0, n) (negative ones wrap), or IndexError naming the first bad one."""
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < -n or idx.max() >= n):
        bad = int(idx[(idx < -n) | (idx >= n)][0])
        raise IndexError(f"index {bad} is out of range for a dataset of {n} records")
    return np.where(idx < 0, idx + n, idx) if idx.size and idx.min() < 0 else idx


def check_out(schema, out: dict[str, np.ndarray] | None, n: int) -> dict[str, np.ndarray]:
    """Validated ``out`` arrays: writable, C-contiguous, of each fixed field's dtype and shape."""
    out = out or {}
    for name, arr in out.items():
        f = schema[name]
        if (not f.is_fixed or arr.shape != (n, *f.shape) or arr.dtype != f.np_dtype
                or not arr.flags.c_contiguous or not arr.flags.writeable):
            raise ValueError(f"out[{name!r}] must be a writable C-contiguous {f.np_dtype} array of "
                             f"shape {(n, *f.shape)}")
    return out
