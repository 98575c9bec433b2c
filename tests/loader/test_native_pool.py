"""The C worker threads (loader/native_pool.py, csrc/gather_pool.c) against NumPy and torch.

Which loaders get them, their batches against NumPy fancy indexing and torch's DataLoader, order,
resume, epochs and ranks against the same loader without workers, and every failure path: an
index out of range, a corrupt block (raised, and skipped), a read outside a block refused in C,
a timeout, a signal while waiting, an abandoned run, and threads that end with the loader.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest
import torch
import xxhash
from torch.utils.data import DataLoader as TorchDataLoader
from torch.utils.data import BatchSampler, TensorDataset

import fastload
from fastload import FormatError, WorkerError, Writer
from fastload._gather_pool import GatherPool
from fastload.format.shard_reader import ShardReader
from fastload.loader.buffers import with_arenas
from fastload.loader.index_feeder import IndexFeeder
from fastload.loader.native_pool import NativePool
from fastload.loader.pools import ThreadPool
from fastload.loader.slots import SlotLayout, our_segments
from fastload.loader.stats import LoaderStats
from fastload.loader.workers import BatchProducer, WorkerConfig

pytestmark = pytest.mark.timeout(60)

N = 3000
SCHEMA = "tok:uint16[33],id:int64,pos:float32[2,3]"


def columns(n=N, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"tok": rng.integers(0, 65535, (n, 33), dtype=np.uint16), "id": np.arange(n, dtype=np.int64),
            "pos": rng.standard_normal((n, 2, 3)).astype(np.float32)}


def write(root, cols, schema=SCHEMA, **kw):
    with Writer(root, schema, shard_size=kw.pop("shard_size", "64KB"), block_size="8KB", **kw) as w:
        w.write_batch(cols)
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    cols = columns()
    root = write(tmp_path_factory.mktemp("native") / "ds", cols)
    assert fastload.open(root).n_shards >= 5
    return root, cols


def shuffled(batch_size=64, seed=0, n=N) -> list[np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    return [perm[i : i + batch_size] for i in range(0, n, batch_size)]


def config(root, batch_size=64, fields=None, **kw) -> WorkerConfig:
    ds = fastload.open(root)
    return WorkerConfig(str(root), {}, fields, SlotLayout.for_dataset(ds.schema, batch_size, fields), **kw)


def gather_threads() -> int:
    """GatherPool's C threads in this process (not in threading.enumerate(); named by the pool)."""
    names = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                names.append(f.read().strip())
        except OSError:  # ended meanwhile
            pass
    return names.count("fastload-gather")


def epoch_of(loader, fields=("tok", "id", "pos")) -> list[dict[str, np.ndarray]]:
    return [{f: b[f].numpy().copy() for f in fields} for b in loader]


