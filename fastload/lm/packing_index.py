"""Build a packing index from document lengths: the settings, the lengths scan, the build itself.

The pure arithmetic is in :mod:`fastload.plan.packing`; best-fit's bin assignment is the Numba
kernel :func:`fastload._kernels.packing.best_fit`. This module reads the document lengths of a
dataset (from its blocks' offset tables, without copying a token) and runs the right builder.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import SchemaError
from ..format.dataset import Dataset
from ..plan.packing import (
    POLICIES, TAILS, PackingIndex, assemble_bins, cut_windows, document_order, split_documents,
)

# Records whose lengths are read per call: ~30 ms of planning and 8 MB of int64 per call.
_SCAN_CHUNK = 1 << 20
TOKEN_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")


@dataclass(frozen=True)
class PackingConfig:
    """What an index depends on besides the dataset (part of its cache key)."""

    field: str
    seq_len: int
    policy: str = "cut"
    tail: str = "drop"
    stride: int | None = None
    separator: bool = False  # a separator token follows each document (its value is not in the index)
    seed: int | None = 0  # document order: a keyed shuffle, or the dataset's order for None

    def __post_init__(self) -> None:
        if isinstance(self.seq_len, bool) or not isinstance(self.seq_len, (int, np.integer)) or self.seq_len < 1:
            raise ValueError(f"seq_len must be a positive integer, not {self.seq_len!r}")
        object.__setattr__(self, "seq_len", int(self.seq_len))
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, not {self.policy!r}")
        if self.tail not in TAILS:
            raise ValueError(f"tail must be one of {TAILS}, not {self.tail!r}")
        if self.stride is not None:
            if self.policy != "cut":
                raise ValueError("stride applies to policy 'cut' only")
            if not 1 <= int(self.stride) <= self.seq_len:
                raise ValueError(f"stride must be in [1, seq_len={self.seq_len}], not {self.stride!r}")
            object.__setattr__(self, "stride", int(self.stride))
        if self.seed is not None:
            object.__setattr__(self, "seed", int(self.seed))

    def to_json(self) -> dict:
        return asdict(self)


def token_field(ds, field: str):
    """The schema field holding documents: a 1-D variable-length integer array."""
    try:
        f = ds.schema[field]
    except KeyError:
        raise SchemaError(f"{ds!r} has no field {field!r} (fields: {ds.schema.names})") from None
    if f.kind != "array" or f.shape != (-1,) or f.dtype not in TOKEN_DTYPES:
        raise SchemaError(f"field {field!r} is {f.spec}: packing needs a variable-length integer array "
                          f"(e.g. uint16[-1] or int32[-1])")
    return f


def document_lengths(ds: Dataset, field: str) -> np.ndarray:
    """Tokens in each record's ``field``, read from the blocks' offset tables (no token copied)."""
    f = token_field(ds, field)
    out = np.empty(len(ds), dtype=np.int64)
    for lo in range(0, len(ds), _SCAN_CHUNK):
        hi = min(lo + _SCAN_CHUNK, len(ds))
        with ds.var_payloads(np.arange(lo, hi, dtype=np.int64), field) as (_, nbytes):
            out[lo:hi] = nbytes
    itemsize = f.np_dtype.itemsize
    if np.any(out % itemsize):
        bad = int(np.flatnonzero(out % itemsize)[0])
        raise SchemaError(f"{ds.locate(bad)}: field {field!r} holds {int(out[bad])} bytes, not a whole "
                          f"number of {f.dtype} tokens")
    return out // itemsize


def build_index(lengths: np.ndarray, config: PackingConfig) -> PackingIndex:
    """The packing index of documents with these token counts."""
    order = document_order(len(lengths), config.seed)
    if config.policy == "cut":
        return cut_windows(lengths, config.seq_len, order=order, separator=config.separator,
                           tail=config.tail, stride=config.stride)
    from .._kernels.packing import best_fit  # Numba: only best-fit builds pay its import

    sizes, which, lo, hi = split_documents(lengths, config.seq_len, order=order, separator=config.separator)
    placed = np.argsort(-sizes, kind="stable")  # decreasing; equal sizes keep the document order
    bin_of = np.empty(len(sizes), dtype=np.int64)
    n_bins = best_fit(sizes[placed], config.seq_len, bin_of)
    return assemble_bins(config.seq_len, bin_of, n_bins, which[placed], lo[placed], hi[placed],
                         lengths, order, config.separator)
