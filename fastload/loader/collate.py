"""From gathered columns to what the training step gets: tensors, rows, padded batches.

One place turns a gathered batch (fixed fields as arrays, variable ones as
:class:`~fastload.format.columns.VarColumn`) into the user's batch, whatever carried it there:

* :func:`to_torch`: the loader's default batch (tensors for fixed fields and padded ones, lists
  for the others), on the fast path and in :class:`FastloadCollate`;
* :func:`rows_of`: one dict per record, exactly what ``Dataset.__getitems__`` gives torch's
  DataLoader, for a user's ``collate_fn`` running in fastload's workers;
* :class:`Pad` and :func:`pad_columns`: variable-length numeric fields padded to the batch's
  longest row (or a fixed length, or a multiple), with a mask, by one native call per field.

:class:`FastloadCollate` is the ``collate_fn`` attribute of a loader over a fastload dataset, so
a framework that rebuilds the loader as torch's (Accelerate's ``prepare``, the HF Trainer) still
gets the same batch: the selected ``fields``, variable fields as lists (no ``torch.stack`` of
unequal rows) and the padding.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from .. import _native
from ..errors import SchemaError
from ..format.columns import VarColumn
from ..format.decode import batch_entries
from ..format.schema import VALID_SUFFIX, Schema
from ..format.varcolumn import NullableColumn
from .batch_form import torch_entries
from .buffers import buffer_entries, slot_buffers, slot_column


@dataclass(frozen=True)
class Pad:
    """How to pad one variable-length 1-D numeric field into an ``(n, length)`` tensor.

    ``value``: the fill; ``length``: pad (and truncate) every batch to this many items, or
    ``None`` for the batch's longest row; ``multiple``: round the length up to a multiple (8 or 64
    suit tensor cores); ``mask``: name of the ``(n, length)`` int64 mask (1 for data, 0 for
    padding) added to the batch, ``None`` for none (default ``"<field>_mask"``).
    """

    value: float = 0
    length: int | None = None
    multiple: int | None = None
    mask: str | None = ""

    def __post_init__(self) -> None:
        if isinstance(self.value, bool) or not isinstance(self.value, numbers.Real):
            raise ValueError(f"Pad.value must be a number, not {self.value!r}")
        for name in ("length", "multiple"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1):
                raise ValueError(f"Pad.{name} must be a positive integer or None, not {v!r}")
        if self.mask is not None and not isinstance(self.mask, str):
            raise ValueError(f"Pad.mask must be a field name or None, not {self.mask!r}")

    def width(self, longest: int) -> int:
        width = self.length if self.length is not None else longest
        if self.multiple:
            width = -(-width // self.multiple) * self.multiple
        return width


@dataclass
class PaddedColumn:
    """A padded field of one batch: values ``(n, width)``, its mask (or None), and for a field
    with nulls its validity (null rows are all padding)."""

    values: np.ndarray
    mask: np.ndarray | None
    valid: np.ndarray | None = None


def normalise_pad(pad: Mapping[str, Any] | None, schema: Schema | None, fields) -> dict[str, Pad]:
    """``{"tokens": 0}`` or ``{"tokens": Pad(...)}`` checked against the schema: field -> Pad."""
    if not pad:
        return {}
    if schema is None:
        raise ValueError("pad= needs a fastload dataset (it pads in the native gather)")
    if not isinstance(pad, Mapping):
        raise TypeError(f"pad must map field names to a fill value or a fastload.Pad, not {type(pad).__name__}")
    out = {}
    for name, spec in pad.items():
        p = spec if isinstance(spec, Pad) else Pad(value=spec)
        if p.mask == "":
            p = Pad(p.value, p.length, p.multiple, f"{name}_mask")
        if name not in schema:
            raise SchemaError(f"pad names {name!r}; the dataset has {schema.names}")
        f = schema[name]
        if f.is_fixed or f.kind != "array" or len(f.shape) != 1:
            raise SchemaError(f"pad: field {name!r} is {f.describe() if hasattr(f, 'describe') else f.kind}; "
                              "only variable-length 1-D numeric fields (e.g. uint16[-1]) can be padded")
        if fields is not None and name not in fields:
            raise ValueError(f"pad names {name!r}, which is not among fields={list(fields)}")
        if p.mask is not None and (p.mask in schema or p.mask in out):
            raise ValueError(f"pad: the mask name {p.mask!r} of field {name!r} is already a field")
        out[name] = p
    return out


def pad_column(col: VarColumn, dtype: np.dtype, pad: Pad) -> PaddedColumn:
    """Pad one gathered variable column: one native copy, the fill and mask vectorised."""
    byte_lengths = np.diff(col.offsets)
    lengths = byte_lengths // dtype.itemsize
    width = pad.width(int(lengths.max()) if len(lengths) else 0)
    values = np.empty((len(lengths), width), dtype=dtype)
    # one native copy from the gathered buffer, bounds-checked against it; rows past a length are zeroed
    _native.gather_padded(col.data, np.ascontiguousarray(col.offsets, dtype=np.int64), width * dtype.itemsize,
                          values.view(np.uint8))
    mask = np.arange(width) < np.minimum(lengths, width)[:, None] if (pad.mask or pad.value) else None
    if pad.value:
        values[~mask] = pad.value
    return PaddedColumn(values, mask.astype(np.int64) if pad.mask else None)


def pad_columns(cols: dict, schema: Schema, pads: dict[str, Pad]) -> dict:
    """``cols`` with every padded field's VarColumn replaced by its :class:`PaddedColumn`."""
    for name, p in pads.items():
        col = cols.get(name)
        if isinstance(col, _Decoded):
            col = col.column(schema[name].np_dtype)
        if isinstance(col, NullableColumn):  # nulls are empty rows: all padding, and name.valid False
            padded = pad_column(col.values, schema[name].np_dtype, p)
            cols[name] = PaddedColumn(padded.values, padded.mask, col.valid)
        elif isinstance(col, VarColumn):
            cols[name] = pad_column(col, schema[name].np_dtype, p)
    return cols


