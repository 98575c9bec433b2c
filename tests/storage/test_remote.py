"""Opening and reading remote datasets over real HTTP and S3 servers: cold, warm, faults, errors."""

from __future__ import annotations

import http.server
import importlib.util
import multiprocessing as mp
import os
import threading
import time

import numpy as np
import pytest
import torch

import fastload
from fastload.errors import StorageError
from fastload.storage.remote import Remote, RetryPolicy

from .conftest import N, assert_same, everything
from .servers import FaultyServer, SilentServer, StaticServer, free_port_url


def test_http_cold_then_warm(http, local, tmp_path):
    cache = tmp_path / "cache"
    ds = fastload.open(f"{http.url}/ds", cache_dir=cache)
    assert len(ds) == N and ds.n_shards == local.n_shards > 3
    before = dict(http.shard_requests())
    assert_same(everything(ds), everything(local))
    cold = {p: n - before.get(p, 0) for p, n in http.shard_requests().items()}
    assert sum(cold.values()) == ds.n_shards  # one GET per shard (each smaller than a chunk)
    st = ds.storage_stats()["storage"]
    assert st["disk_misses"] == ds.n_shards and st["bytes_downloaded"] == local.manifest.n_bytes
    assert st["cache_bytes"] == local.manifest.n_bytes

    warm = fastload.open(f"{http.url}/ds", cache_dir=cache)
    before = dict(http.shard_requests())
    assert_same(everything(warm), everything(local))
    assert http.shard_requests() == before  # warm: no shard fetched again
    assert warm.storage_stats()["storage"]["disk_hits"] == ds.n_shards


def test_s3_open_read_and_loader(s3, local, tmp_path):
    ds = fastload.open(s3.url, storage_options=s3.storage_options, cache_dir=tmp_path / "c")
    assert repr(ds).startswith("fastload.Dataset('s3://data/ds'")
    assert ds[17]["text"] == "record 17" and ds[17]["id"] == 17
    downloaded = []
    for epoch in range(2):  # cold, then warm; workers are processes that reopen the dataset
        loader = fastload.DataLoader(ds, batch_size=128, shuffle="block", num_workers=2, worker_type="process")
        ids = torch.cat([b["id"].clone() for b in loader]).numpy()
        assert sorted(ids.tolist()) == list(range(N))
        downloaded.append(loader.stats()["storage"]["bytes_downloaded"])
    # counters add up over the dataset and its workers: every shard once, nothing in the warm epoch
    assert downloaded == [local.manifest.n_bytes] * 2


def test_loader_epochs_over_http_match_local(http, local, tmp_path):
    ds = fastload.open(f"{http.url}/ds", cache_dir=tmp_path / "c")
    kw = dict(batch_size=100, shuffle="full", seed=3)
    want = [b["text"] for b in fastload.DataLoader(local, **kw)]
    for workers in (0, 2):
        loader = fastload.DataLoader(ds, num_workers=workers, **kw)
        assert [b["text"] for b in loader] == want
    st = loader.stats()["storage"]  # counters of the dataset (all its loaders and workers)
    assert st["bytes_downloaded"] == local.manifest.n_bytes  # once: the second loader ran warm
    assert st["disk_hits"] > 0 and st["cache_bytes"] == local.manifest.n_bytes


def test_faults_are_retried_and_data_is_identical(faulty, local, tmp_path):
    ds = fastload.open(f"{faulty.url}/ds", cache_dir=tmp_path / "c", retries=8, timeout=5)
    loader = fastload.DataLoader(ds, batch_size=256, shuffle="full", seed=1, num_workers=2)
    got = {int(i): t for b in loader for i, t in zip(b["id"], b["text"])}
    assert got == {i: f"record {i}" for i in range(N)}
    assert set(faulty.faults) == {"503", "truncate", "reset"}

    # shards fetched as several parallel ranges (4 KB here, 16 MiB by default), under faults
    ranged = fastload.open(f"{faulty.url}/ds", cache_dir=tmp_path / "r", retries=8, timeout=5)
    ranged.locator.cache.chunk_bytes = 4096
    before = faulty.count
    assert_same(everything(ranged), everything(local))
    assert faulty.count - before > 4 * ranged.n_shards
    assert_same(everything(fastload.open(f"{faulty.url}/ds", cache_dir=tmp_path / "c")), everything(local))


def test_server_down_is_a_storage_error_within_the_timeout(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(StorageError, match="after 2 attempts") as info:
        fastload.open(f"{free_port_url()}/ds", cache_dir=tmp_path, retries=2, timeout=1)
    assert "127.0.0.1" in str(info.value) and time.monotonic() - t0 < 3

    silent = SilentServer()
    try:
        t0 = time.monotonic()
        with pytest.raises(StorageError, match="after 2 attempts"):
            fastload.open(f"{silent.url}/ds", cache_dir=tmp_path, retries=2, timeout=1)
        elapsed = time.monotonic() - t0
        assert 1.5 < elapsed < 5, elapsed  # two 1-second timeouts and a short backoff
    finally:
        silent.close()


def test_missing_shard_is_not_retried(served, tmp_path):
    srv = FaultyServer(served, every=10**9)
    try:
        t0 = time.monotonic()
        with pytest.raises(StorageError, match="FileNotFoundError"):
            Remote(f"{srv.url}/ds", policy=RetryPolicy(attempts=5, backoff_s=1.0)).read("no-such-shard")
        assert time.monotonic() - t0 < 1 and srv.count == 1
    finally:
        srv.close()


def test_a_server_that_ignores_range_is_caught(served):
    """Python's http.server answers a ranged GET with the whole file: the length check refuses it."""
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(served))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.RequestHandlerClass.log_message = lambda *a: None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        remote = Remote(f"http://127.0.0.1:{server.server_port}/ds", policy=RetryPolicy(attempts=2, backoff_s=0))
        assert len(remote.read("manifest.json")) > 0
        with pytest.raises(StorageError, match="ignores Range"):
            remote.read("manifest.json", 10, 20)
    finally:
        server.shutdown()


