"""Pack throughput, fastload vs MDSWriter, LitData ``optimize``, WebDataset and a plain file copy.

For each input (tokens .npy, small-records Parquet, JPEG folder) every system writes its own
format from the same files, interleaved (A, B, C, A, B, C, ...), each run after its input was read
once sequentially (warm page cache) and with the previous output deleted and flushed (``sync``).
MB/s in = input file bytes / wall seconds; MB/s out = output bytes / wall seconds (MB = 10^6 B).
Wall seconds cover the whole call in this process, worker start-up included. Outputs are not
fsync'ed by anyone: writes land in the page cache, as in everyday use.

    .venv-bench/bin/python -m bench.pack_throughput [--quick | --scale 0.25] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import datasets, peers
from .common import (BENCH_HOME, DEFAULT_DATA_DIR, fmt_range, flush_and_remove, interleaved, machine_info, med,
                     print_machine, print_table, tree_bytes, warm, write_json)

DATASETS = ("tokens", "records", "jpegs")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--out-dir", type=Path, default=BENCH_HOME / "pack-out",
                    help="where the systems write (deleted after each run)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the full inputs (1.0 = 200k token rows, 1M records, 20k JPEGs)")
    ap.add_argument("--quick", action="store_true", help="smoke run: --scale 0.05 --repeats 1")
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--systems", default=",".join(peers.SYSTEMS), help="of: " + ",".join(peers.SYSTEMS))
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    if a.quick:
        a.scale, a.repeats = 0.05, 1
    info = machine_info(a.data_dir)
    info["scale"] = a.scale
    info["repeats"] = a.repeats
    print_machine(info)
    chosen = [s for s in a.systems.split(",") if s]
    skipped = peers.missing(chosen)
    chosen = peers.installed(chosen)
    info["skipped"] = skipped
    peers.preload(chosen)
    a.data_dir.mkdir(parents=True, exist_ok=True)
    payload = {"machine": info, "results": {}}
    tables = []
    for dset in a.datasets.split(","):
        src = getattr(datasets, dset)(a.data_dir, a.scale)
        in_bytes = tree_bytes(src)
        print(f"\n## {dset}: {src} ({in_bytes / 1e6:.1f} MB in)", flush=True)
        runs = {}
        for name in chosen:
            writers, worker_counts = peers.SYSTEMS[name]
            if dset not in writers:
                continue
            for w in worker_counts:
                label = name if len(worker_counts) == 1 else f"{name} w{w}"
                runs[label] = _runner(writers[dset], src, a.out_dir / label.replace(" ", "-"), w, in_bytes)
        res = interleaved(runs, a.repeats, before=lambda label: (flush_and_remove(a.out_dir), warm([src])))
        flush_and_remove(a.out_dir)
        payload["results"][dset] = {"in_bytes": in_bytes, "runs": res}
        best_peer = max((med([r["mb_in_s"] for r in v]) for k, v in res.items()
                         if not k.startswith(("fastload", "copy"))), default=float("nan"))  # nan: no peer ran
        copy_s = med([r["seconds"] for r in res["copy"]]) if "copy" in res else float("nan")
        rows = []
        for label, rs in res.items():
            rows.append([label, fmt_range([r["seconds"] for r in rs]), fmt_range([r["mb_in_s"] for r in rs]),
                         fmt_range([r["mb_out_s"] for r in rs]), f"{rs[0]['out_bytes'] / 1e6:.1f}",
                         f"{med([r['mb_in_s'] for r in rs]) / best_peer:.2f}" if best_peer == best_peer else "–",
                         f"{med([r['seconds'] for r in rs]) / copy_s:.2f}"])
        tables.append((dset, in_bytes, print_table(
            ["system", "seconds", "MB/s in", "MB/s out", "MB out", "× best peer (in)", "time / copy"], rows)))
    write_json(a.json, payload)
    return 0


def _runner(writer, src: Path, out: Path, workers: int, in_bytes: int):
    def run() -> dict:
        t0 = time.perf_counter()
        writer(src, out, workers)
        s = time.perf_counter() - t0
        out_bytes = tree_bytes(out)
        return {"seconds": s, "mb_in_s": in_bytes / s / 1e6, "mb_out_s": out_bytes / s / 1e6, "out_bytes": out_bytes}

    return run


if __name__ == "__main__":
    sys.exit(main())
