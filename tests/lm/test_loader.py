"""Packed sequences and mixtures through fastload.DataLoader: torch's loader as the reference,
shuffles, ranks, per-source stats, and exact resume under another world size and worker count."""

from __future__ import annotations

import contextlib
import io
import json
import os

import numpy as np
import pytest
import torch

import fastload
from fastload.loader import DataLoader, copy_batch

from .conftest import write_docs
from .test_mixed import write_table

WORKERS = [(0, "thread"), (2, "thread"), (2, "process")]


@pytest.fixture(scope="module")
def packed(tmp_path_factory, docs):
    ds = write_docs(tmp_path_factory.mktemp("loader") / "docs", docs)
    return fastload.pack_sequences(ds, seq_len=48, separator=9, tail="pad",
                                   outputs=("input_ids", "position_ids", "cu_seqlens"))


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    base = tmp_path_factory.mktemp("loader-mix")
    return {"web": write_table(base / "web", 900, 0), "code": write_table(base / "code", 300, 1),
            "math": write_table(base / "math", 60, 2)}


@pytest.mark.parametrize("num_workers, worker_type", WORKERS)
def test_packed_batches_equal_torch_dataloader_over_the_same_windows(packed, num_workers, worker_type):
    loader = DataLoader(packed, batch_size=8, shuffle=True, seed=3, num_workers=num_workers,
                        worker_type=worker_type)
    order = [list(b) for b in loader.batch_sampler]  # epoch 0's window order, as torch sees it
    loader.set_epoch(0)  # reading the batch sampler moved the loader's epoch on, as torch's does
    got = [copy_batch(b) for b in loader]
    # torch's fetch and default collate (which cannot stack per-window cu_seqlens: the same windows
    # without that output)
    plain = fastload.pack_sequences(packed.source, seq_len=48, separator=9, tail="pad",
                                    outputs=("input_ids", "position_ids"))
    ref = torch.utils.data.DataLoader(plain, batch_sampler=order)
    assert len(got) == len(order)
    for mine, theirs, idx in zip(got, ref, order):
        assert torch.equal(mine["input_ids"], theirs["input_ids"])
        assert torch.equal(mine["position_ids"], theirs["position_ids"])
        expect = packed.get_batch(idx)
        assert np.array_equal(mine["cu_seqlens"].numpy(), expect["cu_seqlens"])
        assert mine["max_seqlen"] == expect["max_seqlen"]


def test_windows_are_shuffled_per_epoch_and_each_read_once(packed):
    loader = DataLoader(packed, batch_size=16, shuffle=True, fields=["input_ids"])
    epochs = [[row.tobytes() for b in loader for row in b["input_ids"].numpy()] for _ in range(2)]
    every = {row.tobytes() for row in packed.get_batch(np.arange(len(packed)))["input_ids"]}
    assert all(len(e) == len(packed) and set(e) == every for e in epochs)
    assert epochs[0] != epochs[1]


def test_mixture_batches_keep_the_weights_and_stats_count_sources(sources):
    m = fastload.mix(sources, {"web": 0.7, "code": 0.2, "math": 0.1}, epoch_samples=1000)
    loader = DataLoader(m, batch_size=50, shuffle=True, num_workers=2, fields=["id", "src"])
    total = np.zeros(3, np.int64)
    for b in loader:
        counts = np.bincount(b["src"].numpy(), minlength=3)
        assert np.abs(counts - np.array([35, 10, 5])).max() <= 2
        total += counts
    assert total.tolist() == [700, 200, 100]
    assert loader.stats()["sources"] == {"web": 700, "code": 200, "math": 100}


@contextlib.contextmanager
def rank_env(rank: int, world: int):
    old = {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE")}
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world))
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_ranks(make, world: int, state=None, stop=None, workers=(0, "thread")):
    """Every rank's loader in lockstep (RANK/WORLD_SIZE as a launcher sets them); the samples of the
    global batches in order, and rank 0's state after ``stop`` global batches."""
    loaders, iters = [], []
    for r in range(world):
        with rank_env(r, world):
            dl = make(num_workers=workers[0], worker_type=workers[1])
            if state is not None:
                dl.load_state_dict(state)
            loaders.append(dl)
            iters.append(iter(dl))
    out, k, saved = [], 0, None
    while stop is None or k < stop:
        batches = []
        for r, it in enumerate(iters):
            with rank_env(r, world):
                batches.append(next(it, None))
        if batches[0] is None:
            break
        out += [(s, i) for b in batches for s, i in zip(b["src"].tolist(), b["id"].tolist())]
        k += 1
    if stop is not None:
        with rank_env(0, world):
            saved = loaders[0].state_dict()
    for dl in loaders:
        dl.close()
    return out, saved


