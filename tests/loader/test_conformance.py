"""The same scenarios on fastload.DataLoader, torch's DataLoader and torchdata's StatefulDataLoader.

Order per epoch, set_epoch, mid- and end-of-epoch resume, custom collate, plain map-style and
iterable datasets, 0 and 2 workers, thread and process workers. torch's loader has no state, so
resume scenarios run on fastload and torchdata; a test whose name says ``fastload_differs`` pins
a place where fastload deliberately does something else, and says why.
"""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader as TorchDataLoader
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import IterableDataset, RandomSampler, get_worker_info
from torchdata.stateful_dataloader import StatefulDataLoader

import fastload
from fastload.loader import DataLoader

N = 203  # not a multiple of any batch size used: every epoch ends on a short batch
BATCH = 16


@pytest.fixture(scope="module")
def fl_ds(tmp_path_factory):
    root = tmp_path_factory.mktemp("conformance") / "ds"
    rng = np.random.default_rng(1)
    with fastload.Writer(root, schema="id:int64,tokens:uint16[-1]", shard_size="8KB", block_size="2KB") as w:
        w.write_batch({"id": np.arange(N, dtype=np.int64),
                       "tokens": [rng.integers(0, 9999, size=int(rng.integers(1, 30)), dtype=np.uint16)
                                  for _ in range(N)]})
    return fastload.open(root)


class Squares(TorchDataset):
    """A plain map-style dataset, as users write them."""

    def __len__(self):
        return N

    def __getitem__(self, i):
        return {"id": i, "tokens": np.arange(i % 7 + 1, dtype=np.int64)}


class Stream(IterableDataset):
    """An iterable dataset split across workers; ``stateful`` adds state_dict/load_state_dict."""

    def __init__(self, n: int = N):
        self.n, self._start, self._pos = n, None, None

    def __iter__(self):
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        start = self._start if self._start is not None else wid
        self._start = None
        for i in range(start, self.n, nw):
            self._pos = i + nw
            yield {"id": i, "tokens": np.arange(i % 5 + 1, dtype=np.int64)}


class StatefulStream(Stream):
    def state_dict(self):
        return {"pos": self._pos}

    def load_state_dict(self, state):
        self._start = state["pos"]


def pad_collate(rows):
    """A padding collate as users write it: a Python loop over the rows."""
    longest = max(len(r["tokens"]) for r in rows)
    out = torch.zeros(len(rows), longest, dtype=torch.int64)
    for i, r in enumerate(rows):
        out[i, : len(r["tokens"])] = torch.as_tensor(np.asarray(r["tokens"], dtype=np.int64))
    return {"id": torch.tensor([int(r["id"]) for r in rows]), "tokens": out}


LOADERS = {"fastload": DataLoader, "torch": TorchDataLoader, "torchdata": StatefulDataLoader}
STATEFUL = {"fastload": DataLoader, "torchdata": StatefulDataLoader}
WORKERS = [(0, "thread"), (2, "thread"), (2, "process")]


def make(kind: str, dataset, workers=(0, "thread"), **kw):
    n, wtype = workers
    extra = {"worker_type": wtype} if kind == "fastload" and isinstance(dataset, fastload.Dataset) else {}
    if n:
        kw.setdefault("multiprocessing_context", "fork")
    if kw.get("shuffle"):  # torch's samplers draw from it; fastload takes its seed
        kw.setdefault("generator", torch.Generator().manual_seed(5))
    return LOADERS[kind](dataset, batch_size=BATCH, num_workers=n, collate_fn=kw.pop("collate_fn", pad_collate),
                         **extra, **kw)


def ids(batches) -> list[int]:
    return [int(i) for b in batches for i in b["id"]]


def dataset_of(name, fl_ds):
    return {"fastload": fl_ds, "map": Squares(), "stream": Stream(), "stateful_stream": StatefulStream()}[name]


