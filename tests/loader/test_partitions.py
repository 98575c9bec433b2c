"""The loader over several nodes: partitions default to the node count, states carry them, a
resume onto a node count that does not divide them is exact and says what it costs."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

import fastload


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    root = tmp_path_factory.mktemp("partitions") / "ds"
    with fastload.Writer(root, shard_size="4KB", block_size="1KB") as w:
        w.write_batch({"id": np.arange(1200, dtype=np.int64)})
    return fastload.open(root)


def _as_rank(monkeypatch, rank: int, nodes: int) -> None:
    for name, value in (("RANK", rank), ("WORLD_SIZE", nodes), ("LOCAL_WORLD_SIZE", 1), ("GROUP_RANK", rank)):
        monkeypatch.setenv(name, str(value))


def _read(loader, stop=None):
    ids, state = [], None
    for k, b in enumerate(loader, 1):
        ids.append(b["id"].clone())
        if k == stop:
            state = loader.state_dict()
            break
    return torch.cat(ids).numpy() if ids else np.zeros(0, np.int64), state


def test_nodes_read_disjoint_shards_and_a_resume_on_three_is_exact_and_says_so(ds, monkeypatch, caplog):
    shards = []
    before, states = [], []
    for rank in range(4):
        _as_rank(monkeypatch, rank, 4)
        loader = fastload.DataLoader(ds, batch_size=10, shuffle=True)
        assert loader.stats()["shuffle"]["partitions"] == 4
        ids, state = _read(loader, stop=7)
        before.append(ids)
        states.append(state)
        loader.set_epoch(0)
        whole, _ = _read(loader)
        shards.append(set(ds.shard_of(whole).tolist()))
    assert all(s == states[0] for s in states) and states[0]["partitions"] == 4
    assert sum(map(len, shards)) - len(set().union(*shards)) <= 3  # boundary shards only
    after = []
    with caplog.at_level(logging.WARNING, logger="fastload"):
        for rank in range(3):
            _as_rank(monkeypatch, rank, 3)
            loader = fastload.DataLoader(ds, batch_size=10, shuffle=True)
            loader.load_state_dict(states[0])
            after.append(_read(loader)[0])
    got = np.concatenate(before + after)
    # every record, and only padding repeats (it evens out the 3 ranks' last batch: under 3 records)
    assert np.array_equal(np.unique(got), np.arange(len(ds))) and len(got) - len(ds) < 3
    notes = [r.getMessage() for r in caplog.records if "do not divide the 4 partitions" in r.getMessage()]
    assert notes and "each node reads 4 of the 4 partitions" in notes[0]


def test_partitions_argument(ds, monkeypatch):
    _as_rank(monkeypatch, 0, 1)
    loader = fastload.DataLoader(ds, batch_size=10, shuffle="block", partitions=4)
    state = dict(loader.state_dict(), partitions=2)
    with pytest.raises(ValueError, match="state was saved with partitions=2; this loader was given partitions=4"):
        loader.load_state_dict(state)
    plain = fastload.DataLoader(ds, batch_size=10, shuffle="block")
    plain.load_state_dict(state)  # left to default: the state's partitions continue
    assert plain.state_dict()["partitions"] == 2
    with pytest.raises(ValueError, match="partitions must be None"):
        fastload.DataLoader(ds, batch_size=10, partitions=0)
    with pytest.raises(ValueError, match="this dataset has none"):
        fastload.DataLoader(list(range(10)), batch_size=2, partitions=2)