@pytest.mark.parametrize("old, new", [((2, (2, "process")), (3, (2, "thread"))), ((3, (0, "thread")), (1, (2, "process")))])
def test_mixture_resume_under_another_world_size_and_worker_count(sources, old, new):
    m = fastload.mix(sources, {"web": 0.5, "code": 0.3, "math": 0.2}, policy="cycle", epoch_samples=1200)

    def make(**kw):
        return DataLoader(m, batch_size=20, shuffle=True, seed=5, fields=["id", "src"], **kw)

    whole, _ = run_ranks(make, 1)
    before, state = run_ranks(make, old[0], stop=6, workers=old[1])  # the rest divides evenly: no padding
    # the state travels as JSON and through torch.save(weights_only=True), as checkpoints do
    buf = io.BytesIO()
    torch.save(json.loads(json.dumps(state)), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    after, _ = run_ranks(make, new[0], state=state, workers=new[1])
    assert before + after == whole[:len(before) + len(after)]
    assert len(before) + len(after) == 1200
    assert set(state["mixture"]["drawn"]) == {"web", "code", "math"}


def test_new_weights_mid_epoch_continue_each_source_where_it_was(sources):
    old = fastload.mix(sources, {"web": 0.5, "code": 0.3, "math": 0.2}, policy="rescale")
    new = fastload.mix(sources, {"web": 0.2, "code": 0.2, "math": 0.6}, policy="rescale")
    kw = dict(batch_size=20, shuffle=True, seed=2, fields=["id", "src"])
    first = DataLoader(old, **kw)
    it = iter(first)
    before = [copy_batch(next(it)) for _ in range(10)]  # batches are views of reused slots
    state = first.state_dict()
    first.close()
    second = DataLoader(new, **kw)
    second.load_state_dict(state)
    after = [copy_batch(b) for b in second]
    pairs = [(s, i) for b in before + after for s, i in zip(b["src"].tolist(), b["id"].tolist())]
    # rescale reads every sample of every source exactly once: nothing repeated, nothing skipped
    assert len(pairs) == len(set(pairs)) == 1260
    first_after = np.bincount(after[0]["src"].numpy(), minlength=3)
    assert np.abs(first_after - np.array([4, 4, 12])).max() <= 2  # the new weights from the switch on


def _gloo_rank(rank: int, world: int, init_file: str, sources: dict, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        m = fastload.mix({k: fastload.open(v) for k, v in sources.items()}, {"web": 0.5, "code": 0.3, "math": 0.2},
                         policy="stop")
        loader = DataLoader(m, batch_size=10, shuffle=True, seed=1, num_workers=2, fields=["id", "src"])
        got = [[(s, i) for s, i in zip(b["src"].tolist(), b["id"].tolist())] for b in loader]
        with open(f"{out}.{rank}", "w") as f:
            json.dump({"batches": got, "sources": loader.stats()["sources"]}, f)
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(180)
def test_gloo_ranks_split_a_mixture_into_disjoint_parts_in_proportion(sources, tmp_path):
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    paths = {k: str(v.root) for k, v in sources.items()}
    procs = [ctx.Process(target=_gloo_rank, args=(r, 2, str(tmp_path / "init"), paths, str(tmp_path / "out")))
             for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    ranks = [json.loads((tmp_path / f"out.{r}").read_text()) for r in range(2)]
    single, _ = run_ranks(lambda **kw: DataLoader(fastload.mix(sources, {"web": 0.5, "code": 0.3, "math": 0.2},
                                                               policy="stop"),
                                                  batch_size=10, shuffle=True, seed=1, fields=["id", "src"], **kw), 1)
    interleaved = [tuple(x) for k in range(len(ranks[0]["batches"])) for r in ranks for x in r["batches"][k]]
    assert interleaved == single[:len(interleaved)]
    assert len(set(interleaved)) == len(interleaved)
    for r in ranks:  # each rank's batches keep the weights
        for b in r["batches"]:
            counts = np.bincount([s for s, _ in b], minlength=3)
            assert np.abs(counts - np.array([5, 3, 2])).max() <= 2


def test_a_state_saved_after_a_weight_change_resumes_the_changed_run(sources):
    old = fastload.mix(sources, {"web": 0.5, "code": 0.3, "math": 0.2}, policy="rescale")
    new = fastload.mix(sources, {"web": 0.2, "code": 0.2, "math": 0.6}, policy="rescale")
    kw = dict(batch_size=20, shuffle=True, seed=2, fields=["id", "src"])

    def pairs(batches):
        return [(s, i) for b in batches for s, i in zip(b["src"].tolist(), b["id"].tolist())]

    first = DataLoader(old, **kw)
    it = iter(first)
    [next(it) for _ in range(5)]
    switched = DataLoader(new, **kw)
    switched.load_state_dict(first.state_dict())
    it = iter(switched)
    [next(it) for _ in range(4)]
    state = switched.state_dict()
    rest = pairs(copy_batch(b) for b in it)  # the changed run, uninterrupted
    again = DataLoader(new, **kw)
    again.load_state_dict(json.loads(json.dumps(state)))
    assert pairs(copy_batch(b) for b in again) == rest
