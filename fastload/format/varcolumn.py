"""Gathered columns in memory: variable-size payloads (offsets into one byte buffer), and any
column together with the validity mask of a field with nulls."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class VarColumn:
    """``n`` variable-size payloads: row ``i`` is ``data[offsets[i]:offsets[i+1]]``."""

    offsets: np.ndarray  # int64, n + 1, offsets[0] == 0
    data: np.ndarray  # uint8

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def nbytes(self) -> int:
        return self.offsets.nbytes + self.data.nbytes

    def take_range(self, start: int, stop: int) -> "VarColumn":
        lo, hi = int(self.offsets[start]), int(self.offsets[stop])
        return VarColumn(self.offsets[start : stop + 1] - lo, self.data[lo:hi])

    @classmethod
    def from_payloads(cls, payloads: list) -> "VarColumn":
        lengths = np.fromiter((len(p) for p in payloads), dtype=np.int64, count=len(payloads))
        offsets = np.zeros(len(payloads) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        data = np.frombuffer(b"".join(payloads), dtype=np.uint8)
        return cls(offsets, data)


@dataclass
class NullableColumn:
    """A gathered column of a field with nulls: its values (an array with nulls zeroed, or a
    VarColumn with empty payloads at nulls) and ``valid``, True where a record holds a value."""

    values: "np.ndarray | VarColumn"
    valid: np.ndarray  # bool, one per record

    @classmethod
    def of(cls, values: "np.ndarray | VarColumn", valid: np.ndarray) -> "NullableColumn":
        """Values and mask, with the values of null records set to zero (the documented fill)."""
        if isinstance(values, np.ndarray) and not valid.all():
            values[~valid] = 0
        return cls(values, valid)

    def __len__(self) -> int:
        return len(self.valid)

    @property
    def nbytes(self) -> int:
        return self.values.nbytes + self.valid.nbytes
