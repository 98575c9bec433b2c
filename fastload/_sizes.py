"""Parse human sizes ("256MB", "1MiB", 4096) once, at the edges of the API."""

from __future__ import annotations

import re

_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*$")


def parse_size(value: int | str, *, what: str = "size") -> int:
    """Bytes in ``value``: an int, or a number with KB/MB/GB/TB (powers of 1000) or KiB/MiB/GiB/TiB."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a size like '256MB', not {value!r}")
    if isinstance(value, int):
        n = value
    else:
        m = _RE.match(str(value))
        unit = m.group(2).lower() if m else None
        if not m or unit not in _UNITS:
            raise ValueError(f"{what} {value!r} is not a size: use e.g. 4096, '64KB', '1MiB', '256MB', '2GB'")
        n = int(float(m.group(1)) * _UNITS[unit])
    if n <= 0:
        raise ValueError(f"{what} must be positive, got {value!r}")
    return n


def format_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
