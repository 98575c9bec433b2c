"""Checked casts of NumPy numbers to a field's dtype: a value that would change is a bad row."""

from __future__ import annotations

import numpy as np

from .schema import Field


def cast_numbers(f: Field, values: np.ndarray, n: int | None) -> tuple[np.ndarray, dict[int, str]]:
    """``values`` as the field's dtype, and ``{row: reason}`` for rows that would not keep their value.

    ``values`` is ``(n, ...)`` (row ``i`` is ``values[i]``), or any flat run of values when ``n``
    is None (then a bad value is reported as row 0). Integers never become floats that round them,
    and floats never become integers unless they are whole and in range. Raises TypeError for
    non-numeric values.
    """
    target = f.np_dtype
    values = np.asarray(values)
    if values.dtype == target:
        return np.ascontiguousarray(values), {}
    if values.dtype.kind not in "biuf":
        raise TypeError(f"non-numeric values ({values.dtype})")
    with np.errstate(invalid="ignore", over="ignore"):
        out = values.astype(target)
        if target.kind in "biu":
            back = out.astype(values.dtype) if values.dtype.kind != "b" else out.astype(bool)
            # the sign test catches same-width signed/unsigned wraps (-1 -> uint64 max -> -1)
            ok = (back == values) & ((out < 0) == (values < 0))
            why = f"does not fit {f.dtype}"
        elif values.dtype.kind in "iu":
            ok = _exact_as_float(values, out)
            why = f"is not exactly representable as {f.dtype}"
        elif values.dtype.kind == "f":
            ok = np.isfinite(out) | ~np.isfinite(values)
            why = f"overflows {f.dtype}"
        else:  # bool -> float
            ok = np.ones(values.shape, bool)
            why = ""
    if ok.all():
        return np.ascontiguousarray(out), {}
    if n is None:
        return out, {0: f"a value {why}"}
    rows = ok.reshape(len(ok), -1).all(axis=1) if ok.ndim > 1 else ok
    return out, {int(i): f"value {_first_bad(values, ok, int(i))} {why}" for i in np.flatnonzero(~rows)}


def _exact_as_float(ints: np.ndarray, floats: np.ndarray) -> np.ndarray:
    """Which integers their float equals exactly. Only integers past the float's exact range
    (2**(mantissa+1)) can differ; those few are compared as Python ints, because NumPy compares
    an int64 with a float64 after rounding the int."""
    limit = 2 ** (np.finfo(floats.dtype).nmant + 1)
    ok = np.ones(ints.shape, bool)
    flat_ok, flat_i, flat_f = ok.reshape(-1), ints.reshape(-1), floats.reshape(-1)
    for k in np.flatnonzero((flat_i > limit) | (flat_i < -limit)).tolist():
        x = float(flat_f[k])
        flat_ok[k] = np.isfinite(x) and int(x) == int(flat_i[k])
    return ok


def _first_bad(values: np.ndarray, ok: np.ndarray, row: int):
    bad = values[row][~ok[row]] if values.ndim > 1 else values[row]
    return np.asarray(bad).reshape(-1)[0].item()
