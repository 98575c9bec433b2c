"""A remote dataset from a hostile or failing server (issue 10, defects 4, 8 and 9): nothing outside
the cache directory is created, opened, locked or touched; waits end when the download they wait
for fails or stalls, saying whom they waited for; a batch larger than the cache is refused at once;
a cache directory that cannot be written is a StorageError saying so."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import pytest

import fastload
from fastload.errors import FormatError, StorageError
from fastload.storage.cache import cache_file_name

from tests.format.crafting import write_manifest

from .conftest import write_dataset
from .servers import CountingServer, FaultyServer, StaticServer

pytestmark = pytest.mark.timeout(90)


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in Path(root).rglob("*")}


@pytest.mark.parametrize("name, digest", [
    (".", "/../../../../../../../../../../tmp/PWNED"),
    ("shard-000000.fls", "../../../../outside"),
    ("../outside", "0123456789abcdef"),
    ("shard-000000.fls", "0123456789ABCDEF"),
    ("shard-000000.fls", "0123456789abcdef0"),
])
def test_a_manifest_naming_paths_outside_the_cache_creates_nothing(tmp_path, name, digest):
    served = tmp_path / "served"
    write_dataset(served / "ds", n=100)
    body = json.loads((served / "ds" / "manifest.json").read_bytes())
    body["shards"]["name"][0], body["shards"]["checksum"][0] = name, digest
    write_manifest(served / "ds", body)
    before = tree(tmp_path)
    srv = StaticServer(served)
    try:
        with pytest.raises(FormatError, match="is not a plain file name|is not a checksum"):
            fastload.open(f"{srv.url}/ds", cache_dir=tmp_path / "cache", timeout=5, retries=1)
    finally:
        srv.close()
    assert tree(tmp_path) - before <= {"cache"} | {p for p in tree(tmp_path) if p.startswith("cache/")}
    assert not list(Path("/tmp").glob("PWNED*"))
    assert srv.shard_requests() == {}  # refused from the manifest alone


def test_cache_file_names_are_checked_where_they_are_made():
    assert cache_file_name("shard-000001.fls", "0123456789abcdef") == "shard-000001.fls.0123456789abcdef"
    for name, digest in [(".", "0123456789abcdef"), ("a/b", "0123456789abcdef"), ("x", "/../x"), ("x", None)]:
        with pytest.raises(StorageError, match="refusing to cache"):
            cache_file_name(name, digest)


def test_a_symlink_in_the_cache_is_not_followed(tmp_path):
    """A cached shard replaced by a symlink to a file elsewhere: refused, and that file is neither
    opened for mapping nor touched (its mtime stays)."""
    served = tmp_path / "served"
    write_dataset(served / "ds", n=100)
    srv = StaticServer(served)
    try:
        ds = fastload.open(f"{srv.url}/ds", cache_dir=tmp_path / "cache")
        ds.get_batch([0])
        cache = ds.locator.cache
        del ds
        victim = tmp_path / "elsewhere.bin"
        victim.write_bytes((served / "ds" / "shard-000000.fls").read_bytes())
        os.utime(victim, (1_000_000, 1_000_000))
        cached = cache.path(0)
        cached.unlink()
        cached.symlink_to(victim)
        with pytest.raises(StorageError, match="is a symbolic link"):
            fastload.open(f"{srv.url}/ds", cache_dir=tmp_path / "cache").get_batch([0])
        assert victim.stat().st_mtime == 1_000_000
    finally:
        srv.close()


def _open_as_nobody(url: str, cache_dir: str, queue) -> None:
    """In a forked child: drop root (which ignores permissions), then open through the cache."""
    try:
        os.environ["HOME"] = cache_dir  # no config file of the parent's user to read
        if os.geteuid() == 0:
            os.setgid(65534)
            os.setuid(65534)
        # a generous timeout: on a loaded machine a forked child once took over 5 s for the manifest
        fastload.open(url, cache_dir=cache_dir, timeout=60, retries=1).get_batch([0])
        queue.put(("read", ""))
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        queue.put((type(exc).__name__, f"{exc}\n{traceback.format_exc()}"))


@pytest.mark.parametrize("where", ["root", "dataset"])
def test_a_read_only_cache_directory_is_a_storage_error(tmp_path, where):
    served = tmp_path / "served"
    write_dataset(served / "ds", n=100)
    srv = StaticServer(served)
    base = Path(tempfile.mkdtemp())  # outside tmp_path, whose parents a dropped uid cannot enter
    try:
        cache_dir = base / "cache"
        fastload.open(f"{srv.url}/ds", cache_dir=tmp_path / "warm").get_batch([0])  # imports done before the fork
        if where == "dataset":  # the node cache is writable, this dataset's directory is not
            fastload.open(f"{srv.url}/ds", cache_dir=cache_dir)
            for d in cache_dir.iterdir():
                if d.is_dir():
                    for p in (d, *d.rglob("*")):
                        p.chmod(0o555 if p.is_dir() else 0o444)
            os.chmod(cache_dir / ".lock", 0o666)
            os.chmod(cache_dir, 0o777)
        else:
            cache_dir.mkdir()
            cache_dir.chmod(0o555)
        base.chmod(0o755)
        queue = mp.get_context("fork").Queue()
        child = mp.get_context("fork").Process(target=_open_as_nobody, args=(f"{srv.url}/ds", str(cache_dir), queue))
        child.start()
        kind, message = queue.get(timeout=60)
        child.join(10)
    finally:
        srv.close()
        for p in (base, *base.rglob("*")):
            if not p.is_symlink():
                p.chmod(0o755)
        shutil.rmtree(base)
    assert kind == "StorageError", (kind, message)
    assert f"the cache directory {cache_dir} is not writable" in message and "set cache_dir=" in message


# -- waits with a deadline (defect 8) ---------------------------------------------------------
def test_a_batch_touching_more_shards_than_the_cache_holds_is_read_shard_by_shard(tmp_path):
    """Once refused (it waited on its own pins): now gathered one shard at a time, each released
    once its rows are copied, so it needs one shard of room."""
    served = tmp_path / "served"
    write_dataset(served / "ds", n=3000, shard_size="8KB")
    srv = StaticServer(served)
    try:
        local = fastload.open(served / "ds")
        sizes = local.manifest.shard_bytes
        assert len(sizes) > 8
        limit = int(sizes.max()) * 4
        ds = fastload.open(f"{srv.url}/ds", cache_dir=tmp_path / "cache", cache_limit=limit, timeout=3, retries=2)
        idx = np.random.default_rng(0).permutation(len(ds))
        t0 = time.monotonic()
        got = ds.get_batch(idx)
        assert time.monotonic() - t0 < 10.0
        want = local.get_batch(idx)
        assert got["text"] == want["text"] and np.array_equal(got["vec"], want["vec"])
        assert len(ds._readers) <= 1 and ds.storage_stats()["storage"]["cache_bytes"] <= limit
    finally:
        srv.close()


def test_a_waiter_gives_up_when_the_downloader_shows_no_progress(tmp_path):
    """Another process holds the claim and writes nothing: the reader waits about ``stall_s``
    (what the holder's retries can take), then names it, instead of a fixed 60 s."""
    import fcntl

    served = tmp_path / "served"
    write_dataset(served / "ds", n=100)
    srv = StaticServer(served)
    try:
        ds = fastload.open(f"{srv.url}/ds", cache_dir=tmp_path / "cache", timeout=0.5, retries=2)
        cache = ds.locator.cache
        assert 3.0 < cache.stall_s < 4.0  # 2 x 0.5 s + a 0.2 s pause + 2 s of margin
        claim = cache.path(0).with_name(cache.path(0).name + ".claim")
        fd = os.open(claim, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, json.dumps({"pid": 424242, "state": "downloading", "at": time.time()}).encode())
            t0 = time.monotonic()
            with pytest.raises(StorageError, match=r"for process 424242 downloading shard 0 of .* nothing arrived"):
                ds.get_batch([0])
            assert cache.stall_s <= time.monotonic() - t0 < cache.stall_s + 2
        finally:
            os.close(fd)
        assert ds.get_batch([0])["id"].tolist() == [0]  # the claim is free: this process downloads
    finally:
        srv.close()


@pytest.mark.parametrize("worker_type", ["thread", "process"])
def test_a_stalled_server_fails_the_loader_about_as_fast_as_get_batch(tmp_path, worker_type):
    """A server that stops answering mid-body: a lone get_batch fails after its retries; a loader,
    whose workers wait for the prefetcher's downloads, fails about as fast, with the prefetcher's
    error, not after a fixed 60 s blaming 'another process'."""
    served = tmp_path / "served"
    write_dataset(served / "ds", n=8000, shard_size="24KB")
    srv = FaultyServer(served, every=10**9)
    options = dict(timeout=1.0, retries=2, prefetch_window=2)  # shards are left to fetch after the first batch
    try:
        ds = fastload.open(f"{srv.url}/ds", cache_dir=tmp_path / "alone", **options)
        srv.stall = True
        t0 = time.monotonic()
        with pytest.raises(StorageError, match="after 2 attempts"):
            ds.get_batch([0])
        alone = time.monotonic() - t0
        srv.stall = False
        ds = fastload.open(f"{srv.url}/ds", cache_dir=tmp_path / "loader", **options)
        loader = fastload.DataLoader(ds, batch_size=100, num_workers=2, worker_type=worker_type)
        it = iter(loader)
        next(it)  # workers up, shard 0 read
        srv.stall = True
        t0 = time.monotonic()
        with pytest.raises(StorageError) as info:
            for _ in it:
                pass
        stalled = time.monotonic() - t0
        loader.close()
    finally:
        srv.stall = False
        srv.close()
    # a shard's download, or, for a process worker still starting when the stall began, the manifest
    assert "after 2 attempts" in str(info.value)
    assert f"{srv.url}/ds/shard-" in str(info.value) or f"{srv.url}/ds/manifest.json" in str(info.value)
    # at worst a worker waits out a download that started just before the stall, then tries itself;
    # then the loader gives its workers STOP_S (2 s) to stop. Before: max(10 x timeout, 60 s); the
    # margin is for a loaded machine (17 s seen with 2 process workers on 2 busy cores)
    assert stalled < 2 * alone + 25.0, (stalled, alone)


def test_an_oversized_remote_manifest_is_refused_without_downloading_it(tmp_path, monkeypatch):
    """A server offering a manifest past the documented maximum: FormatError, and no more than the
    maximum plus one byte is fetched (the limit is lowered to 1 MB here; the real one is 1 GiB)."""
    limit = 1 << 20
    monkeypatch.setattr("fastload.storage.locator.MAX_MANIFEST_BYTES", limit)
    monkeypatch.setattr("fastload.format.manifest.MAX_MANIFEST_BYTES", limit)
    write_dataset(tmp_path / "served" / "ds", n=100)
    body = json.loads((tmp_path / "served" / "ds" / "manifest.json").read_bytes())
    write_manifest(tmp_path / "served" / "ds", body, text=lambda out: out + " " * (8 * limit))
    srv = CountingServer(tmp_path / "served")
    try:
        with pytest.raises(FormatError, match="more than"):
            fastload.open(f"{srv.url}/ds", cache_dir=tmp_path / "cache", timeout=5, retries=1)
        assert srv.sent <= limit + 1
        # a manifest within the limit is read whole through the same path
        write_manifest(tmp_path / "served" / "ds", body)
        assert len(fastload.open(f"{srv.url}/ds", cache_dir=tmp_path / "cache", timeout=5, retries=1)) == 100
    finally:
        srv.close()
