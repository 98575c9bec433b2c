"""str and bytes fields through the batch slot, and their zero-copy form (``strings="buffers"``).

Workers gather each str/bytes field of a fastload Dataset with the native variable-length gather
straight into an *arena*: one extra field of the slot, laid out for a batch of ``n`` rows as

    [ offsets: n + 1 int64, from 0 | valid: n bools | payloads back to back ]   (64-byte aligned)

so nothing of the field crosses a pipe: a process worker's result stays a fixed struct, and the
consumer reads the field from its own mapping of the slot. There it becomes either the default
``list[str]``/``list[bytes]`` (decoded, so the values outlive the slot), or, with
``strings="buffers"``, two tensors that are views of the slot (valid until the next batch, as
every slot tensor): ``batch[name]`` the uint8 bytes and ``batch[name + ".offsets"]`` the int64
offsets (row ``i`` is ``bytes(batch[name][o[i]:o[i+1]])``), plus ``batch[name + ".valid"]`` for a
field with nulls (a null is an empty row there, as an array's null is zeros). The buffer form never
decodes: bytes that are not valid UTF-8 are delivered as stored.

A batch larger than its arena (``arena_room``) travels beside the slot as a VarColumn, as a
field of any other dataset does; the consumer's result is the same.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from ..errors import SchemaError
from ..format.columns import VarColumn
from ..format.schema import VALID_SUFFIX, Field, Schema
from ..format.varcolumn import NullableColumn
from .slots import ALIGN, SlotLayout

MODES = ("list", "buffers")
KINDS = ("str", "bytes")  # the field kinds with a buffer form
OFFSETS_SUFFIX = ".offsets"
ARENA_PREFIX = "\x00arena:"  # + name: the slot field holding a str/bytes field's batch
ARENA_MIN, ARENA_MAX = 1 << 20, 16 << 20  # payload room per slot and field; only touched pages are backed


def normalise_strings(strings: str | Mapping[str, str] | None, schema: Schema | None, fields) -> dict[str, str]:
    """``"buffers"`` (every loaded str/bytes field) or ``{"text": "buffers"}`` checked against
    the schema: field -> mode, for the fields given in buffer form."""
    if strings is None or strings == "list":
        return {}
    if schema is None:
        raise ValueError("strings='buffers' needs a fastload dataset (its fields are gathered natively)")
    loaded = schema.names if fields is None else list(fields)
    if isinstance(strings, str):
        if strings not in MODES:
            raise ValueError(f"strings must be one of {MODES} or a dict of field -> mode, not {strings!r}")
        spec = {n: strings for n in loaded if schema[n].kind in KINDS}
    elif isinstance(strings, Mapping):
        spec = dict(strings)
    else:
        raise TypeError(f"strings must be one of {MODES} or a dict of field -> mode, not {type(strings).__name__}")
    out = {}
    for name, mode in spec.items():
        if mode not in MODES:
            raise ValueError(f"strings: field {name!r} has mode {mode!r}; valid: {MODES}")
        if name not in schema:
            raise SchemaError(f"strings names {name!r}; the dataset has {schema.names}")
        if name not in loaded:
            raise ValueError(f"strings names {name!r}, which is not among fields={list(fields)}")
        if schema[name].kind not in KINDS:
            raise SchemaError(f"strings: field {name!r} is a {schema[name].kind} field; only {KINDS} fields "
                              "have a buffer form")
        taken = [k for k in (name + OFFSETS_SUFFIX,) if k in schema]
        if taken:
            raise SchemaError(f"strings: the buffer form of {name!r} adds {taken[0]!r}, which is already a field")
        if mode == "buffers":
            out[name] = mode
    return out


# -- the arenas in a slot layout ----------------------------------------------------------------------
def arena_name(field: str) -> str:
    return ARENA_PREFIX + field


def with_arenas(layout: SlotLayout, ds: Any, fields) -> SlotLayout:
    """``layout`` plus an arena for each loaded str/bytes field of a fastload Dataset (other
    datasets' gathers take no ``out`` for them: their fields travel as VarColumns)."""
    from ..format.dataset import Dataset

    if not isinstance(ds, Dataset):
        return layout
    names = ds.schema.names if fields is None else list(fields)
    text = [n for n in names if ds.schema[n].kind in KINDS]
    if not text or any(arena_name(n) in ds.schema for n in text):  # (a name no one gives a field)
        return layout
    bs = layout.batch_size
    # room for 4x the dataset's mean stored record (compression, longer rows), within bounds
    mean = ds.manifest.n_bytes / max(len(ds), 1)
    room = int(min(max(4 * bs * mean, ARENA_MIN), ARENA_MAX))
    per_row = -(-(_header(bs) + room) // bs)
    return SlotLayout(bs, layout.fields + tuple((arena_name(n), "|u1", (per_row,)) for n in text))


def without_arenas(layout: SlotLayout) -> SlotLayout:
    """The layout of the slot's fixed fields alone."""
    return SlotLayout(layout.batch_size, tuple(f for f in layout.fields if not f[0].startswith(ARENA_PREFIX)))


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def _header(n: int) -> int:
    """Bytes before the payloads in an arena holding ``n`` rows: offsets, then validity."""
    return _align(_align(8 * (n + 1)) + n)


def _parts(arena: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(offsets, valid, payload room) of an arena view of ``n`` rows, the same on both sides."""
    flat = arena.reshape(-1)
    v0 = _align(8 * (n + 1))
    return flat[: 8 * (n + 1)].view(np.int64), flat[v0 : v0 + n].view(np.bool_), flat[_header(n):]


# -- the worker's side --------------------------------------------------------------------------------
def gather_var(ds: Any, indices: np.ndarray, var: list[str], slot: Mapping[str, np.ndarray]) -> dict:
    """The variable fields of a batch: those with an arena in ``slot`` gathered into it (left out
    of the result), the others (and any batch too large for its arena) as columns."""
    arenas = {n: _parts(slot[arena_name(n)], len(indices)) for n in var if arena_name(n) in slot}
    if not arenas:
        return ds.gather(indices, var)
    cols = ds.gather(indices, var, out={n: VarColumn(o, room) for n, (o, _, room) in arenas.items()})
    for name, (offsets, valid, room) in arenas.items():
        col = cols[name]
        values = col.values if isinstance(col, NullableColumn) else col
        fits = values.data.nbytes <= room.nbytes
        if values.offsets is not offsets or not fits:  # the gather's own arrays (it puts what fits in out)
            if not fits:
                continue  # too large for the arena: sent beside the slot
            offsets[:] = values.offsets - values.offsets[0]
            room[: values.data.nbytes] = values.data
        if isinstance(col, NullableColumn):  # (read only for a field with nulls)
            valid[:] = col.valid
        del cols[name]
    return cols


def arena_bytes(layout: SlotLayout) -> Callable[[dict, dict], int] | None:
    """For the loader's statistics: the payload bytes a batch's arenas hold minus the room the
    slot's row size counts for them (None when the layout has none)."""
    names = [n[len(ARENA_PREFIX):] for n in layout.names if n.startswith(ARENA_PREFIX)]
    if not names:
        return None

    def correction(fixed: dict, cols: dict) -> int:
        total = 0
        for name in names:
            arena = fixed[arena_name(name)]
            total -= arena.nbytes
            if name not in cols:  # its payload bytes, as a VarColumn sent beside the slot counts
                n = len(arena)
                total += int(_parts(arena, n)[0][n])
        return total

    return correction


# -- the consumer's side ------------------------------------------------------------------------------
def slot_column(f: Field, slot: Mapping[str, np.ndarray]):
    """A field's VarColumn (NullableColumn with nulls) as views of its arena in the slot."""
    arena = slot[ARENA_PREFIX + f.name]
    n = len(arena)
    offsets, valid, room = _parts(arena, n)
    col = VarColumn(offsets, room[: offsets[n]])
    return NullableColumn(col, valid) if f.nullable else col


def buffer_entries(f: Field, col: Any) -> dict[str, Any]:
    """The buffer form of a gathered str/bytes field: ``name`` (uint8 bytes), ``name.offsets``
    (int64, n + 1, from 0) and, for a field with nulls, ``name.valid``; tensors share the
    column's memory. ``col`` is a VarColumn, a NullableColumn, or a list of values (a row's)."""
    import torch

    if isinstance(col, list):  # rows that did not come from a gather: str/bytes or None
        valid = np.array([v is not None for v in col], dtype=bool)
        payloads = [b"" if v is None else (v.encode("utf-8") if isinstance(v, str) else bytes(v)) for v in col]
        col = VarColumn.from_payloads(payloads)
        col = VarColumn(col.offsets, col.data.copy())  # writable, as torch wants
        col = NullableColumn(col, valid) if f.nullable or not valid.all() else col
    values, valid = (col.values, col.valid) if isinstance(col, NullableColumn) else (col, None)
    offsets = values.offsets
    if offsets[0]:  # a VarColumn sliced from a larger one
        offsets = offsets - offsets[0]
    out = {f.name: torch.from_numpy(values.data), f.name + OFFSETS_SUFFIX: torch.from_numpy(offsets)}
    if valid is not None or f.nullable:
        out[f.name + VALID_SUFFIX] = torch.from_numpy(valid if valid is not None else np.ones(len(values), bool))
    return out
