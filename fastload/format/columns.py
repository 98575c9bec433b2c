"""Turn source columns (NumPy, pyarrow or Python lists) into the two stored forms, finding bad rows.

Fixed fields become one ``(n, *shape)`` array; variable fields become a :class:`VarColumn`
(``n+1`` int64 offsets into one uint8 buffer); a field with nulls also gets a row mask. Rows whose
values do not fit their field are not raised here: they are returned with a reason, and the caller
(writer or pack driver) applies its ``on_error`` policy in one place. Each field's conversion is
in :mod:`.convert`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import SchemaError
from .convert import convert_field
from .schema import Schema
from .varcolumn import VarColumn

__all__ = ["Converted", "VarColumn", "convert_columns", "filter_rows", "row_bytes", "slice_converted",
           "validity"]


class Converted(dict):
    """Converted columns by field name, plus ``valid``: a bool row mask (True = a value) for each
    field with at least one null in these rows. A plain dict is read as rows without nulls."""

    def __init__(self, columns: Any = (), valid: dict[str, np.ndarray] | None = None):
        super().__init__(columns)
        self.valid = dict(valid or {})


def validity(conv: dict) -> dict[str, np.ndarray]:
    """The row masks of the fields with nulls (none for a plain dict of columns)."""
    return getattr(conv, "valid", {})


def column_length(col: Any) -> int:
    return len(col)


def convert_columns(schema: Schema, columns: dict[str, Any], n: int) -> tuple[Converted, dict[int, str]]:
    """Convert every field's column; returns the converted columns and ``{row: reason}`` of bad rows.

    When bad rows are found, the converted columns are not meaningful: filter the source rows with
    :func:`filter_rows` and convert again.
    """
    missing = [f.name for f in schema if f.name not in columns]
    if missing:
        raise SchemaError(f"records lack fields {missing} of the schema ({schema.describe()})")
    extra = sorted(set(columns) - set(schema.names))
    if extra:
        raise SchemaError(f"records have fields {extra} that are not in the schema ({schema.describe()})")
    out = Converted()
    bad: dict[int, str] = {}
    for f in schema:
        col = columns[f.name]
        if column_length(col) != n:
            raise SchemaError(f"column {f.name!r} has {column_length(col)} rows, expected {n}")
        value, valid, field_bad = convert_field(f, col, n)
        out[f.name] = value
        if valid is not None and not valid.all():
            out.valid[f.name] = valid
        for row, reason in field_bad.items():
            bad.setdefault(row, f"field {f.name!r}: {reason}")
    return out, bad


def filter_rows(columns: dict[str, Any], keep: np.ndarray) -> dict[str, Any]:
    """Keep the rows where ``keep`` is True, whatever each column's type."""
    out = {}
    for name, col in columns.items():
        if isinstance(col, np.ndarray):
            out[name] = col[keep]
        elif _is_arrow(col):
            import pyarrow as pa

            out[name] = col.filter(pa.array(keep))
        else:
            out[name] = [v for v, k in zip(col, keep) if k]
    return out


def row_bytes(schema: Schema, conv: Converted, n: int) -> np.ndarray:
    """Raw stored bytes of each row (fixed part + variable payloads + their offsets); validity
    bitmaps are not counted, so nulls never move a block boundary."""
    sizes = np.full(n, schema.fixed_row_bytes, dtype=np.int64)
    for f in schema:
        if not f.is_fixed:
            sizes += conv[f.name].lengths() + 4
    return sizes


def slice_converted(conv: Converted, start: int, stop: int) -> Converted:
    return Converted(
        {k: (v.take_range(start, stop) if isinstance(v, VarColumn) else v[start:stop]) for k, v in conv.items()},
        {k: m[start:stop] for k, m in validity(conv).items() if not m[start:stop].all()},
    )


def _is_arrow(col: Any) -> bool:
    return type(col).__module__.startswith("pyarrow")


