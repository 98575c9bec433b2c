"""BatchProducer on a real dataset: order, slot reuse, failures of every kind, and cleanup.

Workers are real processes (fork, and spawn once) and real threads; a worker is killed on purpose,
and /dev/shm is listed after every way a producer can end.
"""

from __future__ import annotations

import ctypes
import faulthandler
import gc
import os
import shutil
import signal
import time

import numpy as np
import pytest

import fastload
from fastload import FormatError, Writer, WorkerError
from fastload.format.shard_reader import ShardReader
from fastload.loader.slots import SlotLayout, our_segments
from fastload.loader.stats import LoaderStats
from fastload.loader.workers import BatchProducer, ProducedBatch, WorkerConfig

pytestmark = pytest.mark.timeout(60)

N = 2000
SCHEMA = "tok:uint16[33],id:int64,text:str"
KINDS = [(0, "process"), (2, "process"), (2, "thread")]
KIND_IDS = ["inline", "processes", "threads"]


def write_dataset(root):
    rng = np.random.default_rng(0)
    with Writer(root, SCHEMA, shard_size="64KB", block_size="8KB") as w:
        w.write_batch({"tok": rng.integers(0, 65535, (N, 33), dtype=np.uint16), "id": np.arange(N),
                       "text": [f"record {i} " * (i % 7) for i in range(N)]})
    return root


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = write_dataset(tmp_path_factory.mktemp("producer") / "ds")
    assert fastload.open(root).n_shards >= 3
    return root


def config(root, batch_size=64, fields=None, **kw) -> WorkerConfig:
    ds = fastload.open(root)
    return WorkerConfig(str(root), {}, fields, SlotLayout.for_dataset(ds.schema, batch_size, fields), **kw)


