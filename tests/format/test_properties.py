"""Property tests: any schema, any records, any block/shard sizes and codec read back as written."""

from __future__ import annotations

import tempfile

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastload
from fastload import Writer

from .helpers import assert_record_equal, assert_value_equal
from .strategies import records, schemas


@st.composite
def datasets(draw):
    schema = draw(schemas())
    recs = draw(records(schema))
    # how the records go in: cut points, and for each piece write() per record or one write_batch
    cuts = sorted(draw(st.lists(st.integers(0, len(recs)), max_size=3)))
    pieces = [recs[a:b] for a, b in zip([0, *cuts], [*cuts, len(recs)])]
    modes = [draw(st.sampled_from(["write", "batch"])) for _ in pieces]
    options = dict(
        block_size=draw(st.integers(1, 3000)),
        shard_size=draw(st.integers(1, 12000)),
        compression=draw(st.sampled_from(["none", "zstd"])),
        buffer_records=draw(st.integers(1, 8)),
    )
    return schema, recs, list(zip(modes, pieces)), options


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(datasets(), st.randoms(use_true_random=False))
def test_write_then_read_back(tmp_path, case, rnd):
    schema, recs, pieces, options = case
    out = tempfile.mkdtemp(dir=tmp_path)
    with Writer(out, schema, **options) as w:
        for mode, piece in pieces:
            if mode == "write":
                for r in piece:
                    w.write(r)
            else:
                w.write_batch({f.name: [r[f.name] for r in piece] for f in schema})
    ds = fastload.open(out)
    assert len(ds) == len(recs) and ds.schema == schema
    for i, want in enumerate(recs):
        assert_record_equal(schema, ds[i], want, f"record {i}")
    order = list(range(len(recs)))
    rnd.shuffle(order)
    batch = ds.get_batch(order)
    for f in schema:
        col = batch[f.name]
        assert len(col) == len(order)
        for k, i in enumerate(order):
            got = col[k].item() if f.kind == "scalar" else col[k]
            assert_value_equal(f, got, recs[i][f.name], f"batch row {k} (record {i})")
        if f.is_fixed:
            assert isinstance(col, np.ndarray) and col.shape == (len(order), *f.shape)
    ds.verify_all()
