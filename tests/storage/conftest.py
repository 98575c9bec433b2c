"""Fixtures: a small dataset on disk and real servers on 127.0.0.1 serving it."""

from __future__ import annotations

import numpy as np
import pytest

import fastload

from .servers import FaultyServer, S3Server, StaticServer

N = 3000


def write_dataset(root, n=N, shard_size="24KB"):
    """Fixed-size records (so shards are alike in size) plus a text field (variable size)."""
    with fastload.Writer(root, shard_size=shard_size, block_size="4KB") as w:
        w.write_batch({"id": np.arange(n, dtype=np.int64),
                       "vec": (np.arange(n * 4, dtype=np.int32).reshape(n, 4) * 7) % 1000,
                       "text": [f"record {i}" for i in range(n)]})
    return root


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A directory holding dataset ``ds``; the static server serves it."""
    root = tmp_path_factory.mktemp("served")
    write_dataset(root / "ds")
    return root


@pytest.fixture(scope="module")
def http(served):
    srv = StaticServer(served)
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def s3(served):
    srv = S3Server()
    srv.url = srv.upload(served / "ds", "ds")
    yield srv
    srv.close()


@pytest.fixture
def faulty(served):
    srv = FaultyServer(served, every=3)
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def local(served):
    return fastload.open(served / "ds")


def everything(ds) -> dict:
    return ds.get_batch(np.arange(len(ds)))


def assert_same(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for k in want:
        if isinstance(want[k], np.ndarray):
            np.testing.assert_array_equal(got[k], want[k])
        else:
            assert got[k] == want[k]
