"""The loader's batch form of the fields it does not gather into shared-memory slots.

Arrays become torch tensors, everything else stays a list, as :mod:`fastload.format.decode`
describes: variable numeric arrays as lists of tensors, str/bytes/JSON/Decimal/nested values as
lists of Python values (None for a null). A field with nulls that is an array (numbers, dates and
times as the integers of their unit) comes as its values, nulls zero, plus a bool tensor
``name + ".valid"``, True where a record holds a value.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..format.decode import batch_entries
from ..format.schema import Field


def torch_entries(f: Field, col: Any) -> dict[str, Any]:
    """The batch entries of one gathered field (``name`` and maybe ``name + ".valid"``)."""
    out: dict[str, Any] = {}
    arrays = f.kind == "array" and f.logical is None  # a list of them for variable shapes
    for key, value in batch_entries(f, col).items():
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(value)
        elif arrays and isinstance(value, list):
            value = [None if v is None else torch.from_numpy(v) for v in value]
        out[key] = value
    return out

