"""Locks on the cache and fork: a child forked while a thread holds one must not keep it.

A flock belongs to the open file description and fork shares descriptions, so without care a
worker forked while a download thread held a claim or the global lock keeps that lock for its
whole life after the parent let go (found with a test's sampling thread: every reader waited).
"""

from __future__ import annotations

import multiprocessing as mp
import time

import pytest

from fastload.errors import StorageError
from fastload.storage.claims import Claim
from fastload.storage.config import CacheConfig
from fastload.storage.locks import held_elsewhere
from fastload.storage.node import NodeCache


@pytest.fixture
def forked_sleeper():
    """Start a forked child that just lives on (as a loader worker would), killed at the end."""
    children = []

    def start():
        child = mp.get_context("fork").Process(target=time.sleep, args=(60,), daemon=True)
        child.start()
        children.append(child)
        return child

    yield start
    for child in children:
        child.kill()
        child.join()


def free_within(path, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while held_elsewhere(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_the_global_lock_is_free_once_the_parent_lets_go(tmp_path, forked_sleeper):
    node = NodeCache(CacheConfig.resolve(cache_dir=tmp_path, cache_limit=None))
    with node.locked():
        child = forked_sleeper()
    assert child.is_alive()
    with node.locked(timeout=2.0):  # the child's copy of the locked description was closed at the fork
        pass


def test_a_claim_is_free_once_its_holder_closes_it(tmp_path, forked_sleeper):
    path = tmp_path / "shard.0123456789abcdef.claim"
    claim = Claim(path)
    assert claim.take()
    child = forked_sleeper()
    claim.close()
    assert free_within(path, 5.0)  # the child closes its copy just after the fork, asynchronously
    assert child.is_alive()


def test_without_the_care_the_child_would_keep_the_lock(tmp_path, forked_sleeper):
    """The premise, checked with a bare descriptor: so the tests above can fail."""
    import fcntl
    import os

    fd = os.open(tmp_path / "bare", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    forked_sleeper()
    os.close(fd)
    assert not free_within(tmp_path / "bare", 1.0)
    node = NodeCache(CacheConfig.resolve(cache_dir=tmp_path / "c", cache_limit=None))
    with pytest.raises(StorageError):  # and the lock's own timeout reports a holder that never lets go
        bare = os.open(node.root / ".lock", os.O_RDWR | os.O_CREAT)
        fcntl.flock(bare, fcntl.LOCK_EX)
        forked_sleeper()
        os.close(bare)
        with node.locked(timeout=0.5):
            pass
