"""Comparing what a dataset reads back with pyarrow's own Python values (``to_pylist()``), and
a map-style torch Dataset over rows of values."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch


def plain(v: Any) -> Any:
    """A value as plain Python: NumPy arrays and scalars as lists and numbers, tuples as lists."""
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    return v


def same(a: Any, b: Any) -> bool:
    """Equal values of equal types: NaN equals NaN, -0.0 differs from 0.0, 1 differs from 1.0 and
    True, dict keys in the same order, timestamps with the same zone."""
    a, b = plain(a), plain(b)
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b and str(a) == str(b)


def assert_rows(ds, want: list[dict], where: str, sample: int | None = None) -> None:
    """``ds[i]`` equals ``want[i]`` (for ``sample`` records at random, or all), and iteration
    gives every record."""
    assert len(ds) == len(want), where
    picks = range(len(want)) if sample is None or sample >= len(want) else \
        sorted(np.random.default_rng(0).choice(len(want), sample, replace=False).tolist())
    for i in picks:
        row = want[i]
        got = ds[i]
        assert list(got) == list(row), f"{where} record {i}: fields {list(got)} != {list(row)}"
        for name in row:
            assert same(got[name], row[name]), f"{where} record {i} field {name!r}: {got[name]!r} != {row[name]!r}"
    for i, got in enumerate(ds):
        assert all(same(got[name], want[i][name]) for name in got), f"{where} iterated record {i}"


class Rows(torch.utils.data.Dataset):
    """A map-style torch Dataset whose items are the given dict rows."""

    def __init__(self, rows: list[dict]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]