def roundtrip(state):
    """A state through torch.save/torch.load(weights_only=True) and pickle, as checkpoints take it."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return pickle.loads(pickle.dumps(torch.load(buf, weights_only=True)))


# -- order ---------------------------------------------------------------------------------------
# thread workers are fastload's, for fastload datasets; torch's workers are processes
ORDER_CASES = [(data, w) for data in ("fastload", "map") for w in WORKERS if data == "fastload" or w != (2, "thread")]


@pytest.mark.parametrize("kind", LOADERS)
@pytest.mark.parametrize("data,workers", ORDER_CASES)
def test_every_epoch_is_a_new_permutation_with_a_custom_collate(fl_ds, kind, data, workers):
    loader = make(kind, dataset_of(data, fl_ds), workers, shuffle=True)
    epochs = [ids(loader) for _ in range(3)]
    assert all(sorted(e) == list(range(N)) for e in epochs)
    assert epochs[0] != epochs[1] != epochs[2] != epochs[0]


@pytest.mark.parametrize("kind", LOADERS)
@pytest.mark.parametrize("data", ["fastload", "map"])
def test_same_batches_as_torch_in_order(fl_ds, kind, data):
    want = ids(TorchDataLoader(dataset_of(data, fl_ds), batch_size=BATCH, collate_fn=pad_collate))
    got = [b for b in make(kind, dataset_of(data, fl_ds), (2, "process"))]
    assert ids(got) == want == list(range(N))
    ref = list(TorchDataLoader(dataset_of(data, fl_ds), batch_size=BATCH, collate_fn=pad_collate))
    assert all(torch.equal(a["tokens"], b["tokens"]) for a, b in zip(got, ref))


@pytest.mark.parametrize("target", ["loader", "sampler", "batch_sampler"])
@pytest.mark.parametrize("data", ["fastload", "map"])
def test_fastload_differs_set_epoch_anywhere_picks_that_epochs_order(fl_ds, target, data):
    # torch's RandomSampler has no set_epoch: its order comes from a generator, not an epoch number
    loader = make("fastload", dataset_of(data, fl_ds), shuffle=True)
    e0, e1, e2 = ids(loader), ids(loader), ids(loader)
    obj = {"loader": loader, "sampler": loader.sampler, "batch_sampler": loader.batch_sampler}[target]
    obj.set_epoch(1)
    assert ids(loader) == e1
    obj.set_epoch(0)
    assert ids(loader) == e0 and ids(loader) == e1  # without set_epoch, iteration moves on
    assert e0 != e1 != e2


# -- resume --------------------------------------------------------------------------------------
def _resume(kind, data, fl_ds, workers, stop, **kw):
    full_loader = make(kind, dataset_of(data, fl_ds), workers, **kw)
    full = ids(full_loader)
    loader = make(kind, dataset_of(data, fl_ds), workers, **kw)
    it = iter(loader)
    seen = ids(next(it) for _ in range(stop))
    state = roundtrip(loader.state_dict())
    del it
    resumed = make(kind, dataset_of(data, fl_ds), workers, **kw)
    resumed.load_state_dict(state)
    return full, seen, ids(resumed)


@pytest.mark.parametrize("kind", STATEFUL)
@pytest.mark.parametrize("data", ["fastload", "map", "stream", "stateful_stream"])
@pytest.mark.parametrize("workers", [(0, "thread"), (2, "process")])
def test_mid_epoch_resume_gives_exactly_the_rest(fl_ds, kind, data, workers):
    shuffle = {"shuffle": True} if data in ("fastload", "map") else {}
    full, seen, rest = _resume(kind, data, fl_ds, workers, stop=5, **shuffle)
    assert seen + rest == full and len(full) == N


@pytest.mark.parametrize("workers", [(0, "thread"), (2, "thread")])
def test_mid_epoch_resume_with_thread_workers(fl_ds, workers):
    full, seen, rest = _resume("fastload", "fastload", fl_ds, workers, stop=7, shuffle="block")
    assert seen + rest == full


@pytest.mark.parametrize("kind", STATEFUL)
def test_resume_through_a_torch_random_sampler_with_a_generator(fl_ds, kind):
    def sampler():
        return RandomSampler(range(N), generator=torch.Generator().manual_seed(7))

    full = ids(make(kind, fl_ds, sampler=sampler()))
    loader = make(kind, fl_ds, sampler=sampler())
    it = iter(loader)
    seen = ids(next(it) for _ in range(4))
    state = roundtrip(loader.state_dict())
    resumed = make(kind, fl_ds, sampler=sampler())
    resumed.load_state_dict(state)
    assert seen + ids(resumed) == full


def test_resume_through_a_sampler_drawing_from_torchs_global_rng(fl_ds):
    torch.manual_seed(3)
    full = ids(make("fastload", Squares(), sampler=RandomSampler(range(N))))
    torch.manual_seed(3)
    loader = make("fastload", Squares(), sampler=RandomSampler(range(N)))
    it = iter(loader)
    seen = ids(next(it) for _ in range(4))
    state = roundtrip(loader.state_dict())
    torch.manual_seed(99)  # a new process: another global RNG state
    resumed = make("fastload", Squares(), sampler=RandomSampler(range(N)))
    resumed.load_state_dict(state)
    assert seen + ids(resumed) == full


@pytest.mark.parametrize("data", ["fastload", "map"])
@pytest.mark.parametrize("workers", [(0, "thread"), (2, "process")])
def test_fastload_differs_a_state_after_the_last_batch_resumes_the_next_epoch(fl_ds, data, workers):
    # torchdata resumes such a state as an empty rest of the finished epoch, and the iteration
    # after that draws a new order from the sampler; fastload starts the next epoch at once, with
    # that epoch's permutation (what Lightning's end-of-epoch checkpoint needs)
    loader = make("fastload", dataset_of(data, fl_ds), workers, shuffle=True)
    it = iter(loader)
    for _ in range(len(loader)):
        next(it)
    state = roundtrip(loader.state_dict())
    reference = make("fastload", dataset_of(data, fl_ds), shuffle=True)
    reference.set_epoch(1)
    resumed = make("fastload", dataset_of(data, fl_ds), workers, shuffle=True)
    resumed.load_state_dict(state)
    assert len(resumed) == len(loader)
    assert ids(resumed) == ids(reference) != ids(make("fastload", dataset_of(data, fl_ds), shuffle=True))


def test_set_epoch_after_loading_keeps_the_loaded_position(fl_ds):
    full = ids(make("fastload", fl_ds, shuffle=True))
    loader = make("fastload", fl_ds, shuffle=True)
    it = iter(loader)
    seen = ids(next(it) for _ in range(3))
    state = loader.state_dict()
    resumed = make("fastload", fl_ds, shuffle=True)
    resumed.load_state_dict(state)
    resumed.sampler.set_epoch(0)  # what Lightning and Accelerate do before each epoch
    assert seen + ids(resumed) == full


@pytest.mark.parametrize("data", ["stream", "stateful_stream"])
def test_iterable_resume_matches_torchdata(fl_ds, data):
    for workers in [(0, "thread"), (2, "process")]:
        ours = _resume("fastload", data, fl_ds, workers, stop=3)
        theirs = _resume("torchdata", data, fl_ds, workers, stop=3)
        assert ours == theirs


def test_a_state_of_another_kind_of_loader_is_refused(fl_ds):
    own = make("fastload", fl_ds, shuffle=True)
    it = iter(own)
    next(it)
    with pytest.raises(ValueError, match="sampler"):
        make("fastload", fl_ds, sampler=RandomSampler(range(N))).load_state_dict(own.state_dict())
    with pytest.raises(ValueError, match="iterable"):
        make("fastload", Stream()).load_state_dict(own.state_dict())


@pytest.mark.parametrize("workers", [0, 2])
def test_a_list_of_index_lists_as_batch_sampler_like_torch(fl_ds, workers):
    """torch's DataLoader takes any iterable of index lists as batch_sampler; batches of
    different sizes, the longest in the middle."""
    batches = [[5, 1, 9], list(range(40, 60)), [0], [7, 8]]
    ours = DataLoader(fl_ds, batch_sampler=batches, num_workers=workers, collate_fn=lambda rows: rows)
    theirs = TorchDataLoader(fl_ds, batch_sampler=batches, collate_fn=lambda rows: rows)
    got, want = list(ours), list(theirs)
    assert [[int(r["id"]) for r in b] for b in got] == [[int(r["id"]) for r in b] for b in want] == batches
    default = [b["id"].tolist() for b in DataLoader(fl_ds, batch_sampler=batches, num_workers=workers)]
    assert default == batches


def test_a_batch_sampler_without_batch_size_is_a_clear_error(fl_ds):
    def batches():
        yield [1, 2]

    with pytest.raises(ValueError, match="has no batch_size"):
        next(iter(DataLoader(fl_ds, batch_sampler=batches())))


def id_list(rows):
    return [int(r["id"]) for r in rows]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_random_sampler_on_the_global_seed_gives_torchs_order_and_leaves_torchs_rng(fl_ds, workers):
    """torch's iterator draws a base seed before the sampler draws its own: fastload draws it
    too, so the same torch.manual_seed gives the same batches, and the RNG stream after an
    epoch (what dropout and augmentations draw next) is the one torch's loader leaves."""
    def run(cls):
        torch.manual_seed(11)
        loader = cls(fl_ds, batch_size=BATCH, sampler=RandomSampler(range(N)), num_workers=workers,
                     collate_fn=id_list)
        got = list(loader)
        return got, torch.rand(3)

    ours, after_ours = run(DataLoader)
    theirs, after_theirs = run(TorchDataLoader)
    assert ours == theirs
    assert torch.equal(after_ours, after_theirs)
