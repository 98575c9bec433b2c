"""fastload.mix over real datasets: proportions, schemas, records, packed sources, worker reopen."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import fastload
from fastload.errors import SchemaError

from .conftest import in_another_process, write_docs


def write_table(root, n, source_id, extra_field=False):
    cols = {"id": np.arange(n, dtype=np.int64), "src": np.full(n, source_id, dtype=np.int32),
            "tokens": [np.arange(i % 7 + 1, dtype=np.uint16) + source_id for i in range(n)]}
    if extra_field:
        cols["text"] = [f"t{i}" for i in range(n)]
    with fastload.Writer(root, shard_size="16KB", block_size="2KB") as w:
        w.write_batch(cols)
    return fastload.open(root)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    base = tmp_path_factory.mktemp("mix")
    return {"web": write_table(base / "web", 3000, 0), "code": write_table(base / "code", 800, 1, extra_field=True),
            "math": write_table(base / "math", 150, 2)}


def test_batches_hold_the_weights_and_records_are_the_sources_own(sources):
    m = fastload.mix(sources, {"web": 0.7, "code": 0.2, "math": 0.1}, epoch_samples=5000)
    assert len(m) == 5000 and m.fields == ("id", "src", "tokens")
    for k in range(0, 5000, 1000):
        b = m.get_batch(np.arange(k, k + 1000))
        assert np.bincount(b["src"], minlength=3).tolist() == [700, 200, 100]
        for i in range(0, 1000, 97):  # each row is its source's record, all fields together
            src = ["web", "code", "math"][b["src"][i]]
            rec = sources[src][int(b["id"][i])]
            assert np.array_equal(b["tokens"][i], rec["tokens"])
    b = m.get_batch(np.arange(32))
    assert np.abs(np.bincount(b["src"], minlength=3) - np.array([0.7, 0.2, 0.1]) * 32).max() <= 2


def test_every_sample_of_every_source_once_under_rescale(sources):
    m = fastload.mix(sources, {"web": 5, "code": 3, "math": 2}, policy="rescale")
    assert len(m) == 3950
    b = m.get_batch(np.arange(len(m)))
    pairs = set(zip(b["src"].tolist(), b["id"].tolist()))
    assert len(pairs) == 3950


def test_epoch_source_and_set_epoch(sources):
    m = fastload.mix(sources, {"web": 1, "code": 1, "math": 1}, epoch_source="math")
    assert len(m) == 450
    first = m.get_batch(np.arange(len(m)))["id"]
    m.set_epoch(1)
    assert not np.array_equal(first, m.get_batch(np.arange(len(m)))["id"])


def test_out_arrays_and_single_source_batches(sources):
    m = fastload.mix(sources, {"web": 0.5, "code": 0.5, "math": 0}, epoch_samples=100, fields=["id", "src"])
    out = {"id": np.empty(10, np.int64), "src": np.empty(10, np.int32)}
    rec = np.array([5, 3000 + 7, 2, 3000 + 1, 3800 + 3, 0, 1, 2, 3, 4])
    cols = m.gather_records(rec, out=out)
    assert cols["id"] is out["id"]
    assert out["id"].tolist() == [5, 7, 2, 1, 3, 0, 1, 2, 3, 4]
    assert out["src"].tolist() == [0, 1, 0, 1, 2, 0, 0, 0, 0, 0]
    one = m.gather_records(np.arange(10), out={"id": np.empty(10, np.int64), "src": np.empty(10, np.int32)})
    assert one["id"].tolist() == list(range(10))
    assert m.source_counts(rec) == {"web": 7, "code": 2, "math": 1}


def test_fields_must_agree_between_sources(sources, tmp_path):
    other = tmp_path / "other"
    with fastload.Writer(other) as w:
        w.write_batch({"id": np.arange(5, dtype=np.int32), "src": np.zeros(5, np.int32)})
    with pytest.raises(SchemaError, match="'id' differs"):
        fastload.mix({"web": sources["web"], "other": fastload.open(other)}, epoch_samples=10)
    with pytest.raises(SchemaError, match="no field 'text'"):
        fastload.mix(sources, fields=["text"], epoch_samples=10)
    with pytest.raises(ValueError, match="one weight each"):
        fastload.mix(sources, {"web": 1}, epoch_samples=10)
    assert fastload.mix({"web": sources["web"], "other": fastload.open(other)}, epoch_samples=10,
                        fields=["src"]).fields == ("src",)


def test_packed_sources_mix_with_batch_level_bounds(tmp_path, docs):
    a = fastload.pack_sequences(write_docs(tmp_path / "a", docs), seq_len=64, separator=1,
                                outputs=("input_ids", "position_ids", "cu_seqlens"))
    b = fastload.pack_sequences(write_docs(tmp_path / "b", docs[::-1]), seq_len=64, separator=1,
                                outputs=("input_ids", "position_ids", "cu_seqlens"))
    m = fastload.mix({"a": a, "b": b}, {"a": 3, "b": 1}, policy="stop")
    batch = m.get_batch(np.arange(8))
    assert batch["input_ids"].shape == (8, 64)
    assert batch["cu_seqlens"][-1] == 8 * 64 and batch["max_seqlen"] <= 64
    src = m.source_of(m.epoch_order("full", 0, 0).indices(np.arange(8)))
    for row, (s, r) in enumerate(zip(src, m.epoch_order("full", 0, 0).indices(np.arange(8)))):
        ref = (a, b)[s][int(r - m.offsets[s])]
        assert np.array_equal(batch["input_ids"][row], ref["input_ids"])


def test_a_worker_process_reopens_the_mixture(sources):
    m = fastload.mix(sources, {"web": 0.6, "code": 0.3, "math": 0.1}, epoch_samples=300, seed=4)
    n, (ids, src) = in_another_process(m, ["id", "src"])
    b = m.get_batch(np.arange(len(m)))
    assert n == len(m) and np.array_equal(ids, b["id"]) and np.array_equal(src, b["src"])


def test_state_at_counts_draws_and_passes(sources):
    m = fastload.mix(sources, {"web": 0.5, "code": 0.3, "math": 0.2}, epoch_samples=2000)
    st = m.state_at(1000)
    assert st["drawn"] == {"web": 500, "code": 300, "math": 200}
    assert st["passes"] == {"web": 0, "code": 0, "math": 1}


def test_the_records_view_is_what_loader_workers_read(sources):
    from fastload.loader.datasets import epoch_order, is_native, worker_dataset, worker_spec

    m = fastload.mix(sources, {"web": 0.6, "code": 0.3, "math": 0.1}, epoch_samples=400)
    assert is_native(m) and is_native(sources["web"])
    view = worker_dataset(m)
    assert len(view) == m.n_records and view.schema == m.schema
    order = epoch_order(m, "full", 5, 2)
    records = order.indices(np.arange(64))
    assert np.array_equal(view.gather(records)["id"], m.gather_records(records)["id"])
    root, options, spec = worker_spec(m)
    assert options == {} and "mixture of web, code, math" in root
    reopened = pickle.loads(pickle.dumps(spec)).open()
    assert np.array_equal(reopened.gather(records)["id"], view.gather(records)["id"])
    assert "source 'code'" in view.locate(3000 + 5)
