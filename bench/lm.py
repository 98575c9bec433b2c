"""Language-model data: packed 2048-token windows and a 3-source mixture, side by side.

    python -m bench.lm [--docs 1000000] [--repeats 3] [--batches 400] [--quick]

Documents: ``--docs`` documents with log-normal lengths (median e^5.5 = 245 tokens, sigma 1.0,
mean ~404, clipped to [1, 32768]), random uint16 tokens below 50,257, seed 0. The same documents
are written as a fastload dataset (``tokens: uint16[-1]``), as a Megatron ``.bin`` + ``.idx``
pair (the ``.idx`` by megatron-core's own ``_IndexWriter``) and, for the NumPy reference, as
the windows themselves: the documents in fastload's shuffled order, laid end to end and cut
every 2048 tokens, one ``(windows, 2048)`` ``.npy`` file read through a memory map. Every system
reads batches of 32 windows of 2048 tokens in a random order.

Measured, interleaved (A, B, C, A, B, C ...), medians of ``--repeats`` runs, page cache warm:

* index build, from the dataset's path to an index cached on disk, for the same documents and
  the same 2048-token windows of one epoch (``add_extra_token_to_sequence=False``),
  each run in a fresh process that builds twice and times the second (the first, which pays
  the imports, Numba's cached kernels and megatron's helpers, is reported apart):

  - fastload: ``fastload.pack_sequences(path, seq_len=2048, seed=0)``: open the dataset, read
    every document's length from the record sizes file its Writer wrote beside the shards (as
    megatron reads them from its ``.idx``; a dataset without one, such as one written before
    those files, has each block's offset table read instead: timed as its own row), lay the
    lengths out in the keyed
    grid order and sum them (the stream bounds, int32), write ``bounds.npy`` with its checksum
    and ``meta.json`` into a temporary directory and rename it into place. The window order is
    not part of the index: the loader shuffles windows with an O(1) keyed permutation when it
    reads. Also timed without the write (``write=False``: open, lengths, bounds), so the cost of
    the cached-on-disk part shows.
  - megatron-core: ``IndexedDataset(prefix)`` then ``GPTDataset(...)`` with ``path_to_cache``:
    it maps the ``.idx``, shuffles the documents (``RandomState.shuffle``), builds the sample
    index (its C++ ``build_sample_idx``), shuffles the samples, and saves the three ``.npy``
    files and a description.

* windows/s in the calling process (0 workers), and through a loader with 2 workers:
  ``fastload.DataLoader`` over the packed dataset, torch's DataLoader over the NumPy reference
  (one ``__getitem__`` per batch) and over megatron-core's ``GPTDataset`` (its collate), and
  LitData's ``TokensLoader`` when ``--litdata-python`` names a Python with litdata installed;
* a 3-source mixture (0.7 / 0.2 / 0.1) of packed datasets: the largest deviation of each source's
  count from its weight in every run of 1,000 consecutive samples, and windows/s against the
  single-dataset loader.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from .common import BENCH_HOME, flush_and_remove, interleaved, machine_info, med, print_machine, print_table, tree_bytes, warm

SEQ_LEN, BATCH, VOCAB = 2048, 32, 50257
MEDIAN_LOG, SIGMA, MAX_LEN = 5.5, 1.0, 32768


# -- inputs ------------------------------------------------------------------------------------
def prepare(home: Path, n_docs: int, reading: bool = True) -> Path:
    """Write the documents in every form once (cached under ``home``); returns the directory.

    ``reading=False`` (only the index build is measured) writes what the builds read: the
    fastload dataset and Megatron's ``.idx``, with Megatron's ``.bin`` as a sparse file of the
    right size (its index build maps the ``.bin`` but reads no token), and no NumPy reference;
    at a billion tokens that is 2 GB on disk instead of 6.
    """
    root = home / f"lm-{n_docs}"
    if (root / "done").exists() or (not reading and (root / "done-build").exists()):
        add_record_sizes(root / "fastload")
        return root
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    lengths = np.clip(rng.lognormal(MEDIAN_LOG, SIGMA, size=n_docs), 1, MAX_LEN).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    tokens = rng.integers(0, VOCAB, size=int(offsets[-1]), dtype=np.uint16)
    np.save(root / "lengths.npy", lengths)
    write_megatron_idx(root / "corpus.idx", lengths)
    write_fastload(root / "fastload", tokens, offsets)
    if not reading:
        with open(root / "corpus.bin", "wb") as f:
            f.truncate(tokens.nbytes)
        (root / "done-build").write_text("ok")
        return root
    tokens.tofile(root / "corpus.bin")  # Megatron's .bin: the documents back to back
    write_reference(root / "windows.npy", tokens, offsets)
    (root / "done").write_text("ok")
    return root


def add_record_sizes(path: Path) -> None:
    """The record sizes file fastload's Writer now writes, added to a dataset cached before it did."""
    import fastload
    from fastload.format.record_sizes import sized_fields, sizes_name, write_record_sizes

    ds = fastload.open(path)
    if not all((path / sizes_name(j)).exists() for j in sized_fields(ds.schema)):
        write_record_sizes(path, ds.manifest)


