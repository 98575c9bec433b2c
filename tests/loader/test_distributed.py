"""Ranks under torch.distributed (gloo, real processes): disjoint equal parts, elastic resume."""

from __future__ import annotations

import json
import multiprocessing as mp

import numpy as np
import pytest

import fastload

N = 1200  # divisible by 1, 2, 3 and 4, so padding and dropping agree across the world sizes here
BATCH = 16


def _rank_main(rank: int, world: int, init_file: str, ds_path: str, out: str, stop_after: int,
               state_json: str | None, even: str) -> None:
    import torch.distributed as dist

    from fastload.loader import DataLoader

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        loader = DataLoader(ds_path, batch_size=BATCH, shuffle="full", seed=11, even=even)
        if state_json:
            loader.load_state_dict(json.loads(state_json))
        got, state = [], None
        for k, batch in enumerate(loader):
            got.append([int(i) for i in batch["id"]])
            if k + 1 == stop_after:
                state = loader.state_dict()
                break
        with open(f"{out}.{rank}", "w") as f:
            json.dump({"batches": got, "state": state}, f)
    finally:
        dist.destroy_process_group()


def _run(world, tmp_path, tag, ds_path, stop_after=-1, state=None, even="pad"):
    ctx = mp.get_context("spawn")
    init = tmp_path / f"init-{tag}"
    out = tmp_path / f"out-{tag}"
    procs = [ctx.Process(target=_rank_main, args=(r, world, str(init), str(ds_path), str(out), stop_after,
                                                   json.dumps(state) if state else None, even))
             for r in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0, f"rank process exited with {p.exitcode}"
    return [json.loads((tmp_path / f"out-{tag}.{r}").read_text()) for r in range(world)]


@pytest.fixture(scope="module")
def ds_path(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist") / "ds"
    with fastload.Writer(root, shard_size="16KB", block_size="2KB") as w:
        w.write_batch({"id": np.arange(N, dtype=np.int64), "x": np.zeros((N, 4), np.float32)})
    return root


@pytest.mark.timeout(180)
@pytest.mark.parametrize("world", [2, 3])
def test_ranks_get_disjoint_equal_parts_covering_the_epoch(tmp_path, ds_path, world):
    results = _run(world, tmp_path, f"w{world}", ds_path)
    per_rank = [[i for b in r["batches"] for i in b] for r in results]
    assert len({len(p) for p in per_rank}) == 1, "ranks got different numbers of samples"
    assert len({len(r["batches"]) for r in results}) == 1, "ranks got different numbers of batches"
    union = [i for p in per_rank for i in p]
    assert sorted(union) == list(range(N)), "union over ranks is not exactly the dataset"


@pytest.mark.timeout(240)
def test_resume_with_another_world_size(tmp_path, ds_path):
    whole = _run(1, tmp_path, "whole", ds_path)[0]
    order = [i for b in whole["batches"] for i in b]
    # 2 ranks x 9 batches x 16 = 288 delivered; the 912 left divide evenly over 3 ranks, so no
    # padding sample is repeated and the halves must tile the epoch exactly
    first = _run(2, tmp_path, "first", ds_path, stop_after=9)
    delivered = set(i for r in first for b in r["batches"] for i in b)
    state = first[0]["state"]
    assert state == first[1]["state"], "ranks disagree on the state"
    rest = _run(3, tmp_path, "rest", ds_path, state=state)
    resumed = [i for r in rest for b in r["batches"] for i in b]
    # the global sequence is the same whatever the world size: delivered + resumed = the epoch
    assert delivered == set(order[: len(delivered)])
    assert len(delivered) == 288
    assert sorted(resumed) == sorted(order[len(delivered):])
