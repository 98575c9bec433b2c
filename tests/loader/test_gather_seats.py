"""At most `cores` gatherers at once, the waiting consumer counted (csrc/gather_pool_seats.c).

With as many C threads as cores or more, the last threads (spares) park while the consumer gathers
queued batches in their place, and run while the consumer's time between batches is spent off the
CPU (a GIL-free wait), when it only takes a batch no thread took. Whichever mode, the batches are
torch's DataLoader's over the same sampler order, and the threads end with the loader.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torch.utils.data import BatchSampler, TensorDataset
from torch.utils.data import DataLoader as TorchDataLoader

import fastload
from fastload import Writer
from fastload._gather_pool import GatherPool
from fastload.loader import native_pool
from fastload.loader.native_pool import NativePool

pytestmark = pytest.mark.timeout(60)

N = 2000
FIELDS = ("tok", "id")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.default_rng(0)
    cols = {"tok": rng.integers(0, 65535, (N, 33), dtype=np.uint16), "id": np.arange(N, dtype=np.int64)}
    root = tmp_path_factory.mktemp("seats") / "ds"
    with Writer(root, "tok:uint16[33],id:int64", shard_size="64KB", block_size="8KB") as w:
        w.write_batch(cols)
    return root, cols


@pytest.fixture
def two_cores(monkeypatch):
    """The pool sized as on a 2-core machine, whatever this one has."""
    monkeypatch.setattr(native_pool, "usable_cpus", lambda: 2)


def torch_batches(cols, order) -> list[dict[str, np.ndarray]]:
    tensors = TensorDataset(*(torch.from_numpy(cols[f]) for f in FIELDS))
    return [dict(zip(FIELDS, (t.numpy() for t in batch))) for batch in TorchDataLoader(tensors, batch_sampler=order)]


def run_epoch(loader, step=None) -> list[dict[str, np.ndarray]]:
    out = []
    for batch in loader:
        out.append({f: batch[f].numpy().copy() for f in FIELDS})
        if step is not None:
            step()
    return out


def assert_same(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        for f in FIELDS:
            np.testing.assert_array_equal(g[f], w[f], err_msg=f)


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@pytest.mark.parametrize("threads, seats, spares", [(1, 2, 0), (2, 2, 1), (4, 2, 3), (3, 4, 0), (4, 4, 1),
                                                    (16, 16, 1), (2, 1, 0), (2, 0, 0)])
def test_spares_are_the_threads_beyond_seats_minus_one(threads, seats, spares):
    pool = GatherPool(threads, 4, 8, seats=seats)
    got_spares, helper, parked, _, switches = pool.seats
    assert (pool.threads, got_spares, helper, switches) == (threads, spares, spares > 0, 0)
    deadline = time.monotonic() + 10
    while pool.seats[2] != spares and time.monotonic() < deadline:  # they park as they start
        time.sleep(0.001)
    assert pool.seats[2] == spares
    pool.close()
    assert pool.threads == 0


def test_a_consumer_that_waits_on_the_cpu_gathers_in_a_parked_threads_place(data, two_cores):
    root, cols = data
    order = BatchSampler(np.random.default_rng(1).permutation(N).tolist(), batch_size=64, drop_last=False)
    loader = fastload.DataLoader(root, batch_sampler=order, num_workers=2, persistent_workers=True)
    for _ in range(2):  # a consumer that does nothing but take its batches, then one with a CPU-bound step
        assert_same(run_epoch(loader), torch_batches(cols, order))
    assert isinstance(loader._producer._state.pool, NativePool)
    assert_same(run_epoch(loader, lambda: spin(2e-4)), torch_batches(cols, order))
    s = loader.stats()
    assert (s["worker_threads"], s["spare_threads"], s["spare_switches"]) == (2, 1, 0)
    assert s["parked_threads"] == 1 and s["parked_s"] > 0
    assert 0 < s["consumer_gather_s"] <= s["worker_busy_s"]
    pool = loader._producer._state.pool.gather
    loader.close()
    assert pool.threads == 0  # the parked one joined too


def test_a_consumer_that_waits_off_the_cpu_lets_every_thread_run(data, two_cores):
    root, cols = data
    order = BatchSampler(np.random.default_rng(2).permutation(N).tolist(), batch_size=64, drop_last=False)
    loader = fastload.DataLoader(root, batch_sampler=order, num_workers=2, persistent_workers=True)
    assert_same(run_epoch(loader, lambda: time.sleep(1e-3)), torch_batches(cols, order))  # GIL released, no CPU
    gather = loader._producer._state.pool.gather
    spares, helper, parked, _, switches = gather.seats
    assert (spares, helper, parked, switches) == (1, 0, 0, 1)  # sent to run once, and running
    loader._stats.reset()
    assert_same(run_epoch(loader, lambda: spin(1e-3)), torch_batches(cols, order))  # back on the CPU
    assert gather.seats[1:2] == (1,) and loader.stats()["spare_switches"] == 1  # parked again, counted from reset
    loader.close()
    assert gather.threads == 0


def test_with_a_timeout_no_thread_parks(data, two_cores):
    """A consumer with a timeout never gathers (a copy cannot be cut short): every thread runs."""
    root, cols = data
    order = BatchSampler(list(range(N)), batch_size=100, drop_last=False)
    loader = fastload.DataLoader(root, batch_sampler=order, num_workers=2, timeout=30, persistent_workers=True)
    assert_same(run_epoch(loader), torch_batches(cols, order))
    s = loader.stats()
    assert (s["worker_threads"], s["spare_threads"], s["parked_s"], s["consumer_gather_s"]) == (2, 0, 0, 0)
    loader.close()


def test_the_loaders_own_shuffle_in_helper_mode_is_the_plans(data, two_cores):
    """Batches by number (the threads compute the plan's indices) with the consumer gathering too:
    the same ids as the loader without workers, over two epochs, and each row NumPy's."""
    root, cols = data
    kw = dict(batch_size=64, shuffle=True, seed=7)
    threads = fastload.DataLoader(root, num_workers=2, persistent_workers=True, **kw)
    inline = fastload.DataLoader(root, num_workers=0, **kw)
    for _ in range(2):
        got, want = run_epoch(threads), run_epoch(inline)
        assert [b["id"].tolist() for b in got] == [b["id"].tolist() for b in want]
        for b in got:
            np.testing.assert_array_equal(b["tok"], cols["tok"][b["id"]])
    s = threads.stats()
    assert s["spare_threads"] == 1 and s["consumer_gather_s"] > 0
    threads.close()
    inline.close()
