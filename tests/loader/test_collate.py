"""Built-in padding, fastload's collate under torch's loader, and the worker result transport."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader as TorchDataLoader

import fastload
from fastload.errors import SchemaError
from fastload.loader import DataLoader, Pad
from fastload.loader.transport import Packed, pack, unpack

N = 150


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    root = tmp_path_factory.mktemp("collate") / "ds"
    rng = np.random.default_rng(3)
    with fastload.Writer(root, schema="id:int64,tokens:uint16[-1],text:str", shard_size="8KB",
                         block_size="2KB") as w:
        w.write_batch({"id": np.arange(N, dtype=np.int64),
                       "tokens": [rng.integers(1, 9999, size=int(rng.integers(0, 40)), dtype=np.uint16)
                                  for _ in range(N)],
                       "text": [f"t{i}" for i in range(N)]})
    return fastload.open(root)


def reference(ds, ids, pad: Pad):
    """Padding done the usual way, with torch's pad_sequence over the records read one by one."""
    rows = [torch.from_numpy(ds[int(i)]["tokens"].astype(np.int64)) for i in ids]
    lengths = torch.tensor([len(r) for r in rows])
    longest = int(lengths.max()) if len(rows) else 0
    width = pad.length if pad.length is not None else longest
    if pad.multiple:
        width = -(-width // pad.multiple) * pad.multiple
    out = torch.full((len(rows), width), pad.value, dtype=torch.int64)
    for k, r in enumerate(rows):
        out[k, : min(len(r), width)] = r[:width]
    mask = (torch.arange(width) < lengths.clamp(max=width)[:, None]).long()
    return out, mask


@pytest.mark.parametrize("pad", [Pad(), Pad(value=7, multiple=8), Pad(length=16, mask="attention_mask"),
                                 Pad(length=64, multiple=64, value=3)])
@pytest.mark.parametrize("workers", [0, 2])
def test_pad_matches_pad_sequence(ds, pad, workers):
    loader = DataLoader(ds, batch_size=32, shuffle=True, num_workers=workers, pad={"tokens": pad})
    mask_name = pad.mask or "tokens_mask"
    for batch in loader:
        want, mask = reference(ds, batch["id"], pad)
        assert batch["tokens"].dtype == torch.uint16
        assert torch.equal(batch["tokens"].long(), want)
        assert torch.equal(batch[mask_name], mask)
        assert batch["text"] == [f"t{int(i)}" for i in batch["id"]]


def test_pad_without_a_mask_and_bad_specs(ds):
    batch = next(iter(DataLoader(ds, batch_size=8, pad={"tokens": Pad(mask=None)})))
    assert set(batch) == {"id", "tokens", "text"}
    with pytest.raises(SchemaError, match="variable-length"):
        DataLoader(ds, batch_size=8, pad={"id": 0})
    with pytest.raises(SchemaError):
        DataLoader(ds, batch_size=8, pad={"nope": 0})
    with pytest.raises(ValueError, match="collate_fn"):
        DataLoader(ds, batch_size=8, pad={"tokens": 0}, collate_fn=list)
    with pytest.raises(ValueError):
        Pad(length=0)
    with pytest.raises(ValueError, match="already a field"):
        DataLoader(ds, batch_size=8, pad={"tokens": Pad(mask="text")})


def test_fastload_collate_under_torchs_loader_gives_the_same_batches(ds):
    """What Accelerate's rebuilt loader runs: torch's DataLoader with the loader's attributes."""
    ours = DataLoader(ds, batch_size=20, fields=["id", "tokens"], pad={"tokens": Pad(multiple=8)})
    rebuilt = TorchDataLoader(ds, batch_sampler=ours.batch_sampler, collate_fn=ours.collate_fn, num_workers=2)
    for a, b in zip(ours, rebuilt, strict=True):
        assert a.keys() == b.keys() == {"id", "tokens", "tokens_mask"}
        assert all(torch.equal(a[k], b[k]) for k in a)
    plain = DataLoader(ds, batch_size=20)  # variable rows stay lists: no torch.stack of unequal rows
    rows = [{"id": np.int64(i), "tokens": np.arange(i % 4, dtype=np.uint16), "text": "x"} for i in range(5)]
    batch = plain.collate_fn(rows)
    assert batch["id"].tolist() == list(range(5)) and [len(t) for t in batch["tokens"]] == [0, 1, 2, 3, 0]


def test_results_through_the_slot_and_when_they_do_not_fit():
    result = {"a": torch.arange(1000, dtype=torch.int64).reshape(10, 100), "b": [torch.ones(3), "s"],
              "c": np.arange(5, dtype=np.float32), "half": torch.ones(2, dtype=torch.bfloat16)}
    arena = np.zeros(1 << 16, dtype=np.uint8)
    packed = pack(result, arena)
    assert isinstance(packed, Packed) and packed.spans and len(packed.data) < 2000  # the bytes are in the arena
    got = unpack(packed, arena)
    arena[:] = 0  # the slot is reused: the result must not change
    assert torch.equal(got["a"], result["a"]) and torch.equal(got["b"][0], torch.ones(3)) and got["b"][1] == "s"
    assert np.array_equal(got["c"], result["c"]) and torch.equal(got["half"], result["half"])
    small = np.zeros(64, dtype=np.uint8)
    overflow = pack(result, small)
    assert overflow.spans is None and torch.equal(unpack(overflow, small)["a"], result["a"])


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_a_collate_result_is_the_callers_to_keep(ds, kind):
    def collate(rows):
        return {"id": torch.tensor([int(r["id"]) for r in rows]),
                "tokens": pad_sequence([torch.from_numpy(r["tokens"].astype(np.int64)) for r in rows],
                                       batch_first=True)}

    kept = list(DataLoader(ds, batch_size=16, collate_fn=collate, num_workers=2, worker_type=kind))
    want = list(TorchDataLoader(ds, batch_size=16, collate_fn=collate))
    assert len(kept) == len(want)
    assert all(torch.equal(a["id"], b["id"]) and torch.equal(a["tokens"], b["tokens"]) for a, b in zip(kept, want))


def _pad_collate(rows):
    return {"id": torch.tensor([int(r["id"]) for r in rows]),
            "tokens": pad_sequence([torch.from_numpy(r["tokens"].astype(np.int64)) for r in rows], batch_first=True)}


def _torch_batches(ds, **kw):
    return list(TorchDataLoader(ds, batch_size=16, collate_fn=_pad_collate, **kw))


def _same(a, b) -> bool:
    return torch.equal(a["id"], b["id"]) and torch.equal(a["tokens"], b["tokens"])


def test_process_results_are_slot_views_that_hold_their_slot(ds):
    """A process worker's tensors are read in place from the batch's slot (no copy), and the slot
    takes no task while any of them lives: batches kept in a sliding window and a slice of the
    first kept for the whole epoch stay equal to torch's, and a batch the consumer writes into
    never shows in another."""
    want = _torch_batches(ds)
    loader = DataLoader(ds, batch_size=16, collate_fn=_pad_collate, num_workers=2, worker_type="process")
    window, in_slot = [], 0
    for k, batch in enumerate(loader):
        ring = loader._producer._state.ring
        in_slot += 0 <= batch["tokens"].data_ptr() - ring._base.ctypes.data < ring._base.nbytes
        assert _same(batch, want[k])
        if k == 0:
            first_rows = batch["tokens"][:2]  # a view keeps the whole batch's slot
        if k % 2:
            batch["tokens"].fill_(-1)  # the caller's memory
        else:
            window = (window + [(k, batch)])[-2:]
        assert all(_same(b, want[j]) for j, b in window)
    assert k == len(want) - 1 and in_slot >= len(want) // 2  # most batches came as views, not copies
    assert torch.equal(first_rows, want[0]["tokens"][:2])


def test_a_held_process_result_survives_later_epochs(ds):
    """With persistent workers a batch of epoch 0 kept while epochs 1 and 2 run stays intact."""
    loader = DataLoader(ds, batch_size=16, shuffle=True, collate_fn=_pad_collate, num_workers=2,
                        worker_type="process", persistent_workers=True)
    first = next(iter(loader))
    copy = {k: v.clone() for k, v in first.items()}
    for epoch in (1, 2):
        loader.set_epoch(epoch)
        got = list(loader)
        assert sorted(int(i) for b in got for i in b["id"]) == list(range(N))
        assert _same(first, copy)
    producer = loader._producer
    del first, got
    assert not producer._state.leased  # every slot went back when its batch was garbage
    loader.close()


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_a_collate_gets_torchs_rows_for_every_kind_with_nulls(tmp_path, kind):
    """The rows a worker hands the collate are those ``Dataset.__getitems__`` gives torch's loader
    (same keys, values and NumPy types), nulls and ``.valid`` entries included."""
    rows = [{"i": k, "f": k / 2, "s": f"s{k}", "y": bytes([k]), "a": list(range(k % 4)), "v": [k, -k]}
            if k % 3 else {c: None for c in "ifsyav"} for k in range(40)]
    fastload.pack(rows, tmp_path / "ds", schema="a:int32[-1],v:float32[2]", progress=False)
    nulls = fastload.open(tmp_path / "ds")

    def as_rows(batch):
        return [{k: (v.tolist(), v.dtype.str) if isinstance(v, np.ndarray) else (v, type(v).__name__)
                 for k, v in r.items()} for r in batch]

    ours = list(DataLoader(nulls, batch_size=8, collate_fn=as_rows, num_workers=2, worker_type=kind))
    theirs = list(TorchDataLoader(nulls, batch_size=8, collate_fn=as_rows))
    assert ours == theirs and "v.valid" in ours[0][0] and ours[0][0]["s"] == (None, "NoneType")


def _worker_pid(rows):
    return {"pid": torch.tensor([os.getpid()] * len(rows)), "id": torch.tensor([int(r["id"]) for r in rows])}


@pytest.mark.parametrize("collate, workers, where", [(_worker_pid, 2, "process"), (_worker_pid, 0, "main"),
                                                     (None, 2, "thread")])
def test_a_user_collate_runs_in_worker_processes_by_default_as_torchs_does(ds, collate, workers, where):
    """With no worker_type, a collate_fn of the user's runs in worker processes (as torch runs it;
    it holds the GIL), with none in the main process; fastload's own batch keeps threads."""
    loader = DataLoader(ds, batch_size=16, collate_fn=collate, num_workers=workers)
    assert loader.worker_type == ("thread" if where != "process" else "process")
    if collate is None:
        return
    batches = list(loader)
    pids = {int(p) for b in batches for p in b["pid"]}
    assert (os.getpid() not in pids and len(pids) >= 1) if where == "process" else pids == {os.getpid()}
    want = list(TorchDataLoader(ds, batch_size=16, collate_fn=collate))
    assert all(torch.equal(a["id"], b["id"]) for a, b in zip(batches, want)) and len(batches) == len(want)


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_stats_count_a_collate_results_bytes_not_its_slot(ds, kind):
    loader = DataLoader(ds, batch_size=16, collate_fn=_pad_collate, num_workers=2, worker_type=kind)
    list(loader)
    want = sum(b["id"].nbytes + b["tokens"].nbytes for b in _torch_batches(ds))
    assert loader.stats()["bytes"] == want
