"""Custom collate and built-in padding: fastload.DataLoader against torch's DataLoader.

Workload: variable-length token rows (uint16, 32–1,024 tokens, mean ~528), batches of 64,
shuffled, one epoch (capped at ``--cap`` seconds). Every system pads the same way: a collate as
users write it (``pad_sequence`` over the rows plus an attention mask, a Python call per row).

Systems, each with 0 and 2 workers:

* ``torch/fastload-ds``: torch's DataLoader over the fastload dataset (``Dataset.__getitems__``:
  one native gather per batch), the padding collate;
* ``torch/memmap``: torch's DataLoader over a map-style dataset as users write it (a NumPy
  memmap of all tokens plus offsets, one slice per ``__getitem__``), the padding collate;
* ``fastload/collate``: fastload.DataLoader with the same ``collate_fn`` (run in its workers on
  natively gathered rows; its default, process workers, whose results come back through the
  batch's shared-memory slot), and ``collate-thread`` with ``worker_type="thread"``;
* ``fastload/pad``: fastload.DataLoader with ``pad={"tokens": Pad(mask="attention_mask")}``
  (padding and mask in the native path, no Python per row; thread workers);
* ``accelerate/torch`` and ``accelerate/fastload-pad``: the torch loader with the padding
  collate and the fastload loader with ``pad=``, each through ``accelerator.prepare`` (which
  rebuilds both as torch DataLoaders: fastload keeps its order, batching and padding, not its
  workers). With ``--no-accelerate`` these are left out.

Systems run interleaved (A, B, C, D, A, ...), ``--repeats`` times, each run on a fresh loader in
this process after the files were read once (warm page cache); tables show medians with the
(min–max) range and the ratio of each fastload system to torch's DataLoader. The main process
runs torch with ``--threads`` intra-op threads (default 1): with 2 on a shared 2-core machine, the
collate's small tensor ops in the main process varied 10x from run to run, for every system.

    .venv/bin/python -m bench.collate [--rows 40000] [--repeats 3] [--cap 10] [--json out.json]
        [--workers 0 2] [--systems fastload/collate ...]
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

import fastload
from fastload.loader import DataLoader, Pad

from .common import (DEFAULT_DATA_DIR, fmt_range, interleaved, machine_info, med, print_machine, print_table,
                     warm, write_json)

BATCH = 64
SEED = 20262


def pad_collate(rows):
    """Pad token rows to the batch's longest, with an attention mask (a Python call per row)."""
    seqs = [torch.as_tensor(r["tokens"].astype(np.int64)) for r in rows]
    ids = pad_sequence(seqs, batch_first=True, padding_value=0)
    lengths = torch.tensor([len(s) for s in seqs])
    return {"input_ids": ids, "attention_mask": (torch.arange(ids.shape[1]) < lengths[:, None]).long()}


class MemmapTokens(torch.utils.data.Dataset):
    """Variable-length rows as users store them: one flat token array and row offsets."""

    def __init__(self, root: Path):
        self.tokens = np.load(root / "tokens.npy", mmap_mode="r")
        self.offsets = np.load(root / "offsets.npy")

    def __len__(self):
        return len(self.offsets) - 1

    def __getitem__(self, i):
        return {"tokens": np.asarray(self.tokens[self.offsets[i]:self.offsets[i + 1]])}


def make_data(data_dir: Path, rows: int) -> Path:
    """The token rows twice: as a fastload dataset and as a flat .npy with offsets (cached)."""
    out = data_dir / f"collate-{rows}"
    if (out / ".complete").exists():
        return out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "memmap").mkdir(parents=True)
    rng = np.random.default_rng(SEED)
    lengths = rng.integers(32, 1025, size=rows)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tokens = rng.integers(0, 50_257, size=int(offsets[-1])).astype(np.uint16)
    np.save(tmp / "memmap" / "tokens.npy", tokens)
    np.save(tmp / "memmap" / "offsets.npy", offsets)
    with fastload.Writer(tmp / "fastload", schema="tokens:uint16[-1]") as w:
        for lo in range(0, rows, 10_000):
            hi = min(lo + 10_000, rows)
            w.write_batch({"tokens": [tokens[offsets[i]:offsets[i + 1]] for i in range(lo, hi)]})
    (tmp / ".complete").touch()
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def prepared(make):
    """``make()``'s loader through accelerate.prepare (one CPU process)."""
    from accelerate import Accelerator

    return lambda: Accelerator(cpu=True).prepare(make())