def write_megatron_idx(path: Path, lengths: np.ndarray) -> None:
    from megatron.core.datasets.indexed_dataset import _IndexWriter

    with _IndexWriter(str(path), np.uint16) as w:
        w.write(lengths.astype(np.int32), None, np.arange(len(lengths) + 1, dtype=np.int64))


def write_fastload(path: Path, tokens: np.ndarray, offsets: np.ndarray) -> None:
    import pyarrow as pa

    import fastload

    with fastload.Writer(path, schema="tokens:uint16[-1]") as w:
        for lo in range(0, len(offsets) - 1, 100_000):
            hi = min(lo + 100_000, len(offsets) - 1)
            w.write_batch({"tokens": pa.LargeListArray.from_arrays(offsets[lo:hi + 1] - offsets[lo],
                                                                   tokens[offsets[lo]:offsets[hi]])})


def write_reference(path: Path, tokens: np.ndarray, offsets: np.ndarray) -> None:
    """The windows fastload's cut index makes (seed 0, no separator), materialised with NumPy."""
    from fastload.plan.packing import document_order

    order = document_order(len(offsets) - 1, 0)
    starts, ends = offsets[order], offsets[order + 1]
    n_windows = int((ends - starts).sum()) // SEQ_LEN
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint16, shape=(n_windows, SEQ_LEN))
    flat = out.reshape(-1)
    pos = 0
    for a, b in zip(starts.tolist(), ends.tolist()):
        take = min(b - a, flat.size - pos)
        if take <= 0:
            break
        flat[pos:pos + take] = tokens[a:a + take]
        pos += take
    out.flush()


# -- index build -------------------------------------------------------------------------------
class _Tokenizer:
    """What GPTDatasetConfig needs of a tokenizer: the vocabulary size and the special ids."""

    vocab_size, eod, pad, bos = VOCAB, 0, 1, None
    unique_identifiers = {"class": "bench"}