def shuffled(batch_size=64, seed=0, n=N) -> list[np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    return [perm[i : i + batch_size] for i in range(0, n, batch_size)]


def texts(col) -> list[str]:
    o = col.offsets
    return [bytes(col.data[o[i] : o[i + 1]]).decode() for i in range(len(o) - 1)]


def check_batch(ds, b: ProducedBatch, indices: np.ndarray, fields=None) -> None:
    want = ds.get_batch(indices, fields)
    assert b.n == len(indices)
    assert set(b.fixed) | set(b.var) == set(want)
    for name, arr in b.fixed.items():
        np.testing.assert_array_equal(arr, want[name], err_msg=name)
        assert arr.dtype == want[name].dtype
    for name, col in b.var.items():
        assert texts(col) == want[name], name


def leaked() -> list[str]:
    return our_segments(os.listdir("/dev/shm"))


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# -- worker_init_fns (module-level, as a real user's are) -----------------------------------------
def init_raises(worker_id):
    raise ValueError(f"no GPU for worker {worker_id}")


def init_segfaults(worker_id):
    faulthandler.disable()  # keep the test output quiet: the crash is the point
    ctypes.string_at(0)


def init_sleeps(worker_id):
    time.sleep(1.5)


# -- delivery ------------------------------------------------------------------------------------
@pytest.mark.parametrize("num_workers, worker_type", KINDS, ids=KIND_IDS)
def test_batches_come_in_order_and_equal_get_batch(root, num_workers, worker_type):
    ds = fastload.open(root)
    batches = shuffled()
    with BatchProducer(config(root), num_workers=num_workers, worker_type=worker_type) as producer:
        got = []
        for b in producer.run(batches):
            check_batch(ds, b, batches[b.k])
            assert 0 <= b.slot < producer.n_slots and b.timings["read"] > 0
            got.append((b.k, b.slot, b.n))
        assert [k for k, _, _ in got] == list(range(len(batches)))
        assert len(batches) > producer.n_slots  # slots were reused...
        assert {s for _, s, _ in got} == set(range(producer.n_slots))  # ...all of them
        assert got[-1][2] == N % 64 == 16  # the short last batch
        # a second run on the same (persistent) workers
        again = [b.fixed["id"].copy() for b in producer.run(batches[:3])]
        assert [a.tolist() for a in again] == [b.tolist() for b in batches[:3]]
    assert leaked() == []


@pytest.mark.parametrize("worker_type", ["process", "thread"])
def test_order_does_not_depend_on_which_worker_is_faster(root, worker_type):
    """Batch 2k (worker 0) is 200 records, batch 2k+1 (worker 1) is 1: results arrive out of order."""
    ds = fastload.open(root)
    rng = np.random.default_rng(3)
    batches = [rng.integers(0, N, 200 if k % 2 == 0 else 1) for k in range(24)]
    with BatchProducer(config(root, batch_size=200), num_workers=2, worker_type=worker_type,
                       prefetch_factor=3) as producer:
        ks = []
        for b in producer.run(batches):
            check_batch(ds, b, batches[b.k])
            ks.append((b.k, b.worker))
    assert ks == [(k, k % 2) for k in range(24)]


def test_a_subset_of_fields_and_batches_given_as_lists(root):
    ds = fastload.open(root)
    fields = ("text", "id")
    batches = [[5, 3, 999], [0], list(range(10, 74))]
    with BatchProducer(config(root, fields=fields), num_workers=1) as producer:
        out = list(producer.run(iter(batches)))
        assert [set(b.fixed) for b in out] == [{"id"}] * 3 and [set(b.var) for b in out] == [{"text"}] * 3
        for b in out[-1:]:  # only the last batch's slot is still untouched
            check_batch(ds, b, np.array(batches[b.k]), list(fields))


def test_spawned_workers(root):
    ds = fastload.open(root)
    batches = shuffled(seed=5)[:4]
    with BatchProducer(config(root), num_workers=1, mp_context="spawn") as producer:
        for b in producer.run(batches):
            check_batch(ds, b, batches[b.k])
    assert leaked() == []


def test_an_abandoned_run_gives_its_slots_back(root):
    ds = fastload.open(root)
    batches = shuffled(batch_size=16)
    with BatchProducer(config(root, batch_size=16), num_workers=2, worker_type="process") as producer:
        first = producer.run(batches)
        next(first), next(first)
        second = producer.run(batches[::-1])  # abandons the first: its tasks still in flight go stale
        for b in second:
            check_batch(ds, b, batches[::-1][b.k])
        with pytest.raises(RuntimeError, match="abandoned"):
            next(first)
        assert len(producer._state.free) == producer.n_slots  # every slot came back


def _slow_start(worker_id):
    time.sleep(0.5)


class _Interrupted(Exception):
    pass


@pytest.mark.parametrize("worker_type", ["process", "thread"])
def test_a_run_interrupted_before_its_first_batch_leaves_every_slot_stale_and_the_next_run_whole(root, worker_type):
    """A Ctrl-C while the first batch is awaited leaves every slot out on a stale task; the next
    run must wait for those (not end at once, nor wait for a batch it could not send)."""
    ds = fastload.open(root)
    batches = shuffled()

    def interrupt(signum, frame):
        raise _Interrupted

    with BatchProducer(config(root, worker_init_fn=_slow_start), num_workers=2, worker_type=worker_type) as producer:
        previous = signal.signal(signal.SIGALRM, interrupt)
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.2)
            with pytest.raises(_Interrupted):
                next(producer.run(batches))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        assert not producer._state.free  # every slot is out on a task of the interrupted run
        delivered = 0
        for b in producer.run(batches):
            check_batch(ds, b, batches[b.k])
            delivered += 1
        assert delivered == len(batches)
        assert len(producer._state.free) == producer.n_slots


def test_stats_are_fed_by_the_producer(root):
    stats = LoaderStats()
    batches = shuffled()
    with BatchProducer(config(root), num_workers=2, stats=stats) as producer:
        nbytes = sum(b.nbytes for b in producer.run(batches))
    snap = stats.snapshot()
    assert snap["batches"] == len(batches) and snap["samples"] == N and snap["bytes"] == nbytes
    assert nbytes > N * (66 + 8)
    assert snap["num_workers"] == 2 and 0 < snap["worker_utilization"] <= 1
    assert snap["stages"]["read"] > 0 and snap["worker_busy_s"] >= snap["stages"]["read"]
    assert 0 < snap["stall_s"] <= snap["wall_s"] and 0 < snap["stall_pct"] <= 100
    assert snap["samples_per_s"] > 0 and snap["first_batch_s"] > 0


