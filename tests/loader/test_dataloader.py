"""fastload.DataLoader: drop-in conformance with torch's DataLoader, order, epochs, resume, stats."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import BatchSampler, Dataset as TorchDataset, RandomSampler, Sampler, SequentialSampler
from torch.utils.data import DataLoader as TorchDataLoader

import fastload
from fastload.loader import DataLoader, copy_batch

N = 1000


@pytest.fixture(scope="module")
def ds_path(tmp_path_factory):
    root = tmp_path_factory.mktemp("loader") / "ds"
    rng = np.random.default_rng(0)
    with fastload.Writer(root, shard_size="64KB", block_size="8KB") as w:
        w.write_batch({
            "id": np.arange(N, dtype=np.int64),
            "tokens": rng.integers(0, 60000, size=(N, 17), dtype=np.uint16),
            "score": rng.random(N).astype(np.float32),
            "text": [f"record {i}" for i in range(N)],
        })
    return root


@pytest.fixture(scope="module")
def ds(ds_path):
    return fastload.open(ds_path)


def ids(loader) -> list[int]:
    return [int(i) for batch in loader for i in batch["id"]]


def assert_same_batches(a, b):
    a, b = [copy_batch(x) for x in a], [copy_batch(x) for x in b]  # fast-path batches are slot views
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            if isinstance(x[k], torch.Tensor):
                assert torch.equal(x[k], y[k]), k
            else:
                assert list(x[k]) == list(y[k]), k


# -- drop-in ------------------------------------------------------------------------------------
def test_is_a_torch_dataloader_with_torchs_attributes(ds):
    loader = DataLoader(ds, batch_size=32)
    assert isinstance(loader, TorchDataLoader)
    assert loader.batch_size == 32 and loader.num_workers == 0 and loader.drop_last is False
    assert loader.prefetch_factor is None and loader.timeout == 0 and loader.pin_memory is False
    assert isinstance(loader.sampler, Sampler) and isinstance(loader.batch_sampler, BatchSampler)
    assert len(loader) == len(TorchDataLoader(ds, batch_size=32)) == 32
    assert DataLoader(ds, batch_size=32, num_workers=2).prefetch_factor == 2
    with pytest.raises(ValueError):
        DataLoader(ds, num_workers=0, prefetch_factor=2)
    with pytest.raises(ValueError):
        DataLoader(ds, sampler=SequentialSampler(ds), shuffle=True)
    with pytest.raises(ValueError):
        DataLoader(ds, num_workers=-1)


def test_same_batches_as_torch_without_shuffle(ds):
    for drop_last in (False, True):
        ours = DataLoader(ds, batch_size=64, drop_last=drop_last)
        theirs = TorchDataLoader(ds, batch_size=64, drop_last=drop_last)
        assert_same_batches(ours, theirs)


def test_batch_structure_matches_default_collate(ds):
    batch = next(iter(DataLoader(ds, batch_size=8)))
    ref = next(iter(TorchDataLoader(ds, batch_size=8)))
    assert batch["tokens"].dtype == torch.uint16 and batch["tokens"].shape == (8, 17)
    assert batch["score"].dtype == torch.float32 and batch["id"].dtype == torch.int64
    assert batch["text"] == ref["text"] == [f"record {i}" for i in range(8)]


@pytest.mark.parametrize("workers,kind", [(1, "process"), (2, "process"), (2, "thread")])
def test_workers_give_the_same_batches(ds, workers, kind):
    ref = DataLoader(ds, batch_size=50, shuffle=True, seed=3)
    got = DataLoader(ds, batch_size=50, shuffle=True, seed=3, num_workers=workers, worker_type=kind)
    assert_same_batches(ref, got)


def test_shuffle_full_and_block_cover_the_epoch_and_are_seeded(ds):
    for mode in (True, "full", "block"):
        a = ids(DataLoader(ds, batch_size=64, shuffle=mode, seed=1))
        b = ids(DataLoader(ds, batch_size=64, shuffle=mode, seed=1))
        c = ids(DataLoader(ds, batch_size=64, shuffle=mode, seed=2))
        assert sorted(a) == list(range(N)) and a == b and a != c and a != list(range(N))


def test_reiteration_advances_the_epoch_and_set_epoch_chooses_it(ds):
    loader = DataLoader(ds, batch_size=100, shuffle=True)
    e0, e1 = ids(loader), ids(loader)
    assert sorted(e0) == sorted(e1) == list(range(N)) and e0 != e1 and loader.epoch == 1
    loader.set_epoch(0)
    assert ids(loader) == e0


def test_custom_collate_and_injected_samplers_are_honoured(ds):
    def collate(items):
        return [item["id"] for item in items]

    assert list(DataLoader(ds, batch_size=10, collate_fn=collate))[0] == list(range(10))

    class Reverse(Sampler[int]):
        def __iter__(self):
            return iter(range(N - 1, -1, -1))

        def __len__(self):
            return N

    assert ids(DataLoader(ds, batch_size=64, sampler=Reverse())) == list(range(N - 1, -1, -1))
    gen = torch.Generator().manual_seed(5)
    rs = ids(DataLoader(ds, batch_size=64, sampler=RandomSampler(ds, generator=gen)))
    assert sorted(rs) == list(range(N))
    bs = BatchSampler(SequentialSampler(range(N)), batch_size=7, drop_last=True)
    assert ids(DataLoader(ds, batch_sampler=bs)) == list(range(7 * (N // 7)))


def test_recreated_from_its_attributes_like_lightning(ds):
    loader = DataLoader(ds, batch_size=16, shuffle=True, num_workers=0, seed=4)
    again = type(loader)(loader.dataset, batch_size=loader.batch_size, shuffle=loader.shuffle,
                         num_workers=loader.num_workers, drop_last=loader.drop_last, seed=loader.seed)
    assert ids(again) == ids(DataLoader(ds, batch_size=16, shuffle=True, seed=4))


def test_other_datasets_run_through_torch(ds):
    class Squares(TorchDataset):
        def __len__(self):
            return 10

        def __getitem__(self, i):
            return {"x": i * i}

    got = [b["x"].tolist() for b in DataLoader(Squares(), batch_size=4)]
    assert got == [[0, 1, 4, 9], [16, 25, 36, 49], [64, 81]]


def test_a_path_opens_the_dataset(ds_path):
    assert ids(DataLoader(str(ds_path), batch_size=128)) == list(range(N))


def test_plain_torch_loader_uses_batched_getitems(ds):
    assert hasattr(ds, "__getitems__")
    got = [int(i) for b in TorchDataLoader(ds, batch_size=33) for i in b["id"]]
    assert got == list(range(N))


# -- resume -------------------------------------------------------------------------------------
@pytest.mark.parametrize("stop_after,workers_after", [(1, 0), (7, 2), (15, 0)])
def test_resume_mid_epoch_gives_exactly_the_rest(ds, stop_after, workers_after):
    full = ids(DataLoader(ds, batch_size=64, shuffle="block", seed=9))
    loader = DataLoader(ds, batch_size=64, shuffle="block", seed=9)
    seen = []
    it = iter(loader)
    for _ in range(stop_after):
        seen += [int(i) for i in next(it)["id"]]
    state = loader.state_dict()
    assert set(state) >= {"seed", "epoch", "samples_done"} and len(str(state)) < 400
    del it
    resumed = DataLoader(ds, batch_size=64, shuffle="block", seed=9, num_workers=workers_after)
    resumed.load_state_dict(state)
    assert seen + ids(resumed) == full


def test_state_of_a_finished_epoch_starts_the_next(ds):
    loader = DataLoader(ds, batch_size=200, shuffle=True)
    ids(loader)
    state = loader.state_dict()
    assert state["epoch"] == 1 and state["samples_done"] == 0
    resumed = DataLoader(ds, batch_size=200, shuffle=True)
    resumed.load_state_dict(state)
    assert ids(resumed) == ids(loader)  # both run epoch 1
    with pytest.raises(ValueError):
        DataLoader(ds, batch_size=200, shuffle=False).load_state_dict(state)


# -- observability and devices ------------------------------------------------------------------
def test_stats_report_the_stall(ds):
    loader = DataLoader(ds, batch_size=100)
    for _ in loader:
        pass
    s = loader.stats()
    assert s["batches"] == 10 and s["samples"] == N
    assert 0.0 <= s["stall_pct"] <= 100.0 and s["samples_per_s"] > 0


def test_device_and_pin_memory_fall_back_on_a_cpu_machine(ds):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = ids(DataLoader(ds, batch_size=100, device="cuda"))
        got2 = ids(DataLoader(ds, batch_size=100, pin_memory=True))
    assert got == got2 == list(range(N))
    assert any("CUDA" in str(w.message) for w in caught)


def test_batches_are_views_until_the_next_one_and_copy_batch_keeps_them(ds):
    it = iter(DataLoader(ds, batch_size=10, num_workers=0))
    first = next(it)
    kept = copy_batch(first)
    for _ in range(5):
        next(it)
    assert kept["id"].tolist() == list(range(10))


# -- failures -----------------------------------------------------------------------------------
def _our_shm() -> set[str]:
    import os

    return {n for n in os.listdir("/dev/shm") if n.startswith(f"fastload-{os.getpid()}-")}


@pytest.mark.timeout(60)
def test_a_killed_worker_raises_workererror_and_leaks_nothing(ds):
    import os
    import signal
    import time

    before = _our_shm()
    loader = DataLoader(ds, batch_size=10, num_workers=2, worker_type="process")
    it = iter(loader)
    next(it)
    os.kill(loader._producer.worker_pids[0], signal.SIGKILL)
    t0 = time.perf_counter()
    with pytest.raises(fastload.WorkerError):
        for _ in it:
            pass
    assert time.perf_counter() - t0 < 10
    loader.close()
    assert _our_shm() == before
    assert ids(loader) == list(range(N))  # a new iteration starts fresh workers


def test_persistent_workers_serve_every_epoch(ds):
    loader = DataLoader(ds, batch_size=100, num_workers=2, persistent_workers=True, shuffle=True)
    e0 = ids(loader)
    pids = loader._producer.worker_pids
    e1 = ids(loader)
    assert loader._producer.worker_pids == pids and sorted(e0) == sorted(e1) == list(range(N)) and e0 != e1
    loader.close()


def test_a_corrupt_record_names_its_shard(tmp_path):
    root = tmp_path / "bad"
    with fastload.Writer(root, shard_size="16KB", block_size="2KB") as w:
        w.write_batch({"id": np.arange(500, dtype=np.int64)})
    shard = sorted(root.glob("*.fls"))[0]
    data = bytearray(shard.read_bytes())
    data[200] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(fastload.FormatError, match=shard.name):
        for _ in DataLoader(str(root), batch_size=50, num_workers=2):
            pass


@pytest.mark.parametrize("workers,kind", [(0, "thread"), (2, "thread"), (2, "process")])
def test_skip_replaces_unreadable_records_deterministically(tmp_path, workers, kind):
    root = tmp_path / "bad"
    with fastload.Writer(root, shard_size="16KB", block_size="2KB") as w:
        w.write_batch({"id": np.arange(500, dtype=np.int64)})
    reader = fastload.format.shard_reader.ShardReader.open(sorted(root.glob("*.fls"))[0])
    first, count = int(reader.first_record[0]), int(reader.block_records[0])
    offset = int(reader.blocks["offset"][0])
    shard = sorted(root.glob("*.fls"))[0]
    data = bytearray(shard.read_bytes())
    data[offset + 3] ^= 0xFF  # corrupt block 0 of shard 0: records first..first+count-1
    shard.write_bytes(bytes(data))
    runs = []
    for _ in range(2):
        loader = DataLoader(str(root), batch_size=50, num_workers=workers, worker_type=kind, on_error="skip")
        got = ids(loader)
        runs.append(got)
        assert loader.stats()["skipped"] == count
    assert runs[0] == runs[1] and len(runs[0]) == 500  # same replacements, batches stay full
    bad = set(range(first, first + count))
    assert not bad & set(runs[0]) and runs[0][count] == count  # replaced by the next readable record


def test_log_every_writes_a_one_line_summary(ds, caplog):
    import logging

    with caplog.at_level(logging.INFO):
        for _ in DataLoader(ds, batch_size=100, log_every=1e-9):  # every batch
            pass
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("fastload")]
    assert len(lines) >= 5 and all("\n" not in line and "stall" in line for line in lines)