def assert_same(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.keys() == w.keys()
        for f in g:
            np.testing.assert_array_equal(g[f], w[f], err_msg=f)


# -- which loaders get C threads -----------------------------------------------------------------
def test_only_thread_workers_on_fixed_fields_of_raw_local_shards_get_c_threads(data, tmp_path):
    root, cols = data
    def pool(cfg, **kw):
        with BatchProducer(cfg, **kw) as producer:
            return type(producer._state.pool)

    assert pool(config(root), num_workers=2, worker_type="thread") is NativePool
    assert pool(config(root, fields=("id",)), num_workers=1, worker_type="thread") is NativePool
    assert pool(config(root), num_workers=2, worker_type="process").__name__ == "ProcessPool"
    assert pool(config(root, worker_init_fn=print), num_workers=1, worker_type="thread") is ThreadPool
    texts = write(tmp_path / "text", {**cols, "text": [f"r{i}" for i in range(N)]}, SCHEMA + ",text:str")
    assert pool(config(texts), num_workers=1, worker_type="thread") is ThreadPool  # a str field without an arena
    in_arena = WorkerConfig(str(texts), {}, None, with_arenas(config(texts).layout, fastload.open(texts), None))
    assert pool(in_arena, num_workers=1, worker_type="thread") is NativePool  # without nulls: C, into its arena
    assert pool(config(texts, fields=("tok", "id")), num_workers=1, worker_type="thread") is NativePool
    packed = write(tmp_path / "zstd", cols, compression="zstd")
    assert pool(config(packed), num_workers=1, worker_type="thread") is ThreadPool
    assert pool(WorkerConfig(str(root), {"verify": "always"}, None, config(root).layout), num_workers=1,
                worker_type="thread") is ThreadPool


# -- the batches, against references written by others -------------------------------------------
@pytest.mark.parametrize("num_workers", [1, 2, 3])
def test_batches_equal_numpy_fancy_indexing(data, num_workers):
    root, cols = data
    batches = shuffled(batch_size=50) + [np.array([5, 5, 0, N - 1])]  # a short last batch, a repeat
    with BatchProducer(config(root, batch_size=50), num_workers=num_workers, worker_type="thread") as producer:
        assert isinstance(producer._state.pool, NativePool)
        ks = []
        for b in producer.run(batches):
            ks.append(b.k)
            assert b.n == len(batches[b.k]) and not b.var
            for name, arr in b.fixed.items():
                np.testing.assert_array_equal(arr, cols[name][batches[b.k]], err_msg=name)
    assert ks == list(range(len(batches)))


@pytest.mark.parametrize("helps", [False, True])
def test_a_waiting_consumer_gathers_queued_batches_itself(wide, helps):
    """With consumer_helps (fewer threads than cores) the waiting consumer runs queued tasks (worker -1)
    rather than sleep; without it, only the one it waits for when no thread took it. Same bytes."""
    ds = fastload.open(wide)
    stats = LoaderStats()
    producer = BatchProducer(config(wide, batch_size=32), num_workers=1, worker_type="thread", stats=stats)
    with producer:
        pool = producer._state.pool
        pool.gather.close()
        pool.gather = GatherPool(1, producer.n_slots, 32, consumer_helps=helps)  # the same tables, either policy
        t = pool.mapped.tables
        slots = [producer._state.ring.arrays(s) for s in range(producer.n_slots)]
        pool.gather.configure(pool.mapped.starts, t.shard_lo, t.shard_hi, t.block_first, t.block_lo, t.block_hi,
                              [(addr, size, [v[name] for v in slots]) for name, addr, size in pool.mapped.columns])
        pool.submit, pool.wait, pool.submit_batch = pool.gather.submit, pool.gather.wait, pool.gather.submit_batch
        batches = shuffled(batch_size=32, n=512) * 3
        got = [(b.worker, b.fixed["x"][:, ::997].copy()) for b in producer.run(batches)]  # a consumer that waits
    for (_, x), batch in zip(got, batches):
        np.testing.assert_array_equal(x, ds.get_batch(batch, ["x"])["x"][:, ::997])
    workers = [w for w, _ in got]
    if helps:
        assert workers.count(-1) > 0  # (and the thread the others, unless the machine's load kept it off the cores)
        assert 0 < stats.snapshot()["consumer_gather_s"] <= stats.snapshot()["worker_busy_s"]
    assert len(workers) == len(batches)


def test_the_loader_equals_torch_dataloader_over_the_same_arrays(data):
    root, cols = data
    perm = np.random.default_rng(3).permutation(N).tolist()
    order = BatchSampler(perm, batch_size=64, drop_last=False)  # a sampler is any iterable of indices
    tensors = TensorDataset(*(torch.from_numpy(cols[f]) for f in ("tok", "id", "pos")))
    want = [dict(zip(("tok", "id", "pos"), (t.numpy() for t in batch)))
            for batch in TorchDataLoader(tensors, batch_sampler=order)]
    loader = fastload.DataLoader(root, batch_sampler=order, num_workers=2, persistent_workers=True)
    assert_same(epoch_of(loader), want)
    assert isinstance(loader._producer._state.pool, NativePool)
    loader.close()


def test_order_resume_epochs_and_ranks_equal_the_loader_without_workers(data, monkeypatch):
    root, _ = data
    def loader(**kw):
        return fastload.DataLoader(root, batch_size=64, shuffle=True, seed=7, **kw)

    ref, threads = loader(), loader(num_workers=2, persistent_workers=True)
    for epoch in (0, 3):
        ref.set_epoch(epoch)
        threads.set_epoch(epoch)
        assert_same(epoch_of(threads), epoch_of(ref))
    assert isinstance(threads._producer._state.pool, NativePool)
    # mid-epoch state: a resumed loader delivers exactly the rest
    it = iter(threads)
    head = [next(it)["id"].numpy().copy() for _ in range(5)]
    state = threads.state_dict()
    rest = [{"id": b["id"].numpy().copy()} for b in it]
    resumed = loader(num_workers=2)
    resumed.load_state_dict(state)
    assert_same(epoch_of(resumed, ("id",)), rest)
    assert len(head) + len(rest) == len(ref)
    # end-of-epoch state: the same as the loader without workers, this epoch and the next
    end = threads.state_dict()
    for_ref, for_threads = loader(), loader(num_workers=1)
    for_ref.load_state_dict(end)
    for_threads.load_state_dict(end)
    for _ in range(2):
        assert_same(epoch_of(for_threads), epoch_of(for_ref))
    threads.close()
    # rank 1 of 2 gets the same batches as its loader without workers
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    rank_ref, rank_threads = loader(), loader(num_workers=2)
    got = epoch_of(rank_threads)
    assert_same(got, epoch_of(rank_ref))
    assert sum(len(b["id"]) for b in got) == N // 2


def test_stats_count_the_c_threads_batches(data):
    root, _ = data
    loader = fastload.DataLoader(root, batch_size=64, shuffle=True, num_workers=2)
    n = sum(len(b["id"]) for b in loader)
    snap = loader.stats()
    assert snap["samples"] == n == N and snap["batches"] == len(loader)
    assert snap["bytes"] == N * (66 + 8 + 24) and snap["num_workers"] == 2
    assert snap["stages"]["read"] > 0 and 0 < snap["worker_utilization"] <= 1
    assert 0 <= snap["consumer_gather_s"] <= snap["worker_busy_s"]


# -- failures ------------------------------------------------------------------------------------
def test_an_index_out_of_range_is_a_worker_error_at_its_batch(data):
    root, _ = data
    with BatchProducer(config(root), num_workers=2, worker_type="thread") as producer:
        got = []
        with pytest.raises(WorkerError) as info:
            for b in producer.run([np.arange(4), np.array([3, N + 5]), np.arange(8)]):
                got.append(b.k)
        assert got == [0]
        assert "loader worker thread" in str(info.value) and "raised IndexError while reading batch 1" in str(info.value)
        assert isinstance(info.value.__cause__, IndexError) and f"index {N + 5} is out of range" in str(info.value)
        # the threads stay up, every slot came back, and negative indices read as NumPy's
        out = [b.fixed["id"].copy() for b in producer.run([np.array([-1, -N, 2])])]
        np.testing.assert_array_equal(out[0], [N - 1, 0, 2])
        assert len(producer._state.free) == producer.n_slots


def corrupt(root) -> tuple[str, int, int]:
    """Flip a byte of block 1 of the second shard; returns its path, the block and a dataset record in it."""
    path = sorted(root.glob("*.fls"))[1]
    reader = ShardReader.open(path)
    where, record = int(reader.blocks["offset"][1]) + 5, int(reader.first_record[1])
    del reader
    raw = np.memmap(path, dtype=np.uint8, mode="r+")
    raw[where] ^= 0xFF
    raw.flush()
    del raw
    return str(path), 1, record + int(fastload.open(root).manifest.shard_records[0])


def test_a_corrupt_block_is_a_format_error_on_first_touch_and_skip_replaces_it(tmp_path):
    cols = columns()
    root = write(tmp_path / "ds", cols)
    path, blk, first = corrupt(root)
    with BatchProducer(config(root), num_workers=2, worker_type="thread") as producer:
        assert isinstance(producer._state.pool, NativePool)
        got = []
        with pytest.raises(FormatError) as info:
            for b in producer.run([np.arange(0, 64), np.array([first, 0, 1]), np.arange(64, 128)]):
                got.append(b.k)
        assert got == [0] and path in str(info.value) and f"block {blk} " in str(info.value)
        assert producer._state.pool.mapped.tables.verified.sum() > 0  # checked in the C threads
        assert any("loader worker thread" in note and "reading batch 1" in note for note in info.value.__notes__)
        assert [b.n for b in producer.run([np.arange(3)])] == [3]  # the threads stay up
    # on_error="skip": the record is replaced as by the loader without workers, the batch stays full
    batches = BatchSampler([first, first + 1, 7] + list(range(10)), batch_size=3, drop_last=False)
    def skipped(num_workers):
        loader = fastload.DataLoader(root, batch_sampler=batches, num_workers=num_workers, on_error="skip")
        return epoch_of(loader), loader.stats()["skipped"]
    (want, n_ref), (got, n_got) = skipped(0), skipped(2)
    assert_same(got, want)
    assert n_got == n_ref > 0 and want[0]["id"][2] == 7 and first not in want[0]["id"]


def test_a_read_outside_its_block_is_refused_in_c():
    """Tables that disagree with the bytes (a bug, never valid data) stop the copy in C."""
    data = np.arange(64, dtype=np.uint8)
    base = data.ctypes.data
    out = [np.zeros(4 * 8, dtype=np.uint8) for _ in range(2)]
    pool = GatherPool(1, 2, 4)
    try:
        one = np.zeros(1, dtype=np.int64)
        # one shard of 4 records of 8 bytes in one block whose bytes end 4 bytes short of record 3's end
        pool.configure(np.array([0, 4]), one, one + 1, one, np.array([base]), np.array([base + 28]),
                       [(np.array([base]), 8, out)])
        pool.submit(0, np.array([0, 1, 2], dtype=np.int64))
        assert pool.wait(0, 5.0)[0] == 0
        np.testing.assert_array_equal(out[0][:24], data[:24])
        pool.submit(1, np.array([0, 3], dtype=np.int64))
        status, _, position, field, _ = pool.wait(1, 5.0)
        assert (status, position, field) == (2, 1, 0)  # record 3 would leave its block: refused
        pool.submit(0, np.array([4], dtype=np.int64))
        assert pool.wait(0, 5.0)[:3] == (1, 0, 0)  # outside the dataset
        with pytest.raises(ValueError, match="more indices than batch_size"):
            pool.submit(0, np.arange(5))
        with pytest.raises(ValueError, match="int64"):
            pool.submit(0, np.arange(2, dtype=np.int32))
        pool.submit(0, np.arange(2))
        with pytest.raises(ValueError, match="busy"):
            pool.submit(0, np.arange(2))
        with pytest.raises(RuntimeError, match="tasks are out"):
            pool.configure(np.array([0, 4]), one, one + 1, one, np.array([base]), np.array([base + 28]), [])
        assert pool.drain(5.0)
        # first touch: the block's checksum is checked in the thread, once, before the batch is done
        flags = np.zeros(1, dtype=np.uint8)
        good = np.array([xxhash.xxh3_64_intdigest(data[:28].tobytes())], dtype=np.uint64)
        for expected, status in ((good ^ np.uint64(1), 3), (good, 0), (good ^ np.uint64(1), 0)):
            pool.configure(np.array([0, 4]), one, one + 1, one, np.array([base]), np.array([base + 28]),
                           [(np.array([base]), 8, out)], flags, expected)
            pool.submit(0, np.array([1, 2], dtype=np.int64))
            assert pool.wait(0, 5.0)[0] == status  # a corrupt block (3), then checked (0) and not again
        assert flags[0] == 1
    finally:
        pool.close()
    with pytest.raises(RuntimeError, match="closed"):
        pool.submit(0, np.arange(2))
    with pytest.raises(ValueError, match="n_threads"):
        GatherPool(0, 2, 4)


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """Records of 64 KB: a 256-record batch is a 16 MB copy, long enough to be waited for."""
    n = 512
    rows = np.random.default_rng(1).integers(0, 255, (n, 1 << 16), dtype=np.uint8)
    return write(tmp_path_factory.mktemp("wide") / "ds", {"x": rows}, "x:uint8[65536]", shard_size="4MB")


def test_a_batch_past_the_timeout_is_a_worker_error(wide):
    batches = shuffled(batch_size=256, n=512)
    producer = BatchProducer(config(wide, batch_size=256), num_workers=1, worker_type="thread", timeout=1e-5)
    assert isinstance(producer._state.pool, NativePool)
    with pytest.raises(WorkerError, match=r"timed out after 1e-05 seconds waiting for batch 0"):
        list(producer.run(batches))
    assert producer.closed and our_segments(os.listdir("/dev/shm")) == []


class _Interrupted(Exception):
    pass


def test_a_signal_while_waiting_interrupts_and_the_next_run_is_whole(wide):
    ds = fastload.open(wide)
    batches = shuffled(batch_size=256, n=512) * 4

    def interrupt(signum, frame):
        raise _Interrupted

    with BatchProducer(config(wide, batch_size=256), num_workers=1, worker_type="thread") as producer:
        previous = signal.signal(signal.SIGALRM, interrupt)
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.001)
            with pytest.raises(_Interrupted):
                for _ in producer.run(batches):
                    time.sleep(0.01)  # the alarm comes while the consumer sleeps in C or here
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        assert len(producer._state.free) == producer.n_slots  # the interrupted run's tasks were drained
        got = [(b.k, b.fixed["x"][:, :8].copy()) for b in producer.run(batches[:2])]
        assert [k for k, _ in got] == [0, 1]
        for k, head in got:
            np.testing.assert_array_equal(head, ds.get_batch(batches[k], ["x"])["x"][:, :8])


