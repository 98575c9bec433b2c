"""Datasets written by every released format version stay readable, value for value.

Each ``tests/data/golden/v<N>/`` holds a dataset committed when format version N was released
(``tools/make_golden.py``) and ``expected.json``, the values that were written. These files are
never regenerated: if this test fails, the change broke reading old datasets.
"""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import fastload
from fastload import Schema
from fastload.format.logical import parse_logical
from fastload.format.spec import FORMAT_VERSION, READABLE_VERSIONS

from .helpers import assert_record_equal, assert_value_equal

GOLDEN = Path(__file__).resolve().parent.parent / "data" / "golden"
DIRS = sorted(GOLDEN.glob("v*/"))


def decode_numbers(data, dtype: str) -> np.ndarray:
    """Numbers of expected.json, where non-finite floats are written 'nan', 'inf', '-inf'."""
    if np.dtype(dtype).kind == "f":
        return np.array(data, dtype=object).astype(np.float64).astype(dtype)
    return np.array(data, dtype=dtype)


def decode_value(v: dict):
    if "null" in v:
        return None
    if "decimal" in v:
        return Decimal(v["decimal"])
    if "logical" in v:  # the integer of its unit, made a Python value by pyarrow
        typ = parse_logical(v["logical"]).arrow_type()
        storage = pa.int32() if v["logical"].startswith(("date32", "time32")) else pa.int64()
        return pa.array([v["storage"]], storage).view(typ).to_pylist()[0]
    if "nested" in v:
        return v["nested"]
    if "value" in v:
        return decode_numbers(v["value"], v["dtype"])
    if "data" in v:
        return decode_numbers(v["data"], v["dtype"]).reshape(v["shape"])
    if "str" in v:
        return v["str"]
    if "base64" in v:
        return base64.b64decode(v["base64"])
    return v["json"]


def load_expected(root: Path) -> tuple[dict, list[dict]]:
    expected = json.loads((root / "expected.json").read_text(encoding="utf-8"))
    records = [{name: decode_value(v) for name, v in rec.items()} for rec in expected["records"]]
    return expected, records


def assert_batch_row(f, batch: dict, k: int, want, raw: dict, where: str) -> None:
    """Row ``k`` of a batch holds ``want``, in the batch form: arrays for fixed numeric fields
    (dates and times as the integers of their unit, nulls zero with ``name.valid`` False), lists
    otherwise (None for a null)."""
    got = batch[f.name][k]
    array_form = f.kind in ("scalar", "array") and f.is_fixed and not (f.logical or "").startswith("decimal")
    if not array_form:
        assert_value_equal(f, got, want, where)
        return
    if f.nullable:
        assert bool(batch[f.name + ".valid"][k]) == (want is not None), where
    if want is None:
        assert not np.any(got), f"{where}: a null reads as zero"
    elif f.logical is not None:
        assert int(got) == raw["storage"], where
    else:
        assert_value_equal(f, got.item() if f.kind == "scalar" else got, want, where)


def test_every_readable_version_has_a_golden_dataset():
    present = {int(d.name[1:]) for d in DIRS}
    assert FORMAT_VERSION in present and set(READABLE_VERSIONS) <= present


@pytest.mark.parametrize("root", DIRS, ids=[d.name for d in DIRS])
def test_golden_dataset_reads_back_as_written(root):
    expected, records = load_expected(root)
    ds = fastload.open(root)
    assert ds.schema == Schema.from_json(expected["schema"])
    assert len(ds) == expected["num_records"] == len(records)
    assert ds.metadata == expected["metadata"]
    assert ds.n_shards >= 2
    ds.verify_all()
    for i, want in enumerate(records):
        assert_record_equal(ds.schema, ds[i], want, f"{root.name} record {i}")
    order = np.random.default_rng(0).permutation(len(ds))
    batch = ds.get_batch(order)
    assert set(batch) == set(ds.schema.names) | {f.name + ".valid" for f in ds.schema
                                                  if f.nullable and f.name + ".valid" in batch}
    for k, i in enumerate(order):
        for f in ds.schema:
            assert_batch_row(f, batch, k, records[i][f.name], expected["records"][i][f.name],
                             f"{root.name} batch row {k} (record {i}) field {f.name!r}")
    for i, got in enumerate(ds):
        assert_record_equal(ds.schema, got, records[i], f"{root.name} iterated record {i}")


@pytest.mark.parametrize("root", DIRS, ids=[d.name for d in DIRS])
def test_golden_dataset_reads_with_every_verify_mode(root):
    _, records = load_expected(root)
    for verify in ("never", "always"):
        ds = fastload.open(root, verify=verify, block_cache=1)
        for i in (0, len(records) // 2, len(records) - 1):
            assert_record_equal(ds.schema, ds[i], records[i], f"{root.name} record {i} ({verify})")
