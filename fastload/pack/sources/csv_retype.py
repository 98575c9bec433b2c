"""A CSV column whose type (inferred from the file's first block) meets a value it cannot hold.

pyarrow's streaming reader then stops the whole file. The CSV source reads the file again with
that column as text and casts each block back to the inferred type here: the values that do not
fit become bad rows (named by line, skippable), and the others keep the type they had. CSV's own
null markers (``""``, ``NA``, ``null``...) stay nulls, as the first reading made them.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

_NULLS = pa.array(pacsv.ConvertOptions().null_values, pa.string())
_FAILED_COLUMN = re.compile(r"In CSV column #(\d+): Row #(\d+): CSV conversion error")
# what can be a number, checked for a whole block at once; the cast decides the rest
_LOOKS_INT = r"^[+-]?[0-9]+$"
_LOOKS_FLOAT = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$|^[+-]?(inf|nan|Inf|NaN|INF|NAN)$"
_CAST_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError)


def failed_column(message: str, names: list[str]) -> tuple[str, int] | None:
    """The column and record number (header = 1) of a conversion error message, else None."""
    match = _FAILED_COLUMN.search(message)
    if match is None or int(match.group(1)) >= len(names):
        return None
    return names[int(match.group(1))], int(match.group(2))


def from_text(text: pa.Array, target: pa.DataType) -> tuple[pa.Array, dict[int, str]]:
    """``text`` (strings) cast to ``target``, and ``{row: reason}`` for the values that do not fit
    (those rows hold null in the result)."""
    text = pc.if_else(pc.is_in(text, value_set=_NULLS), pa.scalar(None, pa.string()), text)
    try:
        return pc.cast(text, target), {}
    except _CAST_ERRORS:
        pass
    bad = np.zeros(len(text), dtype=bool)
    pattern = _LOOKS_INT if pa.types.is_integer(target) else _LOOKS_FLOAT if pa.types.is_floating(target) else None
    if pattern is not None:
        bad |= ~pc.fill_null(pc.match_substring_regex(text, pattern), True).to_numpy(zero_copy_only=False)
    values = text.to_pylist()
    kept = pc.if_else(pa.array(bad), pa.scalar(None, pa.string()), text)
    try:
        cast = pc.cast(kept, target)
    except _CAST_ERRORS:  # some values look right but still do not fit (an overflow): one at a time
        for i, v in enumerate(values):
            if v is not None and not bad[i]:
                try:
                    pc.cast(pa.array([v], pa.string()), target)
                except _CAST_ERRORS:
                    bad[i] = True
        cast = pc.cast(pc.if_else(pa.array(bad), pa.scalar(None, pa.string()), text), target)
    reasons = {int(i): f"{values[i][:40]!r} is not a {target} value, the type of this column in the "
                       "file's first rows" for i in np.flatnonzero(bad)}
    return cast, reasons
