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
import torch

from ..errors import SchemaError
from ..format.columns import VarColumn
from ..format.dataset import Dataset
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
        if name + OFFSETS_SUFFIX in schema:
            raise SchemaError(f"strings: the buffer form of {name!r} adds {name + OFFSETS_SUFFIX!r}, which is "
                              "already a field")
        if mode == "buffers":
            out[name] = mode
    return out


# -- the arenas in a slot layout ----------------------------------------------------------------------
def arena_name(field: str) -> str:
    return ARENA_PREFIX + field


def with_arenas(layout: SlotLayout, ds: Any, fields) -> SlotLayout:
    """``layout`` plus an arena for each loaded str/bytes field of a fastload Dataset (other
    datasets' gathers take no ``out`` for them: their fields travel as VarColumns)."""
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


def _parts(arena: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, payload room) of an arena view of ``n`` rows, the same on both sides (a few
    slices: the thread workers and the consumer share the GIL, so each us here is one of theirs)."""
    flat = arena.reshape(-1)
    return flat[: 8 * n + 8].view(np.int64), flat[_header(n):]


def _valid(arena: np.ndarray, n: int) -> np.ndarray:
    """The validity of an arena view of ``n`` rows (written only for a field with nulls)."""
    v0 = _align(8 * (n + 1))
    return arena.reshape(-1)[v0 : v0 + n].view(np.bool_)


# -- the worker's side --------------------------------------------------------------------------------
def gather_fields(ds: Any, indices: np.ndarray, fixed: list[str], var: list[str],
                  slot: Mapping[str, np.ndarray]) -> dict:
    """Gather a batch: the ``fixed`` fields into their ``slot`` arrays and the ``var`` fields with
    an arena into it (both left out of the result), the other variable fields (and any batch too
    large for its arena) as columns.

    The arena fields without nulls join the fixed fields' call, on the one-C-call-per-field path
    (a second call cost ~5 us a batch); fields that leave that path (nulls, other kinds) are
    gathered apart, so they never take the fixed fields off it.
    """
    n = len(indices)
    arenas = {name: _parts(slot[arena_name(name)], n) for name in var if arena_name(name) in slot}
    joined = [name for name in arenas if not ds.schema[name].nullable]
    rest = [name for name in var if name not in joined]
    out: dict[str, Any] = {name: slot[name] for name in fixed}
    out.update((name, VarColumn(*arenas[name])) for name in joined)
    cols = ds.gather(indices, fixed + joined, out=out) if out else {}
    for name in fixed:
        del cols[name]
    if rest:
        cols.update(ds.gather(indices, rest, out={name: VarColumn(*arenas[name]) for name in rest if name in arenas}))
    for name, (offsets, room) in arenas.items():
        col = cols[name]
        values = col.values if isinstance(col, NullableColumn) else col
        fits = values.data.nbytes <= room.nbytes
        if values.offsets is not offsets or not fits:  # the gather's own arrays (it puts what fits in out)
            if not fits:
                continue  # too large for the arena: sent beside the slot
            offsets[:] = values.offsets - values.offsets[0]
            room[: values.data.nbytes] = values.data
        if isinstance(col, NullableColumn):
            _valid(slot[arena_name(name)], n)[:] = col.valid
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
            if name not in cols:  # its payload bytes (offsets[n]), as a VarColumn sent beside the slot counts
                total += int(_parts(arena, len(arena))[0][-1])
        return total

    return correction


# -- the consumer's side ------------------------------------------------------------------------------
def slot_column(f: Field, slot: Mapping[str, np.ndarray]):
    """A field's VarColumn (NullableColumn with nulls) as views of its arena in the slot."""
    arena = slot[arena_name(f.name)]
    n = len(arena)
    offsets, room = _parts(arena, n)
    col = VarColumn(offsets, room[: offsets[n]])
    return NullableColumn(col, _valid(arena, n)) if f.nullable else col


def slot_buffers(f: Field, slot: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """:func:`buffer_entries` of a field in its arena, made straight from the slot."""
    arena = slot[arena_name(f.name)]
    n = len(arena)
    offsets, room = _parts(arena, n)
    out = {f.name: torch.from_numpy(room[: offsets[n]]), f.name + OFFSETS_SUFFIX: torch.from_numpy(offsets)}
    if f.nullable:
        out[f.name + VALID_SUFFIX] = torch.from_numpy(_valid(arena, n))
    return out


def buffer_entries(f: Field, col: Any) -> dict[str, Any]:
    """The buffer form of a gathered str/bytes field: ``name`` (uint8 bytes), ``name.offsets``
    (int64, n + 1, from 0) and, for a field with nulls, ``name.valid``; tensors share the
    column's memory. ``col`` is a VarColumn, a NullableColumn, or a list of values (a row's)."""
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