def megatron_dataset(root: Path, cache: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
        from megatron.core.datasets.indexed_dataset import IndexedDataset
        from megatron.core.datasets.utils import Split

    config = GPTDatasetConfig(random_seed=0, sequence_length=SEQ_LEN, tokenizer=_Tokenizer(), split="1,0,0",
                              path_to_cache=str(cache), reset_position_ids=False, reset_attention_mask=False,
                              eod_mask_loss=False, create_attention_mask=False, add_extra_token_to_sequence=False)
    indexed = IndexedDataset(str(root / "corpus"))
    return GPTDataset(indexed, str(root / "corpus"), np.arange(len(indexed.document_indices) - 1), None,
                      Split.train, config)


def build_fastload(root: Path, scratch: Path) -> dict:
    import fastload

    out = scratch / "fl-index"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    packed = fastload.pack_sequences(root / "fastload", seq_len=SEQ_LEN, seed=0, index_dir=out)
    return {"s": time.perf_counter() - t0, "windows": len(packed), "bytes": tree_bytes(out)}


def build_fastload_in_memory(root: Path, scratch: Path) -> dict:
    """The same build as :func:`build_fastload` up to the write: open, lengths, stream bounds."""
    from fastload.lm.packing_index import PackingConfig, build_index, document_lengths
    from fastload.opening import open_dataset

    t0 = time.perf_counter()
    ds = open_dataset(str(root / "fastload"), verify="never")
    index = build_index(document_lengths(ds, "tokens"), PackingConfig(field="tokens", seq_len=SEQ_LEN, seed=0))
    return {"s": time.perf_counter() - t0, "windows": index.n_windows, "bytes": index.bounds.nbytes}


BUILDS = {"fastload": build_fastload, "fastload, no write": build_fastload_in_memory,
          "fastload, tables read": build_fastload}


def child_build(system: str, root: str, scratch: str) -> dict:
    """Build twice in this (fresh) process: the first build pays the imports, Numba's cache loads
    and megatron's helpers and is reported apart; the second is the measured one."""
    build = BUILDS.get(system, build_megatron)
    if system == "fastload, tables read":  # as for a dataset without a record sizes file
        from fastload.lm import packing_index

        packing_index.read_record_sizes = lambda *args: None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = build(Path(root), Path(scratch))
        shutil.rmtree(Path(scratch) / ("mg-index" if build is build_megatron else "fl-index"), ignore_errors=True)
        return {**build(Path(root), Path(scratch)), "first_s": first["s"]}


def spawn_build(system: str, root: Path, scratch: Path) -> dict:
    code = ("import json, sys; from bench.lm import child_build; "
            "print(json.dumps(child_build(*sys.argv[1:])))")
    res = subprocess.run([sys.executable, "-c", code, system, str(root), str(scratch)], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], timeout=900)
    if res.returncode:
        raise RuntimeError(f"{system} build failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def build_megatron(root: Path, scratch: Path) -> dict:
    out = scratch / "mg-index"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    ds = megatron_dataset(root, out)
    return {"s": time.perf_counter() - t0, "windows": len(ds), "bytes": tree_bytes(out)}


# -- reading -----------------------------------------------------------------------------------
def batches(n_windows: int, count: int, seed: int) -> list[np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n_windows)
    return [perm[k * BATCH:(k + 1) * BATCH] for k in range(min(count, n_windows // BATCH))]


class _ReferenceBatches:
    """torch's DataLoader over the NumPy reference: one __getitem__ per batch of indices."""

    def __init__(self, path: str):
        self.path = path
        self.arr = None

    def __len__(self) -> int:
        return len(np.load(self.path, mmap_mode="r"))

    def __getitem__(self, idx):
        if self.arr is None:
            self.arr = np.load(self.path, mmap_mode="r")
        return self.arr[idx]


def child(spec: dict) -> dict:
    """One system reading ``spec['batches']`` batches; returns windows/s (run in its own process)."""
    root, system, n = Path(spec["root"]), spec["system"], spec["batches"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        it, total = _make(system, root, spec, n)
        for _ in range(spec["warmup"]):
            next(it)
        t0 = time.perf_counter()
        windows = 0
        for _ in range(n):
            batch = next(it)
            windows += _rows(batch)
        seconds = time.perf_counter() - t0
    return {"windows_per_s": windows / seconds, "windows": windows, "total": total}


def _rows(batch) -> int:
    if isinstance(batch, dict):
        batch = batch.get("input_ids", batch.get("tokens", batch.get("text")))
    return len(batch)


def _make(system: str, root: Path, spec: dict, n: int):
    import torch

    need = n + spec["warmup"]
    if system.startswith("reference"):
        ref = np.load(root / "windows.npy", mmap_mode="r")
        order = batches(len(ref), need, 1)
        if system == "reference w0":
            out = np.empty((BATCH, SEQ_LEN), np.uint16)
            return (np.take(ref, b, axis=0, out=out) for b in order), len(ref)
        loader = torch.utils.data.DataLoader(_ReferenceBatches(str(root / "windows.npy")), batch_size=None,
                                             sampler=order, num_workers=2, collate_fn=torch.from_numpy)
        return iter(loader), len(ref)
    if system.startswith("fastload"):
        import fastload

        packed = fastload.pack_sequences(root / "fastload", seq_len=SEQ_LEN, seed=0,
                                         index_dir=Path(spec["scratch"]) / "fl-index")
        if system == "fastload w0":
            out = {"input_ids": np.empty((BATCH, SEQ_LEN), np.uint16)}
            return (packed.gather(b, out=out) for b in batches(len(packed), need, 1)), len(packed)
        loader = fastload.DataLoader(packed, batch_size=BATCH, shuffle=True, num_workers=2, drop_last=True)
        return _cycle(loader), len(packed)
    if system.startswith("mixture"):
        import fastload

        parts = {name: fastload.pack_sequences(Path(spec["mix_root"]) / name, seq_len=SEQ_LEN, seed=0)
                 for name in ("web", "code", "math")}
        mixed = fastload.mix(parts, {"web": 0.7, "code": 0.2, "math": 0.1}, policy="cycle",
                             epoch_source="web")
        if system == "mixture single":
            mixed = parts["web"]
        loader = fastload.DataLoader(mixed, batch_size=BATCH, shuffle=True, num_workers=2, drop_last=True)
        return _cycle(loader), len(mixed)
    if system == "megatron w2":
        ds = megatron_dataset(root, Path(spec["scratch"]) / "mg-index")
        loader = torch.utils.data.DataLoader(ds, batch_size=BATCH, shuffle=True, num_workers=2, drop_last=True)
        return _cycle(loader), len(ds)
    raise ValueError(system)


def _cycle(loader):
    while True:
        yield from loader


def spawn(spec: dict, python: str | None = None) -> dict:
    """Run one system in a fresh process (LitData's in its own environment); its result dict."""
    here = Path(__file__).resolve()
    if spec["system"].startswith("litdata"):
        cmd = [python, str(here.with_name("lm_litdata.py")), "read", spec["litdata_dir"], str(spec["batches"]),
               str(spec["warmup"])]
    else:
        cmd = [sys.executable, "-c", "import json, sys; from bench.lm import child; "
               "print(json.dumps(child(json.loads(sys.argv[1]))))", json.dumps(spec)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=here.parents[1], timeout=900)
    if res.returncode:
        raise RuntimeError(f"{spec['system']} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def write_litdata(root: Path, python: str) -> Path:
    """The same documents as LitData chunks (``optimize`` with TokensLoader), by LitData's own Python."""
    out = root / "litdata"
    if not (out / "index.json").exists():
        shutil.rmtree(out, ignore_errors=True)
        subprocess.run([python, str(Path(__file__).with_name("lm_litdata.py")), "write", str(root), str(out)],
                       check=True, capture_output=True)
    return out


# -- the mixture -------------------------------------------------------------------------------
def prepare_mixture(home: Path, n_docs: int) -> Path:
    """Three packed sources of 70%, 20% and 10% of ``n_docs`` documents (seeds 1, 2, 3)."""
    import fastload

    root = home / f"lm-mix-{n_docs}"
    if (root / "done").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    for name, share, seed in (("web", 0.7, 1), ("code", 0.2, 2), ("math", 0.1, 3)):
        rng = np.random.default_rng(seed)
        lengths = np.clip(rng.lognormal(MEDIAN_LOG, SIGMA, size=int(n_docs * share)), 1, MAX_LEN).astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        write_fastload(root / name, rng.integers(0, VOCAB, size=int(offsets[-1]), dtype=np.uint16), offsets)
        fastload.pack_sequences(root / name, seq_len=SEQ_LEN, seed=0)
    (root / "done").write_text("ok")
    return root


def mixture_deviation(mix_root: Path) -> dict:
    import fastload

    parts = {name: fastload.pack_sequences(mix_root / name, seq_len=SEQ_LEN, seed=0) for name in ("web", "code", "math")}
    mixed = fastload.mix(parts, {"web": 0.7, "code": 0.2, "math": 0.1}, policy="cycle", epoch_source="web")
    order = mixed.epoch_order("full", 0, 0)  # what fastload.DataLoader(shuffle=True, seed=0) reads in epoch 0
    src = mixed.source_of(order.indices(np.arange(len(mixed))))
    onehot = np.eye(3, dtype=np.int64)[src]
    cum = np.concatenate([np.zeros((1, 3), np.int64), np.cumsum(onehot, axis=0)])
    win = cum[1000:] - cum[:-1000]
    dev = np.abs(win - np.array([700, 200, 100])).max(axis=0)
    return {"samples": len(mixed), "max_dev_per_1000": dict(zip(("web", "code", "math"), dev.tolist())),
            "overall": dict(zip(("web", "code", "math"), (np.bincount(src, minlength=3) / len(src)).round(5).tolist()))}


# -- main --------------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batches", type=int, default=400)
    ap.add_argument("--quick", action="store_true", help="50,000 documents, 1 repeat, 100 batches")
    ap.add_argument("--litdata-python", help="a Python with litdata installed (e.g. .venv-bench/bin/python)")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: build,read,mixture")
    ap.add_argument("--prepare-only", action="store_true",
                    help="write the inputs and stop (run it outside the benchmark lock: nothing is timed)")
    args = ap.parse_args(argv)
    if args.quick:
        args.docs, args.repeats, args.batches = 50_000, 1, 100
    skip = set(filter(None, args.skip.split(",")))
    home = Path(os.environ.get("FASTLOAD_BENCH_DATA", BENCH_HOME / "data"))
    t0 = time.perf_counter()
    root = prepare(home, args.docs, reading="read" not in skip)
    if args.prepare_only:
        if "mixture" not in skip:
            prepare_mixture(home, max(args.docs // 2, 20_000))
        if args.litdata_python:
            write_litdata(root, args.litdata_python)
        return 0
    lengths = np.load(root / "lengths.npy")
    print(f"# inputs ready in {time.perf_counter() - t0:.1f} s: {len(lengths):,} documents, {int(lengths.sum()):,} tokens "
          f"(median {int(np.median(lengths))}, mean {lengths.mean():.0f}, max {int(lengths.max())})", file=sys.stderr)
    print_machine(machine_info(root))
    print(f"\n{len(lengths):,} documents, {int(lengths.sum()):,} tokens, log-normal lengths (median "
          f"{int(np.median(lengths))}, mean {lengths.mean():.0f}); windows of {SEQ_LEN} tokens, batch {BATCH}\n")
    scratch = Path(tempfile.mkdtemp(prefix="fastload-bench-lm-"))
    try:
        if "build" not in skip:
            warm([root / "fastload", root / "corpus.bin", root / "corpus.idx"])
            systems = ("fastload", "fastload, no write", "fastload, tables read", "megatron")
            outputs = [scratch / "fl-index", scratch / "mg-index"]
            # each run in a fresh process (megatron's torch threads and freed memory slowed whatever ran
            # after it in the same process by 5-10 ms), after removing and flushing the last run's index
            res = interleaved({s: (lambda s=s: spawn_build(s, root, scratch)) for s in systems}, args.repeats,
                              before=lambda name: [flush_and_remove(p) for p in outputs])
            first = {name: [r["first_s"] for r in runs] for name, runs in res.items()}
            times = {name: [r["s"] for r in runs] for name, runs in res.items()}
            mg = med(times["megatron"])
            labels = {"fastload": "fastload `pack_sequences` (open, lengths, bounds, write)",
                      "fastload, no write": "fastload, the same without writing the index",
                      "fastload, tables read": "fastload, the lengths read from the blocks' offset tables",
                      "megatron": "megatron-core `GPTDataset` (document, sample and shuffle indices, saved)"}
            print_table(["index build", "seconds (median)", "runs", "first run", "windows", "index bytes",
                         "megatron / this"],
                        [[labels[name], f"{med(times[name]):.4f}", ", ".join(f"{t:.4f}" for t in times[name]),
                          f"{med(first[name]):.3f}", res[name][0]["windows"], f"{res[name][0]['bytes'] / 1e6:.1f} MB",
                          f"{mg / med(times[name]):.1f}x"] for name in systems])
            print()
        if "read" not in skip:
            systems = ["reference w0", "fastload w0", "reference w2", "fastload w2", "megatron w2"]
            if args.litdata_python:
                write_litdata(root, args.litdata_python)
                systems.append("litdata w2")
            base = {"root": str(root), "scratch": str(scratch), "batches": args.batches, "warmup": 20,
                    "litdata_dir": str(root / "litdata")}
            build_fastload(root, scratch)
            megatron_dataset(root, scratch / "mg-index")
            warm([root / "fastload", root / "windows.npy", root / "corpus.bin"])
            res = interleaved({s: (lambda s=s: spawn({**base, "system": s},
                                                     args.litdata_python if s.startswith("litdata") else None))
                               for s in systems}, args.repeats)
            ref = {w: med([r["windows_per_s"] for r in res[f"reference {w}"]]) for w in ("w0", "w2")}
            rows = []
            for s in systems:
                rate = med([r["windows_per_s"] for r in res[s]])
                w = "w0" if s.endswith("w0") else "w2"
                rows.append([s, f"{rate:,.0f}", f"{rate / ref[w]:.2f}x", ", ".join(f"{r['windows_per_s']:,.0f}" for r in res[s])])
            print_table(["system (workers)", "windows/s (median)", "vs NumPy reference, same workers", "runs"], rows)
            print()
        if "mixture" not in skip:
            mix_root = prepare_mixture(home, max(args.docs // 2, 20_000))
            dev = mixture_deviation(mix_root)
            base = {"root": str(root), "scratch": str(scratch), "batches": args.batches, "warmup": 20,
                    "mix_root": str(mix_root)}
            res = interleaved({s: (lambda s=s: spawn({**base, "system": s})) for s in ("mixture single", "mixture 3")},
                              args.repeats)
            single, mixed = (med([r["windows_per_s"] for r in res[s]]) for s in ("mixture single", "mixture 3"))
            print_table(["3-source mixture (0.7 / 0.2 / 0.1)", "value"],
                        [["samples in an epoch (ends with web's last window)", f"{dev['samples']:,}"],
                         ["max deviation per 1,000 samples (web / code / math)",
                          " / ".join(str(v) for v in dev["max_dev_per_1000"].values())],
                         ["proportions over the epoch", " / ".join(f"{v:.4f}" for v in dev["overall"].values())],
                         ["windows/s, mixture, 2 workers", f"{mixed:,.0f}"],
                         ["windows/s, web alone, 2 workers", f"{single:,.0f}"],
                         ["mixture / single", f"{mixed / single:.2f}x"]])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
