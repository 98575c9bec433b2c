"""Find the Python values pyarrow would change on their way into an Arrow type.

``pa.array(values, type=...)`` refuses most values that do not fit, but silently truncates some:
a float for an integer (``1.5`` -> ``1``, also inside lists and structs), a datetime, time or
timedelta finer than the type's unit (``12:00:00.5`` -> ``12:00:00`` as ``time32[s]``), a float
for a time type, a datetime for a date; and it drops the keys of a dict that are not fields of
the struct type. Storing those would be a silent wrong answer, so each such
value is found here first and its row reported as bad.
"""

from __future__ import annotations

import datetime
from typing import Any

import pyarrow as pa

_UNIT_US = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 1}  # microseconds per unit (ns: finer than Python)


def may_truncate(typ: pa.DataType) -> bool:
    """True when pyarrow may truncate a Python value converted to ``typ`` (somewhere inside it)."""
    t = pa.types
    if t.is_integer(typ) or t.is_temporal(typ):
        return True
    return any(may_truncate(typ.field(i).type) for i in range(typ.num_fields))


def truncation(v: Any, typ: pa.DataType) -> str | None:
    """Why pyarrow would change ``v`` converting it to ``typ``, or None when it would not."""
    if v is None:
        return None
    t = pa.types
    if t.is_integer(typ):
        if isinstance(v, float) or type(v).__name__.startswith("float"):
            if not float(v).is_integer():
                return f"{v!r} is not an integer"
        return None
    if t.is_temporal(typ):
        return _temporal(v, typ)
    if t.is_struct(typ):
        if isinstance(v, dict):
            extra = [k for k, x in v.items() if x is not None and typ.get_field_index(k) < 0]
            if extra:  # pyarrow would drop them (a key holding None loses nothing)
                return f"keys {extra} are not fields of {typ}"
            return _first(truncation(v.get(f.name), f.type) for f in typ)
        return None
    if t.is_map(typ):
        items = v.items() if isinstance(v, dict) else v
        return _first(truncation(k, typ.key_type) or truncation(x, typ.item_type) for k, x in _pairs(items))
    if typ.num_fields == 1 and not isinstance(v, (str, bytes, dict)):  # list kinds
        try:
            return _first(truncation(x, typ.value_type) for x in v)
        except TypeError:  # not iterable: pyarrow refuses it itself
            return None
    return None


def _temporal(v: Any, typ: pa.DataType) -> str | None:
    if isinstance(v, float) or type(v).__name__.startswith("float"):
        return None if float(v).is_integer() else f"{v!r} is not a whole number of {typ}"
    t = pa.types
    if t.is_date(typ):
        if isinstance(v, datetime.datetime) and v.time() != datetime.time(0):
            return f"{v!r} has a time of day, which {typ} drops"
        return None
    unit = getattr(typ, "unit", None)
    step = _UNIT_US.get(unit)
    if step is None:
        return None
    nanos = getattr(v, "nanosecond", 0)  # pandas' Timestamp and Timedelta
    if nanos and unit != "ns":
        return f"{v!r} is finer than {typ}"
    if isinstance(v, (datetime.datetime, datetime.time)):
        micros = v.microsecond
    elif isinstance(v, datetime.timedelta):
        micros = v.microseconds + 1_000_000 * (v.seconds + 86_400 * v.days) if step > 1 else 0
    else:
        return None
    return f"{v!r} is finer than {typ}" if micros % step else None


def _pairs(items: Any):
    for item in items:
        if isinstance(item, (tuple, list)) and len(item) == 2:
            yield item[0], item[1]


def _first(reasons) -> str | None:
    return next((r for r in reasons if r is not None), None)


def drops_fields(src: pa.DataType, dst: pa.DataType) -> bool:
    """True when casting ``src`` to ``dst`` would drop struct fields (Arrow's cast drops, silently,
    the fields the target struct lacks), at any depth."""
    t = pa.types
    if t.is_struct(src) and t.is_struct(dst):
        if any(dst.get_field_index(f.name) < 0 for f in src):
            return True
        return any(drops_fields(f.type, dst.field(dst.get_field_index(f.name)).type) for f in src)
    if src.num_fields == dst.num_fields and src.num_fields:
        return any(drops_fields(src.field(i).type, dst.field(i).type) for i in range(src.num_fields))
    return False
