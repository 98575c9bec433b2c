"""A dataset's fields as plain tables for gathers that run without Python.

:func:`map_fields` maps every shard of a local dataset of raw shards and hands out the
global block tables of :func:`fastload._native.gather_multi` and ``gather_var_multi`` (the same
C gathers, with the same bounds checks, run by the loader's C worker threads), with each block's expected checksum and
its "checked" flag (the tables' own, so a block checked by either side is checked once). The
tables stay valid while the dataset lives and keeps every shard mapped, which a local dataset
with no ``max_open`` bound does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import FormatError
from .dataset import Dataset
from .gather_tables import GatherTables
from .local_shards import LocalShards

# Every shard stays mapped (one mapping each), far below Linux's default vm.max_map_count (65,530)
MAX_SHARDS = 4096


@dataclass(frozen=True)
class MappedFields:
    """The tables of a gather of ``columns`` over every shard of a dataset, all mapped."""

    starts: np.ndarray  # cumulative records per shard (n_shards + 1)
    tables: GatherTables
    columns: tuple[tuple[str, np.ndarray, int], ...]  # (field, its column's address in every block, itemsize: 0 variable)
    checksums: np.ndarray  # uint64 per block row: xxh3_64 of the block's bytes [block_lo, block_hi)


def map_fields(ds: Dataset, fields: Sequence[str]) -> MappedFields | None:
    """Map every shard and return the tables for ``fields``, or None where the C gathers do not
    apply: not a local dataset of raw shards kept mapped, ``verify="always"``, a field with nulls
    (or a fixed field of no bytes), no records, more than :data:`MAX_SHARDS` shards, or a shard that does
    not open (:meth:`Dataset.gather` then raises its error at the batch that reads it)."""
    if (type(ds) is not Dataset or not isinstance(ds.locator, LocalShards) or ds.locator.max_open is not None
            or ds.verify == "always" or not len(ds) or not fields or ds.n_shards > MAX_SHARDS):
        return None
    layouts = [ds._layouts[ds.schema.index(name)] for name in fields]
    if not all(lay.fast for lay in layouts):
        return None
    tables = ds._fast_tables
    readers = []
    for s in range(ds.n_shards):
        try:
            reader = ds.shard(s)
        except (FormatError, OSError):
            return None
        # raw blocks store their bytes as they are (the reader checked stored == raw size): the
        # checksum covers [block_lo, block_hi)
        if not reader.all_raw:
            return None
        if not tables.registered[s]:
            tables.register(s, reader)
        readers.append(reader)
    checksums = np.zeros(len(tables.block_first), dtype=np.uint64)  # rows are final: every shard joined
    for s, reader in enumerate(readers):
        checksums[tables.shard_lo[s]:tables.shard_hi[s]] = reader.blocks["checksum"]
    return MappedFields(ds._starts, tables,
                        tuple((lay.name, tables.column_addr[lay.column], lay.itemsize) for lay in layouts), checksums)
