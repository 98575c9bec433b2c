"""Packed sequences and mixtures over a remote dataset, served by a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import numpy as np
import pytest

import fastload
from fastload.lm.packing_index import document_lengths

from ..storage.servers import StaticServer
from .conftest import write_docs


@pytest.fixture(scope="module")
def served(tmp_path_factory, docs):
    root = tmp_path_factory.mktemp("served")
    write_docs(root / "docs", docs)
    srv = StaticServer(root)
    yield root, srv
    srv.close()


def test_remote_documents_pack_like_local_ones_with_the_index_in_their_cache(served, tmp_path, docs):
    root, srv = served
    local = fastload.pack_sequences(root / "docs", seq_len=64, separator=7, index_dir=tmp_path / "local-index")
    remote_ds = fastload.open(f"{srv.url}/docs", cache_dir=tmp_path / "cache")
    remote = fastload.pack_sequences(remote_ds, seq_len=64, separator=7)
    assert remote.index_path.parent == tmp_path / "cache" / "packing"
    # a remote shard's offset tables are read in place in the cached copy's map
    assert document_lengths(remote_ds, "tokens").tolist() == [len(d) for d in docs]
    idx = np.random.default_rng(0).permutation(len(local))
    assert np.array_equal(remote.get_batch(idx)["input_ids"], local.get_batch(idx)["input_ids"])
    again = fastload.pack_sequences(fastload.open(f"{srv.url}/docs", cache_dir=tmp_path / "cache"), seq_len=64,
                                    separator=7)
    assert again.index_path == remote.index_path


def test_a_mixture_of_a_remote_and_a_local_source(served, tmp_path):
    root, srv = served
    remote = fastload.open(f"{srv.url}/docs", cache_dir=tmp_path / "cache", cache_limit="10MB")
    m = fastload.mix({"remote": remote, "local": fastload.open(root / "docs")}, {"remote": 1, "local": 3},
                     policy="stop")
    batch = m.get_batch(np.arange(len(m)))
    src = m.source_of(m.epoch_order("full", 0, 0).indices(np.arange(len(m))))
    rec = m.epoch_order("full", 0, 0).indices(np.arange(len(m))) - m.offsets[src]
    for i in range(0, len(m), 37):
        assert np.array_equal(batch["tokens"][i], fastload.open(root / "docs")[int(rec[i])]["tokens"])