def test_arguments_are_checked(root):
    cfg = config(root)
    for kwargs, match in [({"num_workers": -1}, "num_workers"), ({"num_workers": 1, "worker_type": "fiber"}, "fiber"),
                          ({"num_workers": 1, "prefetch_factor": 0}, "prefetch_factor"),
                          ({"num_workers": 1, "timeout": -1}, "timeout"),
                          ({"num_workers": 1, "on_error": "ignore"}, "on_error"),
                          ({"num_workers": 1, "mp_context": "teleport"}, "multiprocessing_context")]:
        with pytest.raises(ValueError, match=match):
            BatchProducer(cfg, **kwargs)
    with pytest.raises(ValueError, match="not among fields"):
        WorkerConfig(str(root), {}, ("text",), cfg.layout)
    with BatchProducer(cfg, num_workers=1) as producer:
        with pytest.raises(ValueError, match="batch 1 holds 65 records"):
            list(producer.run([np.arange(3), np.arange(65)]))
    assert leaked() == []


# -- failures ------------------------------------------------------------------------------------
def test_a_killed_worker_is_a_worker_error_within_seconds(root):
    producer = BatchProducer(config(root, batch_size=8), num_workers=2)
    pids = producer.worker_pids
    it = producer.run(shuffled(batch_size=8))
    next(it), next(it)
    os.kill(pids[1], signal.SIGKILL)
    t0 = time.monotonic()
    with pytest.raises(WorkerError) as info:
        for _ in it:
            pass
    assert time.monotonic() - t0 < 3
    msg = str(info.value)
    assert f"loader worker 1 (pid {pids[1]})" in msg and "SIGKILL" in msg and "exit code -9" in msg
    assert producer.closed and leaked() == [] and all(gone(p) for p in pids)


def test_a_segfaulting_worker_is_a_worker_error(root):
    with BatchProducer(config(root, worker_init_fn=init_segfaults), num_workers=1) as producer:
        pid = producer.worker_pids[0]
        with pytest.raises(WorkerError, match=rf"loader worker 0 \(pid {pid}\) was killed by signal SIGSEGV"):
            list(producer.run(shuffled()))
    assert leaked() == []


@pytest.mark.parametrize("worker_type", ["process", "thread"])
def test_a_failing_worker_init_fn_is_named_in_the_main_process(root, worker_type):
    producer = BatchProducer(config(root, worker_init_fn=init_raises), num_workers=2, worker_type=worker_type)
    with pytest.raises(WorkerError) as info:
        list(producer.run(shuffled()))
    err = info.value
    assert "raised ValueError while worker_init_fn init_raises(" in str(err) and "no GPU for worker" in str(err)
    assert isinstance(err.__cause__, ValueError) and "no GPU for worker" in str(err.__cause__)
    if worker_type == "process":
        assert any('raise ValueError(f"no GPU' in note for note in err.__notes__)  # the worker's traceback
    assert producer.closed and leaked() == []


@pytest.mark.parametrize("worker_type", ["process", "thread"])
def test_a_corrupt_block_is_a_format_error_naming_shard_and_block(tmp_path, worker_type):
    root = write_dataset(tmp_path / "ds")
    path = sorted(root.glob("*.fls"))[1]
    reader = ShardReader.open(path)
    blk = 1
    offset = int(reader.blocks["offset"][blk]) + 5
    first = int(reader.first_record[blk]) + int(fastload.open(root).manifest.shard_records[0])
    del reader
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))
    with BatchProducer(config(root), num_workers=2, worker_type=worker_type) as producer:
        batches = [np.arange(0, 64), np.array([first, 0, 1]), np.arange(64, 128)]
        got = []
        with pytest.raises(FormatError) as info:
            for b in producer.run(batches):
                got.append(b.k)
        assert got == [0]  # the error comes at its batch, in order
        assert str(path) in str(info.value) and f"block {blk} " in str(info.value)
        assert any(f"loader worker{' thread' if worker_type == 'thread' else ''} 1" in n
                   for n in info.value.__notes__)
        # the workers stay up: the next run works
        assert [b.n for b in producer.run([np.arange(3)])] == [3]
    assert leaked() == []


