"""Random-order reads of the packed token dataset: ``ds[i]`` and ``get_batch`` vs a NumPy memmap gather.

The token input (``tokens.npy``, uint16 rows of 2049) is packed once by fastload (no compression,
64 MB shards; cached next to the input). Each measured run reads a fresh random permutation, after
the ``.npy`` and the shards were read once sequentially (warm page cache):

* ``memmap``: ``mm[batch]`` (NumPy fancy indexing, rows in the batch's order) on the raw ``.npy``
  opened with ``np.load(mmap_mode="r")``, the same 64-index batches: the practical limit;
* ``get_batch``: ``ds.get_batch(batch)`` with 64 indices per call; steady state (a Dataset whose
  blocks were all touched before), with ``verify="never"`` and the default ``verify="first"``;
* first epoch: a freshly opened Dataset per run (as a fresh process sees it), so ``verify="first"``
  hashes every block once; the same with ``verify="never"`` isolates the checksum cost;
* ``ds[i]``: one record per call, for ``--items`` random indices (per-record Python).

Steady-state runs read ``--epochs`` permutations each; records/s and GB/s (10^9 B of token payload).

    .venv-bench/bin/python -m bench.read_random [--quick] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from . import datasets
from .common import (DEFAULT_DATA_DIR, fmt_range, interleaved, machine_info, med, print_machine,
                     print_table, warm, write_json)

BATCH = 64


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the 200,000 token rows")
    ap.add_argument("--quick", action="store_true", help="smoke run: --scale 0.05 --repeats 1")
    ap.add_argument("--epochs", type=int, default=3, help="permutations per steady-state run")
    ap.add_argument("--items", type=int, default=20_000, help="ds[i] calls per run")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    if a.quick:
        a.scale, a.repeats, a.epochs, a.items = 0.05, 1, 1, 2_000
    import fastload

    info = machine_info(a.data_dir)
    info.update(scale=a.scale, repeats=a.repeats, epochs=a.epochs, items=a.items, batch=BATCH)
    print_machine(info)
    a.data_dir.mkdir(parents=True, exist_ok=True)
    npy = datasets.tokens(a.data_dir, a.scale)
    packed = npy.parent / "fastload"
    if not (packed / "manifest.json").exists() and not any(packed.glob("*manifest*")):
        r = fastload.pack(str(npy), str(packed), shard_size="64MB", compression="none", progress=False, overwrite=True)
        print(f"# packed {r.records} records into {packed} in {r.seconds:.1f} s", flush=True)
    mm = np.load(npy, mmap_mode="r")
    n, row_bytes = mm.shape[0], mm.shape[1] * mm.itemsize
    rng = np.random.default_rng(12345)

    def batches():
        perm = rng.permutation(n)
        return [perm[i:i + BATCH] for i in range(0, n, BATCH)]

    # sanity: fastload returns the same rows as the memmap
    check = fastload.open(str(packed))
    b = batches()[0]
    if not np.array_equal(check.get_batch(b)["tokens"], mm[b]) or not np.array_equal(check[int(b[0])]["tokens"], mm[b[0]]):
        raise SystemExit("fastload and the memmap disagree")
    del check

    steady = {v: fastload.open(str(packed), verify=v) for v in ("never", "first")}
    for ds in steady.values():  # touch every block once
        for bb in batches():
            ds.get_batch(bb)

    def epochs(fn, k):
        def run():
            total, t0 = 0, time.perf_counter()
            for _ in range(k):
                for bb in batches():  # permutation cost is counted for every system alike
                    fn(bb)
                    total += len(bb)
            s = time.perf_counter() - t0
            return {"seconds": s, "records_s": total / s, "gb_s": total * row_bytes / s / 1e9}
        return run

    def first_epoch(verify):
        def run():
            ds = fastload.open(str(packed), verify=verify)
            return epochs(ds.get_batch, 1)()
        return run

    def items():
        ds = steady["first"]
        idx = [int(i) for i in rng.permutation(n)[: a.items]]
        t0 = time.perf_counter()
        for i in idx:
            ds[i]
        s = time.perf_counter() - t0
        return {"seconds": s, "records_s": len(idx) / s, "gb_s": len(idx) * row_bytes / s / 1e9}

    systems = {
        "memmap mm[batch]": epochs(lambda bb: mm[bb], a.epochs),
        "get_batch never, steady": epochs(steady["never"].get_batch, a.epochs),
        "get_batch first, steady": epochs(steady["first"].get_batch, a.epochs),
        "get_batch never, 1st epoch fresh Dataset": first_epoch("never"),
        "get_batch first, 1st epoch fresh Dataset": first_epoch("first"),
        "ds[i] (first, steady)": items,
    }
    res = interleaved(systems, a.repeats, before=lambda _: warm([npy, packed]))
    ref = med([r["records_s"] for r in res["memmap mm[batch]"]])
    rows = [[name, fmt_range([r["records_s"] / 1e3 for r in rs]), fmt_range([r["gb_s"] for r in rs]),
             f"{med([r['records_s'] for r in rs]) / ref:.2f}"] for name, rs in res.items()]
    print(f"\n## random reads: {n} records of {row_bytes} B, batches of {BATCH}")
    print_table(["system", "k records/s", "GB/s", "× memmap"], rows)
    cost = {
        "steady": 1 - med([r["records_s"] for r in res["get_batch first, steady"]]) / med([r["records_s"] for r in res["get_batch never, steady"]]),
        "first_epoch": 1 - med([r["records_s"] for r in res["get_batch first, 1st epoch fresh Dataset"]]) / med([r["records_s"] for r in res["get_batch never, 1st epoch fresh Dataset"]]),
    }
    print(f"\nchecksum cost (1 - first/never): steady {cost['steady']:.1%}, first epoch {cost['first_epoch']:.1%}")
    write_json(a.json, {"machine": info, "results": res, "checksum_cost": cost})
    return 0


if __name__ == "__main__":
    sys.exit(main())
