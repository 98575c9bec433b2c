"""Gathered columns in memory: variable-size payloads (offsets into one byte buffer), and any
column together with the validity mask of a field with nulls."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _native


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

    def writable(self, n: int) -> bool:
        """Whether this can take a gather of ``n`` records (as ``Dataset.gather``'s ``out``)."""
        offsets, data = self.offsets, self.data  # (the C gathers check both buffers again)
        return (type(offsets) is np.ndarray and type(data) is np.ndarray and offsets.shape == (n + 1,)
                and offsets.dtype == np.int64 and data.dtype == np.uint8 and data.ndim == 1
                and offsets.flags.writeable and data.flags.writeable and data.flags.c_contiguous)

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


def var_output(lengths: np.ndarray, out: VarColumn | None) -> VarColumn:
    """Where a gather of payloads of these ``lengths`` goes: ``out``'s offsets (filled here) and
    its buffer when the payloads fit, else new arrays."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64) if out is None else out.offsets
    offsets[0] = 0
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    data = out.data[:total] if out is not None and total <= len(out.data) else np.empty(total, dtype=np.uint8)
    return VarColumn(offsets, data)


def gather_var_fast(tables: tuple, out: VarColumn | None, blocks: np.ndarray | None) -> VarColumn:
    """A variable field across raw shards in one native call (``tables``: gather_multi's first
    eight arguments), into ``out`` when given and the payloads fit; a second call only when they
    did not."""
    n = len(tables[0])
    offsets = np.empty(n + 1, dtype=np.int64) if out is None else out.offsets
    data = np.empty(0, dtype=np.uint8) if out is None else out.data  # none given: lengths first
    total = _native.gather_var_multi(*tables, offsets, data, blocks)
    if total > len(data):
        data = np.empty(total, dtype=np.uint8)
        _native.gather_var_multi(*tables, offsets, data, None)
    return VarColumn(offsets, data[:total])