@pytest.mark.parametrize("num_workers, worker_type", KINDS, ids=KIND_IDS)
def test_other_errors_in_a_batch(root, num_workers, worker_type):
    with BatchProducer(config(root), num_workers=num_workers, worker_type=worker_type) as producer:
        with pytest.raises((WorkerError, IndexError)) as info:
            list(producer.run([np.arange(4), np.array([N + 5])]))
    err = info.value
    if num_workers:
        assert isinstance(err, WorkerError) and "raised IndexError while reading batch 1" in str(err)
        assert isinstance(err.__cause__, IndexError)
    else:  # in the consumer's own thread the error is simply raised
        assert isinstance(err, IndexError)
    assert f"index {N + 5} is out of range" in str(err)
    assert leaked() == []


@pytest.mark.parametrize("worker_type", ["process", "thread"])
def test_timeout(root, worker_type):
    producer = BatchProducer(config(root, worker_init_fn=init_sleeps), num_workers=1, worker_type=worker_type,
                             timeout=0.3)
    t0 = time.monotonic()
    with pytest.raises(WorkerError, match=r"timed out after 0.3 seconds waiting for batch 0"):
        list(producer.run(shuffled()))
    assert time.monotonic() - t0 < 2  # the stuck worker is terminated, not waited for
    assert producer.closed and leaked() == []


# -- lifetime ------------------------------------------------------------------------------------
def test_close_is_idempotent_and_final(root):
    producer = BatchProducer(config(root), num_workers=2)
    pids = producer.worker_pids
    it = producer.run(shuffled())
    next(it)
    producer.close()
    producer.close()
    assert producer.closed and leaked() == [] and all(gone(p) for p in pids)
    with pytest.raises(RuntimeError, match="closed during iteration"):
        next(it)
    with pytest.raises(RuntimeError, match="is closed"):
        producer.run(shuffled())


@pytest.mark.parametrize("worker_type", ["process", "thread"])
def test_a_producer_dropped_mid_iteration_leaks_nothing(root, worker_type):
    producer = BatchProducer(config(root), num_workers=2, worker_type=worker_type)
    pids = producer.worker_pids
    threads = [] if worker_type == "process" else list(producer._state.pool.threads)
    it = producer.run(shuffled())
    batch = next(it)
    del producer
    assert leaked() != []  # the iterator keeps its producer alive
    del it
    gc.collect()
    assert leaked() == [] and all(gone(p) for p in pids)
    assert batch.fixed["tok"].sum() >= 0  # a batch kept past the end is still mapped
    for t in threads:
        t.join(5)
        assert not t.is_alive()


def test_ctrl_c_in_the_consumer_shuts_workers_down_cleanly(root, capfd):
    producer = BatchProducer(config(root, batch_size=16), num_workers=2)
    procs = list(producer._state.pool.procs)
    for p in procs:  # a terminal's Ctrl-C reaches the whole process group: workers ignore it
        os.kill(p.pid, signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        for b in producer.run(shuffled(batch_size=16)):
            if b.k == 5:
                raise KeyboardInterrupt
    assert all(p.is_alive() for p in procs)
    producer.close()
    assert [p.exitcode for p in procs] == [0, 0]  # they left on their own, not terminated
    assert leaked() == []
    err = capfd.readouterr().err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


def test_a_failed_start_leaks_nothing(tmp_path, root):
    cfg = config(root)
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    (copy / "manifest.json").unlink()
    bad = WorkerConfig(str(copy), {}, None, cfg.layout)
    with pytest.raises(FormatError, match="not a fastload dataset"):
        BatchProducer(bad, num_workers=0)
    with BatchProducer(bad, num_workers=1) as producer:
        with pytest.raises(FormatError, match="not a fastload dataset") as info:
            list(producer.run(shuffled()))
        assert any("while opening the dataset" in n for n in info.value.__notes__)
    assert leaked() == []
