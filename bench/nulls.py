"""What nulls cost: pack and read a table with 10% nulls in every column against the same table
without nulls.

The table (``--rows``, default 1,000,000) has the columns of a typical tabular dataset: ``id``
int64, ``value`` float64, ``label`` int32, ``text`` str (~30 B), ``tags`` list<int32> (0-8
values), ``when`` timestamp[us, tz=UTC]. The "10% nulls" table is the same values with 10% of the
cells of every column null (an independent random mask per column). Both are written to Parquet
once (cached under ``<data-dir>/nulls-<rows>/``); then, after one unmeasured run of each,
interleaved (A, B, A, B, ...), with the inputs read once before each run (warm page cache):

* ``pack``: ``fastload.pack(parquet)`` (64 MB shards, no compression), wall seconds;
* ``get_batch``: one shuffled epoch of ``get_batch`` with 256 indices per call (all fields);
* ``loader``: one shuffled epoch of ``fastload.DataLoader(batch_size=256, num_workers=0)``;
* ``ds[i]``: ``--items`` random ``ds[i]`` calls;
* and once, a nested field (``--nested-rows``, a struct column): pack and ``get_batch`` time per
  record and stored bytes per record, without and with zstd.

Each run also reports the CPU seconds of the process (``time.process_time``; pack runs with one
worker, in this process), which move less than wall seconds when other programs share the cores.

    .venv/bin/python -m bench.nulls [--rows 1000000] [--repeats 3] [--items 20000] [--json out.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from .common import (DEFAULT_DATA_DIR, flush_and_remove, fmt_range, interleaved, machine_info, med,
                     print_machine, print_table, tree_bytes, warm, write_json)

BATCH = 256
NULL_SHARE = 0.10


def make_tables(rows: int, seed: int = 7):
    """The table without nulls, and the same values with NULL_SHARE of every column null."""
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 9, rows)
    offsets = np.zeros(rows + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    words = np.array(["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"])
    text = [" ".join(words[rng.integers(0, 8, 5)]) for _ in range(rows)]
    columns = {
        "id": pa.array(np.arange(rows, dtype=np.int64)),
        "value": pa.array(rng.standard_normal(rows)),
        "label": pa.array(rng.integers(0, 1000, rows, dtype=np.int32)),
        "text": pa.array(text),
        "tags": pa.ListArray.from_arrays(pa.array(offsets), pa.array(rng.integers(0, 50_000, int(offsets[-1]), dtype=np.int32))),
        "when": pa.array(rng.integers(1_500_000_000_000_000, 1_800_000_000_000_000, rows), pa.timestamp("us", tz="UTC")),
    }
    clean = pa.table(columns)
    holes = {}
    for name, col in columns.items():
        mask = pa.array(rng.random(rows) < NULL_SHARE)
        holes[name] = pa.compute.if_else(mask, pa.scalar(None, col.type), col)
    return clean, pa.table(holes)


def nested_column(root: Path, rows: int) -> dict:
    """One run each: pack and read a struct column (a nested field, one IPC batch per record)."""
    import pyarrow as pa

    import fastload

    table = pa.table({"meta": pa.array([{"a": i, "tags": ["x"] * (i % 4), "score": i / 3} for i in range(rows)])})
    perm = np.random.default_rng(5).permutation(rows)
    out = {}
    for compression in ("none", "zstd"):
        path = root / f"nested-{compression}"
        flush_and_remove(path)
        t0 = time.perf_counter()
        fastload.pack(table, str(path), compression=compression, progress=False)
        pack_s = time.perf_counter() - t0
        ds = fastload.open(str(path))
        t0 = time.perf_counter()
        for i in range(0, rows, BATCH):
            ds.get_batch(perm[i:i + BATCH])
        read_s = time.perf_counter() - t0
        out[compression] = {"pack_us": pack_s / rows * 1e6, "stored_bytes": tree_bytes(path) / rows,
                            "get_batch_us": read_s / rows * 1e6}
    print(f"\n## a nested field: {rows:,} records of struct<a: int64, tags: list<string>, score: double>")
    print_table(["compression", "pack µs/record", "stored B/record", "get_batch µs/record"],
                [[c, f"{r['pack_us']:.1f}", f"{r['stored_bytes']:.0f}", f"{r['get_batch_us']:.1f}"]
                 for c, r in out.items()])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--items", type=int, default=20_000, help="ds[i] calls per run")
    ap.add_argument("--nested-rows", type=int, default=200_000, help="rows of the nested-column measurement (0: skip)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 50,000 rows, 1 repeat")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    if a.quick:
        a.rows, a.repeats, a.items, a.nested_rows = 50_000, 1, 2_000, 20_000
    import pyarrow.parquet as pq

    import fastload

    info = machine_info(a.data_dir)
    info.update(rows=a.rows, repeats=a.repeats, items=a.items, batch=BATCH, null_share=NULL_SHARE)
    print_machine(info)
    root = a.data_dir / f"nulls-{a.rows}"
    root.mkdir(parents=True, exist_ok=True)
    inputs = {"no nulls": root / "clean.parquet", "10% nulls": root / "nulls.parquet"}
    if not all(p.exists() for p in inputs.values()):
        clean, holes = make_tables(a.rows)
        pq.write_table(clean, inputs["no nulls"])
        pq.write_table(holes, inputs["10% nulls"])
    outs = {name: root / f"packed-{i}" for i, name in enumerate(inputs)}

    def pack(name):
        def run():
            flush_and_remove(outs[name])
            warm([inputs[name]])
            t0, c0 = time.perf_counter(), time.process_time()
            fastload.pack(str(inputs[name]), str(outs[name]), shard_size="64MB", progress=False)
            s, cpu = time.perf_counter() - t0, time.process_time() - c0
            return {"seconds": s, "cpu_s": cpu, "records_s": a.rows / s, "mb_s_in": tree_bytes(inputs[name]) / s / 1e6}
        return run

    def measured(systems: dict) -> dict:
        for fn in systems.values():  # one unmeasured run each: imports, first maps, JIT
            fn()
        return interleaved(systems, a.repeats)

    res = {"pack": measured({name: pack(name) for name in inputs})}
    check = {name: fastload.open(str(outs[name])) for name in inputs}
    nullable = [f.name for f in check["10% nulls"].schema if f.nullable]
    if nullable != list(check["10% nulls"].schema.names) or any(f.nullable for f in check["no nulls"].schema):
        raise SystemExit(f"unexpected nullable fields: {nullable}")
    rng = np.random.default_rng(3)

    def epoch(name, loader: bool):
        def run():
            warm([outs[name]])
            ds = fastload.open(str(outs[name]))
            t0, c0 = time.perf_counter(), time.process_time()
            if loader:
                n = sum(len(b["id"]) for b in fastload.DataLoader(ds, batch_size=BATCH, shuffle=True, seed=1))
            else:
                perm = rng.permutation(len(ds))
                n = sum(len(ds.get_batch(perm[i:i + BATCH])["id"]) for i in range(0, len(ds), BATCH))
            s, cpu = time.perf_counter() - t0, time.process_time() - c0
            return {"seconds": s, "cpu_s": cpu, "records_s": n / s}
        return run

    def items(name):
        def run():
            ds = fastload.open(str(outs[name]))
            idx = [int(i) for i in rng.integers(0, len(ds), a.items)]
            t0, c0 = time.perf_counter(), time.process_time()
            for i in idx:
                ds[i]
            s, cpu = time.perf_counter() - t0, time.process_time() - c0
            return {"seconds": s, "cpu_s": cpu, "records_s": len(idx) / s}
        return run

    res["get_batch"] = measured({name: epoch(name, False) for name in inputs})
    res["loader"] = measured({name: epoch(name, True) for name in inputs})
    res["ds[i]"] = measured({name: items(name) for name in inputs})
    sizes = {name: tree_bytes(outs[name]) for name in inputs}

    print(f"\n## nulls: {a.rows:,} rows (int64, float64, int32, str, list<int32>, timestamp), "
          f"batches of {BATCH}; dataset {sizes['no nulls'] / 1e6:.1f} MB without nulls, "
          f"{sizes['10% nulls'] / 1e6:.1f} MB with 10%")
    rows = []
    for work, runs in res.items():
        base = med([r["records_s"] for r in runs["no nulls"]])
        base_cpu = med([r["cpu_s"] for r in runs["no nulls"]])
        for name, rs in runs.items():
            rows.append([work, name, fmt_range([r["records_s"] / 1e3 for r in rs]),
                         f"{med([r['records_s'] for r in rs]) / base:.2f}", fmt_range([r["cpu_s"] for r in rs]),
                         f"{med([r['cpu_s'] for r in rs]) / base_cpu:.2f}"])
    print_table(["workload", "table", "k records/s", "× no nulls", "CPU s", "CPU × no nulls"], rows)
    nested = nested_column(root, a.nested_rows) if a.nested_rows else {}
    write_json(a.json, {"machine": info, "results": res, "dataset_bytes": sizes, "nested": nested})
    return 0


if __name__ == "__main__":
    sys.exit(main())
