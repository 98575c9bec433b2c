"""What pack's safety scans cost on normal text: the JSON nesting-depth scan before pyarrow parses
a JSON Lines block, and the CSV quote scan (run only on a file whose last record spans lines,
where an unclosed quote would have swallowed the rest: the CSV here ends with such a record, the
worst case, a second read of the file).

Each scan is timed alone against pyarrow's parse of the same bytes, and whole packs run with the
scan on and off (replaced by a no-op), interleaved, medians of ``--repeats``; the page cache is
warm (the files were just written). Run: ``python -m bench.text_checks [--rows 60000]``.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson

import fastload
from fastload._kernels.text_scan import JSON_CLASSES, csv_classes, csv_quote_state, json_too_deep
from fastload.pack.sources import csv as csv_source
from fastload.pack.sources import jsonl

from .common import machine_info, print_machine


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _write_inputs(root: Path, rows: int) -> tuple[Path, Path]:
    rng = random.Random(0)
    words = ["ab", "cde", "[x]", 'q"z', "fgh,i"]
    with open(root / "d.jsonl", "w") as f:
        for i in range(rows):
            f.write(json.dumps({"id": i, "text": " ".join(rng.choice(words) for _ in range(40)),
                                "tokens": [rng.randrange(50000) for _ in range(60)], "score": rng.random()}) + "\n")
    table = pa.table({"id": np.arange(rows * 5), "score": np.random.default_rng(0).random(rows * 5),
                      "text": [" ".join(rng.choice(words) for _ in range(20)) for _ in range(rows * 5)]})
    pacsv.write_csv(table, root / "d.csv")
    with open(root / "d.csv", "a") as f:
        f.write('0,0.5,"a last value\non two lines"\n')
    return root / "d.jsonl", root / "d.csv"


def _pack_seconds(path: Path, out: Path, scan: bool) -> float:
    real_depth, real_quotes = jsonl._depth_scan, csv_source.unclosed_quote_line
    if not scan:
        jsonl._depth_scan = lambda buf: -1
        csv_source.unclosed_quote_line = lambda stream, delimiter: None
    try:
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        fastload.pack(path, out, progress=False)
        return time.perf_counter() - start
    finally:
        jsonl._depth_scan, csv_source.unclosed_quote_line = real_depth, real_quotes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=60000, help="JSON Lines rows (the CSV has 5x as many)")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fastload-text-checks-"))
    try:
        print_machine(machine_info(root))
        jpath, cpath = _write_inputs(root, args.rows)
        jdata, cdata = jpath.read_bytes(), cpath.read_bytes()
        jbuf, cbuf, classes = np.frombuffer(jdata, np.uint8), np.frombuffer(cdata, np.uint8), csv_classes(b",")
        json_too_deep(jbuf, JSON_CLASSES, 1000)  # compile / load the cached kernels
        csv_quote_state(cbuf, np.flatnonzero(cbuf == 34), classes, 0)
        read_json = pajson.ReadOptions(use_threads=False, block_size=len(jdata) + 1)
        scans = [
            ("JSON depth scan vs pyarrow.json", len(jdata),
             lambda: json_too_deep(jbuf, JSON_CLASSES, 1000),
             lambda: pajson.read_json(io.BytesIO(jdata), read_options=read_json)),
            ("CSV quote scan vs pyarrow.csv", len(cdata),
             lambda: csv_quote_state(cbuf, np.flatnonzero(cbuf == 34), classes, 0),
             lambda: pacsv.read_csv(io.BytesIO(cdata), read_options=pacsv.ReadOptions(use_threads=False))),
        ]
        print("\n| scan | MB | scan MB/s | pyarrow parse MB/s | scan / parse |\n|---|---:|---:|---:|---:|")
        for name, size, scan, parse in scans:
            ts, tp = _median_time(scan, args.repeats), _median_time(parse, args.repeats)
            print(f"| {name} | {size / 1e6:.0f} | {size / ts / 1e6:,.0f} | {size / tp / 1e6:,.0f} | {ts / tp:.1%} |")
        print("\n| pack of | MB | without scan s | with scan s | with / without |\n|---|---:|---:|---:|---:|")
        for path in (jpath, cpath):
            _pack_seconds(path, root / "out", True)  # warm
            times = {True: [], False: []}
            for _ in range(args.repeats):
                for scan in (False, True):
                    times[scan].append(_pack_seconds(path, root / "out", scan))
            off, on = statistics.median(times[False]), statistics.median(times[True])
            print(f"| {path.name} | {path.stat().st_size / 1e6:.0f} | {off:.3f} | {on:.3f} | {on / off:.3f} |")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