def _entries(schema: Schema, name: str, col) -> dict[str, Any]:
    """A gathered column's batch entries as NumPy/Python values (``name``, and ``name.valid``
    beside an array of a field with nulls)."""
    if isinstance(col, _Decoded):
        return {name: list(col)}
    return batch_entries(schema[name], col)


def to_torch(schema: Schema, fixed: Mapping[str, np.ndarray], var: Mapping[str, Any], names,
             pads: Mapping[str, Pad] | None = None, strings: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The loader's default batch: fixed fields as tensors (no copy), padded fields as tensors
    with their masks, the ``strings`` fields in buffer form (tensors, no copy), other variable
    fields as lists (tensors for numeric arrays). A str/bytes field missing from ``var`` is in
    its arena among the ``fixed`` slot views (see :mod:`.buffers`)."""
    out: dict[str, Any] = {}
    for name in names:
        arr = fixed.get(name)
        if arr is not None:
            out[name] = torch.from_numpy(arr)
            continue
        col = var.get(name)
        if strings and name in strings:
            out.update(buffer_entries(schema[name], col) if col is not None else slot_buffers(schema[name], fixed))
            continue
        if col is None:
            col = slot_column(schema[name], fixed)
        if isinstance(col, PaddedColumn):
            out[name] = torch.from_numpy(col.values)
            if col.valid is not None:
                out[name + VALID_SUFFIX] = torch.from_numpy(col.valid)
            if col.mask is not None:
                out[pads[name].mask] = torch.from_numpy(col.mask)
            continue
        if isinstance(col, _Decoded):
            values = list(col)
            out[name] = [torch.from_numpy(v) for v in values] if values and isinstance(values[0], np.ndarray) \
                else values
            continue
        out.update(torch_entries(schema[name], col))  # name, and name.valid beside a nullable array
    return out


def rows_of(schema: Schema, cols: Mapping[str, Any], names) -> list[dict[str, Any]]:
    """One dict per record, as ``Dataset.__getitems__`` makes them (NumPy values, str, bytes)."""
    values = {}
    for name in names:
        col = cols[name]
        if isinstance(col, np.ndarray) and schema[name].is_dense:
            values[name] = col
        else:
            values.update(_entries(schema, name, col))
    keys = tuple(values)  # dict(zip()) per row: half the time of indexing each field (two fields, 64 rows)
    return [dict(zip(keys, row)) for row in zip(*values.values())]


class FastloadCollate:
    """The default ``collate_fn`` of a loader over a fastload dataset (see the module doc).

    Rows from ``Dataset.__getitems__`` carry their gathered columns, so a rebuilt torch loader
    makes its batch from those in one step; rows from elsewhere are stacked field by field.
    """

    def __init__(self, schema: Schema, fields=None, pad: Mapping[str, Pad] | None = None,
                 strings: Mapping[str, str] | None = None):
        self.schema = schema
        self.fields = tuple(fields) if fields is not None else None
        self.pad = dict(pad or {})
        self.strings = dict(strings or {})  # field -> "buffers": the zero-copy form (loader/buffers.py)

    @property
    def names(self) -> tuple[str, ...]:
        return self.fields if self.fields is not None else tuple(self.schema.names)

    def __call__(self, rows) -> dict[str, Any]:
        gathered = getattr(rows, "gathered", None)
        if gathered is None:
            gathered = self._columns(rows)
        names = self.names
        fixed = {n: gathered[n] for n in names if isinstance(gathered[n], np.ndarray) and self.schema[n].is_dense}
        var = {n: gathered[n] for n in names if n not in fixed}
        var = pad_columns(var, self.schema, self.pad)
        return to_torch(self.schema, fixed, var, names, self.pad, self.strings)

    def _columns(self, rows) -> dict[str, Any]:
        """Columns from plain row dicts: fixed fields stacked, variable ones re-encoded as VarColumns."""
        cols = {}
        for name in self.names:
            f = self.schema[name]
            values = [row[name] for row in rows]
            cols[name] = _Decoded(values)
            if f.is_dense:  # numbers stack; a row's datetime (ds[i] of a timestamp) stays a value
                try:
                    cols[name] = np.stack([np.asarray(v, dtype=f.np_dtype) for v in values]).reshape(
                        len(values), *f.shape)
                except (TypeError, ValueError):
                    pass
        return cols

    def __repr__(self) -> str:
        return f"FastloadCollate(fields={self.fields}, pad={self.pad}, strings={self.strings})"


class _Decoded(list):
    """Variable values already decoded (rows that did not come from ``__getitems__``)."""

    def column(self, dtype: np.dtype) -> VarColumn:
        """The values as a VarColumn of ``dtype`` items, for padding."""
        arrays = [np.ascontiguousarray(v, dtype=dtype).reshape(-1) for v in self]
        offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
        np.cumsum([a.nbytes for a in arrays], out=offsets[1:])
        data = np.concatenate([a.view(np.uint8) for a in arrays]) if arrays else np.zeros(0, np.uint8)
        return VarColumn(offsets, data)