def test_an_abandoned_run_gives_its_slots_back(data):
    root, cols = data
    batches = shuffled(batch_size=16)
    with BatchProducer(config(root, batch_size=16), num_workers=2, worker_type="thread") as producer:
        first = producer.run(batches)
        next(first), next(first)
        second = producer.run(batches[::-1])
        for b in second:
            np.testing.assert_array_equal(b.fixed["tok"], cols["tok"][batches[::-1][b.k]])
        with pytest.raises(RuntimeError, match="abandoned"):
            next(first)
        assert len(producer._state.free) == producer.n_slots


def test_threads_end_with_the_loader(data):
    root, _ = data
    loader = fastload.DataLoader(root, batch_size=64, shuffle=True, num_workers=2, persistent_workers=True)
    it = iter(loader)
    next(it)
    pool = loader._producer._state.pool.gather
    assert pool.threads == 2 and gather_threads() == 2
    del it  # dropped mid-epoch
    loader.close()
    assert pool.threads == 0 and gather_threads() == 0  # joined
    assert not any(t.name == "fastload-indices" for t in threading.enumerate())
    assert our_segments(os.listdir("/dev/shm")) == []


def test_strided_and_listed_indices(data):
    root, cols = data
    perm = np.random.default_rng(4).permutation(N)
    batches = [perm[0:128:2], perm[1:40].tolist(), np.asarray(perm[40:60], dtype=np.int32)]
    with BatchProducer(config(root), num_workers=2, worker_type="thread") as producer:
        for b in producer.run(batches):
            np.testing.assert_array_equal(b.fixed["tok"], cols["tok"][np.asarray(batches[b.k])])