def systems(root: Path, workers: int, accelerate: bool = True) -> dict:
    ds = fastload.open(root / "fastload")
    mm = MemmapTokens(root / "memmap")
    torch_kw = {"num_workers": workers, "multiprocessing_context": "fork"} if workers else {}
    out = {
        "torch/fastload-ds": lambda: torch.utils.data.DataLoader(ds, batch_size=BATCH, shuffle=True,
                                                                 collate_fn=pad_collate, **torch_kw),
        "torch/memmap": lambda: torch.utils.data.DataLoader(mm, batch_size=BATCH, shuffle=True,
                                                            collate_fn=pad_collate, **torch_kw),
        "fastload/collate": lambda: DataLoader(ds, batch_size=BATCH, shuffle=True, collate_fn=pad_collate,
                                               num_workers=workers),
        **({"fastload/collate-thread": lambda: DataLoader(ds, batch_size=BATCH, shuffle=True,
                                                          collate_fn=pad_collate, num_workers=workers,
                                                          worker_type="thread")} if workers else {}),
        "fastload/pad": lambda: DataLoader(ds, batch_size=BATCH, shuffle=True, num_workers=workers,
                                           pad={"tokens": Pad(mask="attention_mask")}),
    }
    if accelerate:
        out["accelerate/torch"] = prepared(out["torch/fastload-ds"])
        out["accelerate/fastload-pad"] = prepared(out["fastload/pad"])
    return out


def run_epoch(make, cap: float) -> dict:
    loader = make()
    t0 = time.perf_counter()
    samples, tokens = 0, 0
    for batch in loader:
        ids = batch["input_ids"] if "input_ids" in batch else batch["tokens"]
        samples += ids.shape[0]
        tokens += int(batch["attention_mask"].sum())
        if time.perf_counter() - t0 > cap:
            break
    seconds = time.perf_counter() - t0
    if hasattr(loader, "close"):
        loader.close()
    return {"samples_per_s": samples / seconds, "seconds": seconds, "tokens": tokens}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=40_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cap", type=float, default=10.0, help="seconds per run at most")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--json", default=None)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads of the main process")
    p.add_argument("--no-accelerate", action="store_true", help="leave out the accelerate.prepare systems")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="worker counts to run (default 0 2)")
    p.add_argument("--systems", nargs="+", default=None,
                   help="run only these systems (torch/fastload-ds, the ratios' base, is always run)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    root = make_data(args.data_dir, args.rows)
    info = machine_info(root)
    print_machine(info)
    warm([root])
    tables, payload = [], {"machine": info, "results": {}}
    for workers in args.workers:
        chosen = {name: make for name, make in systems(root, workers, not args.no_accelerate).items()
                  if args.systems is None or name in args.systems or name == "torch/fastload-ds"}
        results = interleaved({name: (lambda m=make: run_epoch(m, args.cap)) for name, make in chosen.items()},
                              args.repeats)
        payload["results"][workers] = results
        base = {name: med([r["samples_per_s"] for r in res]) for name, res in results.items()}
        rows = []
        for name, res in results.items():
            rate = [r["samples_per_s"] for r in res]
            ratio = ""
            if name.startswith("fastload"):
                ratio = f"{base[name] / base['torch/fastload-ds']:.2f}x"
                if "torch/memmap" in base:
                    ratio += f" / {base[name] / base['torch/memmap']:.2f}x"
            elif name == "accelerate/fastload-pad" and "accelerate/torch" in base:
                ratio = f"{base[name] / base['accelerate/torch']:.2f}x vs accelerate/torch"
            rows.append([name, workers, fmt_range(rate), ratio])
        print(f"\n## {workers} workers, batch {BATCH}, samples/s")
        tables.append(print_table(["system", "workers", "samples/s", "vs torch/fastload-ds / torch/memmap"], rows))
    write_json(args.json, payload)


if __name__ == "__main__":
    main()
