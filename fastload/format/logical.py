"""Logical types: Arrow's dates, times, timestamps, durations and decimals in a numeric storage form.

A field with a logical type stores what Arrow itself stores for it: the integer count of its unit
(a ``timestamp[ms, tz=UTC]`` as int64 milliseconds since the epoch, a ``date32[day]`` as int32
days) or the 16/32-byte little-endian integer of a decimal. The logical type is kept in the schema
as Arrow writes it (``str(pa_type)``), so the values read back are Arrow's own Python values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from ..errors import SchemaError

_UNITS = ("s", "ms", "us", "ns")
# (pattern, storage dtype) of every logical type; tz and decimal parameters are captured
_TEMPORAL = (
    (re.compile(r"date32(?:\[day\])?"), "int32"),
    (re.compile(r"date64(?:\[ms\])?"), "int64"),
    (re.compile(r"time32\[(s|ms)\]"), "int32"),
    (re.compile(r"time64\[(us|ns)\]"), "int64"),
    (re.compile(r"duration\[(s|ms|us|ns)\]"), "int64"),
    (re.compile(r"timestamp\[(s|ms|us|ns)(?:,\s*tz=(.*))?\]"), "int64"),
)
_DECIMAL = re.compile(r"decimal(128|256)\(\s*(\d+)\s*,\s*(-?\d+)\s*\)")
MAX_TZ_LENGTH = 64  # the longest IANA zone name is ~32 characters


@dataclass(frozen=True)
class Logical:
    """A logical type: its canonical text, and the dtype and shape of its stored values."""

    text: str
    dtype: str
    shape: tuple[int, ...] = ()

    @property
    def is_temporal(self) -> bool:
        return not self.text.startswith("decimal")

    def arrow_type(self):
        """The pyarrow DataType (pyarrow is imported here, not at module load)."""
        return self._arrow

    @cached_property
    def _arrow(self):
        import pyarrow as pa

        return _arrow_type(pa, self.text)


def parse_logical(text: str) -> Logical | None:
    """The logical type named by ``text`` (``timestamp[ms, tz=UTC]``, ``decimal128(10, 2)``,
    ``date32``...), in canonical form; None when ``text`` names none."""
    text = text.strip()
    m = _DECIMAL.fullmatch(text)
    if m:
        bits, precision, scale = int(m.group(1)), int(m.group(2)), int(m.group(3))
        limit = 38 if bits == 128 else 76
        if not 1 <= precision <= limit or abs(scale) > limit:
            raise SchemaError(f"decimal{bits} precision must be 1..{limit} and |scale| <= {limit}, "
                              f"not {text!r}")
        return Logical(f"decimal{bits}({precision}, {scale})", "uint8", (bits // 8,))
    for pattern, dtype in _TEMPORAL:
        m = pattern.fullmatch(text)
        if m is None:
            continue
        base = text.split("[")[0]
        if base == "date32":
            return Logical("date32[day]", dtype)
        if base == "date64":
            return Logical("date64[ms]", dtype)
        unit = m.group(1)
        if base == "timestamp" and m.group(2) is not None:
            tz = m.group(2).strip()
            if not tz or len(tz) > MAX_TZ_LENGTH or any(ch in tz for ch in "[]") or not tz.isprintable():
                raise SchemaError(f"invalid time zone in {text!r}")
            return Logical(f"timestamp[{unit}, tz={tz}]", dtype)
        return Logical(f"{base}[{unit}]", dtype)
    return None


def logical_of_arrow(typ) -> Logical | None:
    """The logical type of an Arrow type (None for types stored as they are, or nested)."""
    import pyarrow as pa

    t = pa.types
    if (t.is_date(typ) or t.is_time(typ) or t.is_timestamp(typ) or t.is_duration(typ)
            or t.is_decimal128(typ) or t.is_decimal256(typ)):
        return parse_logical(str(typ))
    return None


def _arrow_type(pa, text: str):
    m = _DECIMAL.fullmatch(text)
    if m:
        make = pa.decimal128 if m.group(1) == "128" else pa.decimal256
        return make(int(m.group(2)), int(m.group(3)))
    base, _, rest = text.partition("[")
    params = rest.rstrip("]")
    if base == "date32":
        return pa.date32()
    if base == "date64":
        return pa.date64()
    unit, _, tz = params.partition(", tz=")
    if base == "timestamp":
        return pa.timestamp(unit, tz=tz or None)
    makers = {"time32": pa.time32, "time64": pa.time64, "duration": pa.duration}
    if base not in makers or unit not in _UNITS:
        raise SchemaError(f"unknown logical type {text!r}")
    return makers[base](unit)