def test_only_the_loaders_own_order_is_drawn_ahead(data, monkeypatch):
    """A sampler the loader was given may have effects that depend on when it is drawn (torch's
    RNG): it is drawn by the consumer's thread, when it asks; the loader's own plan in a thread."""
    root, _ = data
    started = []

    class Counted(IndexFeeder):
        def __init__(self, *args):
            started.append(threading.current_thread().name)
            super().__init__(*args)

    monkeypatch.setattr("fastload.loader.workers.IndexFeeder", Counted)
    def feeders(**kw):
        started.clear()
        assert sum(len(b["id"]) for b in fastload.DataLoader(root, batch_size=64, num_workers=2, **kw)) == N
        return len(started)
    assert feeders(shuffle="block") == 1  # an order without a formula: drawn ahead in a thread
    assert feeders(shuffle=True) == 0  # a full shuffle: computed by the C threads (plan/batch_formula.py)
    assert feeders(sampler=torch.utils.data.RandomSampler(range(N))) == 0
    assert not any(t.name == "fastload-indices" for t in threading.enumerate())



def test_blocks_checked_in_one_epoch_stay_checked_in_the_next(data):
    """Without persistent workers each epoch starts new C threads: they read the loader's own
    dataset, whose blocks the first epoch checked (and the second does not hash again)."""
    root, cols = data
    ds = fastload.open(root)
    loader = fastload.DataLoader(ds, batch_size=64, shuffle=True, num_workers=2)
    first = epoch_of(loader, ("id",))
    tables = ds._fast_tables
    assert tables.registered.all() and tables.verified[tables.live].all()  # every block read was checked
    second = epoch_of(loader, ("id",))
    assert sorted(np.concatenate([b["id"] for b in first])) == sorted(np.concatenate([b["id"] for b in second]))
    assert not all(np.array_equal(a["id"], b["id"]) for a, b in zip(first, second))  # a new epoch's order
