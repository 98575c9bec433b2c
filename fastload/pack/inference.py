"""The schema a pack writes: the source's own or the one given, else inferred from its first rows.

Inference reads the source's first readable chunk (with ``on_error="raise"``, a bad row met
before it stops the pack as it would later). A column of Python values of mixed JSON kinds (a
string among numbers in JSON Lines) is inferred from its most common kind, so the odd rows become
bad rows at encoding time, named by file and line and skippable, instead of stopping the pack.
A column mostly of objects or lists stays as it is (json holds any value).
The schema is then tried on the sample's first rows: when a field fits none of them, the problem
is the schema, not the rows, and a SchemaError says so.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from ..errors import SchemaError, SkippedRowsError, SourceError
from ..format.columns import convert_columns
from ..format.infer import infer_schema
from ..format.schema import Schema, parse_overrides
from .sources.base import BadRow, Chunk, Source

_CHECK_ROWS = 1024  # sample rows converted to check an inferred schema
_SCALAR_KINDS = ("number", "str", "bool")


def resolve_schema(src: Source, known: Schema | None, segments: list, given: Any, on_error: str) -> Schema:
    """The schema to write: ``given`` when it is a full Schema, else ``known`` or the inferred
    one, with ``given``'s overrides (``"tokens:uint16[2049]"``) applied."""
    if isinstance(given, Schema):
        return given
    overrides = parse_overrides(given)
    if known is not None:
        schema = known.with_overrides(overrides) if overrides else known
        # a source's own schema fits its values by construction, except where it falls back to
        # json (Arrow types without a field kind of their own) or the user changed a type; a
        # source read once (a generator, a record batch stream) is not read ahead for the check
        if src.parallel_safe and (overrides or any(f.kind == "json" for f in schema)):
            sample, _, _ = first_chunk(src, segments, on_error)
            if sample is not None:
                check_fits(schema, sample)
        return schema
    sample, bad, n_bad = first_chunk(src, segments, on_error)
    if sample is None:
        if overrides:
            return Schema.parse(",".join(f"{k}:{v}" for k, v in overrides.items()))
        if bad is not None:
            raise SkippedRowsError(f"{src.description}: every row ({n_bad:,}) was skipped. First reason: "
                                   f"{bad.where()}: {bad.reason}")
        raise SchemaError(f"{src.description} holds no rows: nothing to infer a schema from; pass a "
                          "full schema to pack it")
    schema = infer_from(sample, overrides)  # an overridden column is not inferred
    if overrides:
        schema = schema.with_overrides(overrides)
    check_fits(schema, sample)
    return schema


def first_chunk(src: Source, segments: list, on_error: str) -> tuple[Chunk | None, BadRow | None, int]:
    """The first readable chunk of the source, the first bad row met before it and their number."""
    first_bad, n_bad = None, 0
    for seg in segments:
        for item in src.read(seg):
            if isinstance(item, Chunk) and len(item):
                return item, first_bad, n_bad
            if isinstance(item, BadRow):
                if on_error == "raise":
                    raise SourceError(f"{item.where()}: {item.reason} "
                                      "(use on_error='skip' / --on-error skip to skip such rows)")
                first_bad, n_bad = first_bad or item, n_bad + 1
    return None, first_bad, n_bad


def infer_from(sample: Chunk, overrides: dict[str, str] | None = None) -> Schema:
    """Infer from the sample; a column of Python values of mixed scalar kinds (numbers, strings,
    booleans) is inferred from its most common kind, whatever comes first. Columns in
    ``overrides`` take the type given there and are not inferred."""
    columns = {name: _most_common_kind(col) if isinstance(col, list) else col
               for name, col in sample.columns.items()}
    return _infer(sample, columns, overrides)


def _infer(sample: Chunk, columns: dict[str, Any], overrides: dict[str, str] | None = None) -> Schema:
    try:
        return infer_schema(columns, overrides)
    except (SchemaError, SourceError) as exc:
        raise SchemaError(f"{exc} (inferred from {sample.where(0)} onwards)") from None


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def _most_common_kind(values: list) -> list:
    """``values`` with those of other kinds than the most common one (first seen on a tie) as
    None, when that kind is a scalar one; a column mostly of objects or lists is json, which
    holds any value, and stays as it is."""
    kinds = Counter(_json_kind(v) for v in values if v is not None)
    if len(kinds) < 2:
        return values
    common = kinds.most_common(1)[0][0]
    if common not in _SCALAR_KINDS:
        return values
    return [v if v is not None and _json_kind(v) == common else None for v in values]


def check_fits(schema: Schema, sample: Chunk) -> None:
    """Raise SchemaError when a field fits none of the sample's first rows (the type is wrong)."""
    n = min(len(sample), _CHECK_ROWS)
    columns = {name: _head(col, n) for name, col in sample.columns.items() if name in schema}
    if set(columns) != set(schema.names):
        return  # fields the sample lacks are null in it; encoding reports those rows
    _, bad = convert_columns(schema, columns, n)
    if len(bad) < n:
        return
    reasons = Counter(reason for reason in bad.values())
    reason = reasons.most_common(1)[0][0]
    raise SchemaError(f"{sample.origin}: none of the first {n} rows ({sample.where(0)} onwards) fits "
                      f"the schema ({schema.describe()}), most for this reason: {reason}; give the "
                      "field a type that holds these values with --schema / schema=")


def _head(col: Any, n: int) -> Any:
    if isinstance(col, np.ndarray) or isinstance(col, list):
        return col[:n]
    return col.slice(0, n)
