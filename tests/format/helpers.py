"""Helpers shared by the format tests: value comparison and byte surgery on files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from fastload import Field, Schema


def assert_value_equal(f: Field, got: Any, want: Any, where: str = "") -> None:
    """``got`` (as the reader returns it) equals ``want`` (as it was written) for field ``f``."""
    ctx = f"{where} field {f.name!r}"
    if want is None or f.kind == "null":
        assert got is None and want is None, f"{ctx}: {got!r} where {want!r} was written"
    elif f.logical is not None:  # datetime, date, time, timedelta or Decimal, with its zone
        assert type(got) is type(want) and got == want and str(got) == str(want), f"{ctx}: {got!r} != {want!r}"
    elif f.kind == "arrow":  # as JSON: map pairs as lists, 1 and 1.0 told apart
        assert json.dumps(_listify(got)) == json.dumps(want), f"{ctx}: {got!r} != {want!r}"
    elif f.kind == "scalar":
        assert np.ndim(got) == 0, ctx
        _assert_numbers_equal(np.asarray(got).astype(f.np_dtype), np.asarray(want).astype(f.np_dtype), ctx)
    elif f.kind == "array":
        assert isinstance(got, np.ndarray), ctx
        assert got.dtype == f.np_dtype, ctx
        want = np.asarray(want).astype(f.np_dtype)
        assert got.shape == want.shape, f"{ctx}: shape {got.shape} != {want.shape}"
        _assert_numbers_equal(got, want, ctx)
    elif f.kind == "str":
        assert isinstance(got, str) and got == want, ctx
    elif f.kind in ("bytes", "image"):
        assert isinstance(got, bytes) and got == bytes(want), ctx
    else:  # json: compared as text, so 1, 1.0 and True (equal in Python) are told apart
        assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True), ctx


def _listify(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _listify(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_listify(x) for x in v]
    return v


def _assert_numbers_equal(got: np.ndarray, want: np.ndarray, ctx: str) -> None:
    """Equal values, NaN matching NaN, and -0.0 told apart from 0.0."""
    np.testing.assert_array_equal(got, want, err_msg=ctx)
    if got.dtype.kind == "f":
        numbers = ~np.isnan(want)
        assert np.array_equal(np.signbit(got)[numbers], np.signbit(want)[numbers]), f"{ctx}: sign of zero"


def assert_record_equal(schema: Schema, got: dict, want: dict, where: str = "") -> None:
    assert set(got) == set(schema.names), where
    for f in schema:
        assert_value_equal(f, got[f.name], want[f.name], where)


def shards(root: Path) -> list[Path]:
    return sorted(Path(root).glob("*.fls"))


def flip_byte(path: Path, offset: int) -> None:
    """Invert every bit of the byte at ``offset`` (negative counts from the end), in place."""
    with open(path, "r+b") as f:
        f.seek(offset, 0 if offset >= 0 else 2)
        old = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([old[0] ^ 0xFF]))


def patch(path: Path, offset: int, new: bytes) -> None:
    """Overwrite bytes of ``path`` in place (negative offsets count from the end)."""
    with open(path, "r+b") as f:
        f.seek(offset, 0 if offset >= 0 else 2)
        f.write(new)
