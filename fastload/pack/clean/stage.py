"""Cleaning applied to one chunk of rows, in the order a record's drop is attributed:
invalid values (``image``, ``utf8`` before conversion; ``empty``, ``nan`` after), the filters in
the order given, then exact duplicates (among the records every earlier rule kept).

The pack's encode step calls these per chunk. All but the duplicate decision are local to the
chunk, so they run in the worker that reads it; the duplicate decision needs every earlier
record's hash and is made by the caller of :func:`drop_duplicates` (see :mod:`.ordered`).
"""

from __future__ import annotations

import json
from typing import Any, Callable

import numpy as np

from ...format.columns import filter_rows, row_bytes
from .hashing import record_hashes
from .options import CleanPlan
from .report import MAX_EXAMPLES, CleanTally
from .rows import Places
from .validate import invalid_converted_rows, invalid_source_rows

DEDUP_RULE = "dedup"


def invalid_rule(rule: str) -> str:
    return f"drop-invalid {rule}"


def filter_rule(label: str) -> str:
    return f"filter {label}"


def rule_names(plan: CleanPlan) -> list[str]:
    """The plan's rules as the report names them, in the order drops are attributed."""
    names = [invalid_rule(r) for r in plan.rules_before + plan.rules_after]
    names += [filter_rule(f.label) for f in plan.filters]
    return names + ([DEDUP_RULE] if plan.dedup is not None else [])


def before_conversion(plan: CleanPlan, columns: dict[str, Any], n: int, places: Places,
                      tally: CleanTally) -> tuple[dict[str, Any], int, Places]:
    """Drop the rows whose source values fail the ``image``/``utf8`` rules (they would not convert)."""
    for rule in plan.rules_before:
        bad = invalid_source_rows(rule, plan.schema, columns, n)
        if bad.any():
            rows = np.flatnonzero(bad)
            nbytes = _source_bytes(plan, columns, rows)
            tally.add(invalid_rule(rule), len(rows), nbytes, places.first(bad, MAX_EXAMPLES))
            columns = filter_rows(columns, ~bad)
            places = places.kept(~bad)
            n -= len(rows)
    return columns, n, places


def after_conversion(plan: CleanPlan, conv: Any, n: int, places: Places, tally: CleanTally) -> np.ndarray:
    """``keep``: the converted rows that pass the ``empty``/``nan`` rules and every filter."""
    keep = np.ones(n, dtype=bool)
    sizes = None
    checks: list[tuple[str, Callable[[], np.ndarray]]] = [
        (invalid_rule(rule), lambda rule=rule: invalid_converted_rows(rule, plan.schema, conv, n))
        for rule in plan.rules_after]
    checks += [(filter_rule(f.label), lambda f=f: ~f.keep(plan.schema, conv, n, places.origin)) for f in plan.filters]
    for name, check in checks:
        drop = check() & keep
        if drop.any():
            sizes = row_bytes(plan.schema, conv, n) if sizes is None else sizes
            tally.add(name, int(drop.sum()), int(sizes[drop].sum()), places.first(drop, MAX_EXAMPLES))
            keep &= ~drop
    return keep


def hashes_of(plan: CleanPlan, conv: Any, n: int) -> np.ndarray:
    """The dedup hash of each converted row, ``(n, 2)`` uint64."""
    return record_hashes(plan.schema, conv, n, plan.dedup, plan.normalize)


def drop_duplicates(plan: CleanPlan, conv: Any, n: int, places: Places, keep: np.ndarray,
                    is_first: np.ndarray, tally: CleanTally) -> np.ndarray:
    """``keep`` with the rows it holds that are not first occurrences (``is_first`` gives one
    answer per kept row, in order) dropped and counted."""
    dup = np.zeros(n, dtype=bool)
    dup[np.flatnonzero(keep)[~is_first]] = True
    if dup.any():
        sizes = row_bytes(plan.schema, conv, n)
        tally.add(DEDUP_RULE, int(dup.sum()), int(sizes[dup].sum()), places.first(dup, MAX_EXAMPLES))
    return keep & ~dup


def _source_bytes(plan: CleanPlan, columns: dict[str, Any], rows: np.ndarray) -> int:
    """The bytes of the values in ``rows`` of source ``columns`` (rows too broken to convert)."""
    total = 0
    for f in plan.schema:
        if f.is_fixed:
            total += f.itemsize * len(rows)
            continue
        col = columns.get(f.name)
        for i in rows:
            total += _value_bytes(col[int(i)] if col is not None else None) + 4
    return total


def _value_bytes(v: Any) -> int:
    if hasattr(v, "as_py"):  # an Arrow scalar
        v = v.as_py()
    if v is None:
        return 0
    if isinstance(v, (bytes, bytearray, memoryview)):
        return memoryview(v).nbytes
    if isinstance(v, str):
        return len(v.encode("utf-8", "surrogatepass"))
    if isinstance(v, np.ndarray):
        return v.nbytes
    return len(json.dumps(v, default=str))
