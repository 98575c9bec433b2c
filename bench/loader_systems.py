"""One measured loader run, inside its child process: each system's loader, the references, timing.

``child(spec)`` imports the system, warms the page cache with its files, times a fresh loader to
its first batch, then runs one shuffled epoch on another fresh loader (cut after ``spec["cap"]``
seconds) and returns the rates. ``bench/loader_throughput.py`` spawns it and watches its memory.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path

import numpy as np

from . import peers
from .common import warm

BATCH = {"tokens": 64, "records": 256}
SEED = 1234
SHUFFLE_BUFFER = 1_000  # WebDataset's sample shuffle buffer


def _touch(dataset: str, system: str, batch) -> int:
    """Consume a batch minimally and alike for all: its length and one element of the main field."""
    if system == "wds":
        main = batch[0] if dataset == "tokens" else batch[1]
    else:
        main = batch["tokens"] if dataset == "tokens" else batch["text"]
    n = len(main)
    if dataset == "tokens":
        int(main[-1][-1])
    else:
        len(main[-1])
    return n


def _import(system: str):
    import torch  # noqa: F401  (every loader but the reference is a torch DataLoader)

    if system == "fastload":
        import fastload
        import fastload.loader  # noqa: F401
    else:
        peers.preload([system])


class _MemmapTokens:
    """torch baseline: a map-style Dataset as users write it (no ``__getitems__``): one row per call."""

    def __init__(self, path: str):
        self.mm = np.load(path, mmap_mode="r")

    def __len__(self) -> int:
        return len(self.mm)

    def __getitem__(self, i: int) -> dict:
        import torch

        return {"tokens": torch.from_numpy(np.array(self.mm[i]))}


class _ArrowRows:
    """torch baseline for records: a pyarrow table in memory, row -> dict."""

    def __init__(self, path: str):
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        self.names = table.column_names
        self.cols = [table.column(n).combine_chunks() for n in self.names]
        self.n = table.num_rows

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {name: col[i].as_py() for name, col in zip(self.names, self.cols)}


def _make_loader(spec: dict):
    """A fresh loader for ``spec``: returns (iterable, close)."""
    system, dataset, w, path = spec["system"], spec["dataset"], spec["workers"], spec["path"]
    bs = BATCH[dataset]
    if system == "fastload":
        import fastload

        loader = fastload.DataLoader(path, batch_size=bs, shuffle=spec["shuffle"], num_workers=w,
                                     worker_type=spec["worker_type"], seed=SEED)
        return loader, loader.close
    import torch
    from torch.utils.data import DataLoader

    g = torch.Generator().manual_seed(SEED)
    if system == "torch":
        ds = _MemmapTokens(path) if dataset == "tokens" else _ArrowRows(path)
        loader = DataLoader(ds, batch_size=bs, shuffle=True, num_workers=w, generator=g)
        return loader, lambda: None
    if system == "mds":
        streaming = peers.import_streaming()
        from streaming.base.util import clean_stale_shared_memory

        clean_stale_shared_memory()
        ds = streaming.StreamingDataset(local=path, remote=None, shuffle=True, shuffle_seed=SEED, batch_size=bs)
        loader = DataLoader(ds, batch_size=bs, num_workers=w)
        return loader, lambda: None
    if system == "litdata":
        import litdata

        ds = litdata.StreamingDataset(input_dir=path, shuffle=True, seed=SEED)
        loader = litdata.StreamingDataLoader(ds, batch_size=bs, num_workers=w)
        return loader, lambda: None
    if system == "wds":
        import webdataset as wds

        urls = sorted(str(p) for p in Path(path).glob("shard-*.tar"))
        keys = ("npy",) if dataset == "tokens" else ("__key__", "txt", "cls")
        ds = (wds.WebDataset(urls, shardshuffle=len(urls), seed=SEED, empty_check=False)
              .shuffle(SHUFFLE_BUFFER).decode().to_tuple(*keys).batched(bs))
        loader = wds.WebLoader(ds, batch_size=None, num_workers=w)
        return loader, lambda: None
    raise ValueError(system)


def _reference(spec: dict) -> dict:
    """The bare single-thread gather of one epoch of shuffled batches (permutation included)."""
    dataset, path, bs = spec["dataset"], spec["path"], BATCH[spec["dataset"]]
    rng = np.random.default_rng(SEED)
    t0 = time.perf_counter()
    if dataset == "tokens":
        mm = np.load(path, mmap_mode="r")
        n = len(mm)
        ttfb = None
        perm = rng.permutation(n)
        done = 0
        for s in range(0, n, bs):
            b = mm[perm[s:s + bs]]
            done += _touch(dataset, "ref", {"tokens": b})
            if ttfb is None:
                t_first, first_n = time.perf_counter(), done
                ttfb = t_first - t0
    else:
        import pyarrow.parquet as pq

        # one chunk per column: take() on a table of many chunks runs at ~12k rows/s here
        table = pq.read_table(path).combine_chunks()
        n = table.num_rows
        ttfb = None
        perm = rng.permutation(n)
        done = 0
        for s in range(0, n, bs):
            b = table.take(perm[s:s + bs])
            batch = {"id": b.column("id").to_numpy(), "text": b.column("text").to_pylist(),
                     "label": b.column("label").to_numpy()}
            done += _touch(dataset, "ref", batch)
            if ttfb is None:
                t_first, first_n = time.perf_counter(), done
                ttfb = t_first - t0
    t_end = time.perf_counter()
    # "after 1st batch" leaves out opening: for records, reading the Parquet file into a table
    return {"ttfb_s": ttfb, "samples": done, "seconds": t_end - t0, "samples_s": done / (t_end - t0),
            "steady_samples_s": (done - first_n) / (t_end - t_first), "capped": False, "epoch_samples": n}


def child(spec: dict) -> dict:
    system, dataset = spec["system"], spec["dataset"]
    if system == "ref":
        warm([spec["path"]])
        return _reference(spec)
    _import(system)
    warm([spec["path"]])
    gc.collect()
    # (1) time to first batch, fresh loader
    t0 = time.perf_counter()
    loader, close = _make_loader(spec)
    it = iter(loader)
    _touch(dataset, system, next(it))
    ttfb = time.perf_counter() - t0
    del it
    close()
    del loader, close
    gc.collect()
    # (2) one epoch, fresh loader, capped by time
    loader, close = _make_loader(spec)
    cap = spec["cap"]
    done, capped, t_first = 0, False, None
    t0 = time.perf_counter()
    for batch in loader:
        done += _touch(dataset, system, batch)
        now = time.perf_counter()
        if t_first is None:
            t_first, first_n = now, done
        if now - t0 > cap:
            capped = True
            break
    t_end = time.perf_counter()
    res = {"ttfb_s": ttfb, "samples": done, "seconds": t_end - t0, "samples_s": done / (t_end - t0),
           "steady_samples_s": (done - first_n) / (t_end - t_first) if t_end > t_first else float("nan"),
           "capped": capped, "epoch_samples": spec["n"]}
    if system == "fastload":
        st = loader.stats()
        res["stall_pct"] = st["stall_pct"]
        res["worker_utilization"] = st["worker_utilization"]
        res["read_s"] = st["stages"].get("read", 0.0)
    close()
    return res
