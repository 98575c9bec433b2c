"""Datasets written by every released format version stay readable, value for value.

Each ``tests/data/golden/v<N>/`` holds a dataset committed when format version N was released
(``tools/make_golden.py``) and ``expected.json``, the values that were written. These files are
never regenerated: if this test fails, the change broke reading old datasets.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

import fastload
from fastload import Schema
from fastload.format.spec import FORMAT_VERSION, READABLE_VERSIONS

from .helpers import assert_record_equal

GOLDEN = Path(__file__).resolve().parent.parent / "data" / "golden"
DIRS = sorted(GOLDEN.glob("v*/"))


def decode_numbers(data, dtype: str) -> np.ndarray:
    """Numbers of expected.json, where non-finite floats are written 'nan', 'inf', '-inf'."""
    if np.dtype(dtype).kind == "f":
        return np.array(data, dtype=object).astype(np.float64).astype(dtype)
    return np.array(data, dtype=dtype)


def decode_value(v: dict):
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
    rows = [{name: (col[k].item() if ds.schema[name].kind == "scalar" else col[k])
             for name, col in batch.items()} for k in range(len(order))]
    for k, i in enumerate(order):
        assert_record_equal(ds.schema, rows[k], records[i], f"{root.name} batch row {k} (record {i})")
    for i, got in enumerate(ds):
        assert_record_equal(ds.schema, got, records[i], f"{root.name} iterated record {i}")


@pytest.mark.parametrize("root", DIRS, ids=[d.name for d in DIRS])
def test_golden_dataset_reads_with_every_verify_mode(root):
    _, records = load_expected(root)
    for verify in ("never", "always"):
        ds = fastload.open(root, verify=verify, block_cache=1)
        for i in (0, len(records) // 2, len(records) - 1):
            assert_record_equal(ds.schema, ds[i], records[i], f"{root.name} record {i} ({verify})")