def test_missing_backend_names_the_extra(tmp_path):
    if importlib.util.find_spec("gcsfs") is None:  # not installed by fastload[test]: really missing
        with pytest.raises(StorageError, match=r'pip install "fastload\[gcs\]"'):
            fastload.open("gs://bucket/ds", cache_dir=tmp_path)
    with pytest.raises(StorageError, match="no fsspec backend knows the protocol 'nosuchfs'"):
        fastload.open("nosuchfs://bucket/ds", cache_dir=tmp_path)


def test_open_options_reopen_identically(http, tmp_path):
    ds = fastload.open(f"{http.url}/ds", cache_dir=tmp_path, cache_limit="10MB", verify="always", timeout=7)
    opts = ds.open_options()
    assert opts["cache_limit"] == 10**7 and opts["verify"] == "always" and opts["timeout"] == 7
    again = fastload.open(str(ds.root), **opts)
    assert again.open_options() == opts
    np.testing.assert_array_equal(again.get_batch([5, 2999])["id"], [5, 2999])


def test_local_datasets_are_read_in_place(served, tmp_path):
    ds = fastload.open(f"file://{served / 'ds'}")
    assert ds.open_options() == {"verify": "first", "block_cache": "64MB"}
    assert ds.storage_stats() == {}
    with pytest.raises(ValueError, match="storage_options apply to remote URLs"):
        fastload.open(served / "ds", storage_options={"anon": True})


def _read_in_child(remote, queue):
    data = remote.read("manifest.json", 0, 20)
    queue.put((remote._local.pid == os.getpid(), len(data)))


def test_a_filesystem_is_never_used_across_fork(http):
    remote = Remote(f"{http.url}/ds")
    parent_fs = remote.fs()
    assert remote.read("manifest.json", 0, 20) and remote.fs() is parent_fs
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_read_in_child, args=(remote, queue))
    child.start()
    assert queue.get(timeout=30) == (True, 20)  # the child opened its own
    child.join(10)
    seen = []
    t = threading.Thread(target=lambda: seen.append(remote.fs()))
    t.start()
    t.join()
    assert seen[0] is not parent_fs  # and so does every thread


def test_memory_tier_counts_block_cache_hits(tmp_path, served):
    root = tmp_path / "served"
    with fastload.Writer(root / "z", shard_size="64KB", block_size="4KB", compression="zstd") as w:
        w.write_batch({"text": ["the same words again " * 4] * 2000})
    srv = StaticServer(root)
    try:
        ds = fastload.open(f"{srv.url}/z", cache_dir=tmp_path / "c")
        for i in range(0, 200, 7):  # record by record: each block decompressed once
            assert ds[i]["text"].startswith("the same")
        st = ds.storage_stats()["storage"]
        assert st["memory_hits"] > st["memory_misses"] > 0
    finally:
        srv.close()


def test_a_synchronous_backend_gets_the_timeout_too(tmp_path):
    import fsspec
    from fsspec.spec import AbstractFileSystem

    release = threading.Event()

    class StallingFS(AbstractFileSystem):
        protocol = "stallsync"

        def cat_file(self, path, start=None, end=None, **kwargs):
            release.wait(60)  # a hung socket read, as a blocking client without a timeout does
            raise ConnectionError("released")

    fsspec.register_implementation("stallsync", StallingFS, clobber=True)
    try:
        remote = Remote("stallsync://bucket/ds", policy=RetryPolicy(attempts=2, timeout_s=0.5, backoff_s=0.01))
        assert not getattr(remote.fs(), "async_impl", False)
        t0 = time.monotonic()
        with pytest.raises(StorageError, match="after 2 attempts: TimeoutError"):
            remote.read("manifest.json", 0, 10)
        assert time.monotonic() - t0 < 3
    finally:
        release.set()


def test_a_reopen_after_the_dataset_was_rewritten_is_an_error(tmp_path):
    import shutil

    from .conftest import write_dataset

    root = tmp_path / "served"
    write_dataset(root / "ds", n=500)
    srv = StaticServer(root)
    try:
        ds = fastload.open(f"{srv.url}/ds", cache_dir=tmp_path / "c")
        opts = ds.open_options()
        assert fastload.open(f"{srv.url}/ds", **opts).open_options() == opts  # unchanged: fine
        shutil.rmtree(root / "ds")
        write_dataset(root / "ds", n=600)  # rewritten at the same URL mid-job
        with pytest.raises(StorageError, match="changed since the dataset was first opened"):
            fastload.open(f"{srv.url}/ds", **opts)  # what a loader worker does
        assert len(fastload.open(f"{srv.url}/ds", cache_dir=tmp_path / "c")) == 600  # a fresh open is fine
    finally:
        srv.close()
