"""What cleaning costs in ``fastload pack``: 1 M text records with 10% exact duplicates (JSON Lines).

Side by side, interleaved, medians of ``--repeats`` (page cache warmed before each run):

* fastload pack: plain; ``--dedup text``; ``--filter "len(text) >= 100"``; both; with 1 and 2
  workers (the target: cleaning costs at most 25% of the plain pack's records/s); both with the
  dedup table forced to disk (``--dedup-memory 1MB``);
* pandas: ``read_json(lines=True)`` + ``drop_duplicates("text")`` + ``query`` of the same length,
  then a plain pack of the DataFrame;
* datatrove's exact-dedup pipeline (``ExactDedupSignature`` -> ``ExactFindDedups`` ->
  ``ExactDedupFilter``, with a ``LambdaFilter`` of the same length before it), writing JSON Lines,
  then a plain pack of that output; run by ``--datatrove-python`` (a separate environment, as
  datatrove is not a fastload dependency); its own time is measured inside its process.

Every system's records are checked to be the same (count and the XOR of the texts' hashes).
Run: ``python -m bench.cleaning [--rows 1000000] [--repeats 3] [--datatrove-python PATH]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

import fastload

from .common import DEFAULT_DATA_DIR, interleaved, machine_info, med, print_machine, print_table, warm, write_json

MIN_CHARS = 100
FILTER = f"len(text) >= {MIN_CHARS}"
WORDS = ("the of and to in is was for on that with as by at from his her an were which this be are "
         "data loader shard record token image text model train batch epoch cache disk read write "
         "été naïve café über straße").split()

DATATROVE_SCRIPT = textwrap.dedent('''
    import sys, time, logging
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.pipeline.filters import LambdaFilter
    from datatrove.pipeline.dedup.exact_dedup import (ExactDedupConfig, ExactDedupFilter, ExactDedupSignature,
                                                      ExactFindDedups)

    def text_of(doc) -> bytes:  # bytes: datatrove hands a str to xxhash 4, which refuses it
        return doc.text.encode()

    def long_enough(doc) -> bool:
        return len(doc.text) >= MIN_CHARS

    def as_input(writer, doc) -> dict:  # the input's own fields (not datatrove's metadata)
        return {"id": int(doc.id), "text": doc.text, "lang": doc.metadata["lang"]}

    source, work = sys.argv[1], sys.argv[2]
    config = ExactDedupConfig(content_getter=text_of)
    read = lambda: JsonlReader(source, glob_pattern="*.jsonl", id_key="id")
    start = time.perf_counter()
    sign = LocalPipelineExecutor([read(), LambdaFilter(long_enough), ExactDedupSignature(work + "/sigs", config)],
                                 tasks=1, logging_dir=work + "/logs1")
    find = LocalPipelineExecutor([ExactFindDedups(work + "/sigs", work + "/dups", config)], tasks=1,
                                 logging_dir=work + "/logs2", depends=sign)
    keep = LocalPipelineExecutor([read(), LambdaFilter(long_enough), ExactDedupFilter(work + "/dups", config),
                                  JsonlWriter(work + "/out", compression=None, adapter=as_input)], tasks=1,
                                 logging_dir=work + "/logs3", depends=find)
    keep.run()
    print("SECONDS", time.perf_counter() - start)
''').replace("MIN_CHARS", str(MIN_CHARS))


def make_input(path: Path, rows: int, seed: int = 0) -> None:
    """``rows`` records ``{"id", "text", "lang"}``; 10% are exact copies (text and lang) of others."""
    rng = np.random.default_rng(seed)
    unique = rows - rows // 10
    lengths = rng.integers(4, 60, unique)  # words: 20-400 characters, about a third under MIN_CHARS
    words = rng.integers(0, len(WORDS), int(lengths.sum()))
    cuts = np.concatenate([[0], np.cumsum(lengths)])
    texts = [" ".join(WORDS[w] for w in words[cuts[i]:cuts[i + 1]]) + f" #{i}" for i in range(unique)]
    langs = rng.choice(["en", "fr", "de"], unique)
    order = np.concatenate([np.arange(unique), rng.integers(0, unique, rows - unique)])
    rng.shuffle(order)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        for i, k in enumerate(order):
            f.write(json.dumps({"id": i, "text": texts[k], "lang": str(langs[k])}, ensure_ascii=False) + "\n")
    tmp.rename(path)


def _version(python: str, package: str) -> str | None:
    """``package``'s version in the environment of ``python`` (datatrove lives in its own)."""
    proc = subprocess.run([python, "-c", f"import importlib.metadata as m; print(m.version({package!r}))"],
                          capture_output=True, text=True)
    return proc.stdout.strip() or None


def _fingerprint(texts) -> tuple[int, int]:
    import xxhash

    acc = 0
    n = 0
    for t in texts:
        acc ^= xxhash.xxh3_64_intdigest(t.encode())
        n += 1
    return n, acc


def _dataset_fingerprint(root: Path) -> tuple[int, int]:
    ds = fastload.Dataset(root)
    return _fingerprint(ds[i]["text"] for i in range(len(ds)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                    help=f"where the input is generated and kept (default {DEFAULT_DATA_DIR})")
    ap.add_argument("--datatrove-python", help="a Python with datatrove installed (skipped when not given)")
    ap.add_argument("--json", help="write the measurements here")
    args = ap.parse_args()

    src_dir = args.data_dir / f"cleaning-text-{args.rows}"
    source = src_dir / "records.jsonl"
    if not source.exists():
        src_dir.mkdir(parents=True, exist_ok=True)
        print(f"generating {source} ...", file=sys.stderr)
        make_input(source, args.rows)
    work = Path(tempfile.mkdtemp(prefix="fastload-bench-cleaning-"))
    info = machine_info(work)
    info["versions"]["pandas"] = _version(sys.executable, "pandas")
    if args.datatrove_python:
        info["versions"]["datatrove"] = _version(args.datatrove_python, "datatrove")
    print_machine(info)
    in_bytes = source.stat().st_size

    def fastload_run(workers: int, **clean):
        def run() -> dict:
            out = work / "fl"
            shutil.rmtree(out, ignore_errors=True)
            report = fastload.pack(source, out, workers=workers, progress=False, **clean)
            return {"seconds": report.seconds, "records": report.records}
        return run

    def pandas_run() -> dict:
        import pandas as pd

        out = work / "pd"
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        df = pd.read_json(source, lines=True, dtype={"id": "int64", "text": "str", "lang": "str"})
        df = df.drop_duplicates("text").query(f"text.str.len() >= {MIN_CHARS}", engine="python")
        clean = time.perf_counter() - start
        report = fastload.pack(df, out, progress=False)
        return {"seconds": time.perf_counter() - start, "clean_seconds": clean, "records": report.records}

    def datatrove_run() -> dict:
        dt = work / "dt"
        shutil.rmtree(dt, ignore_errors=True)
        dt.mkdir()
        script = work / "datatrove_dedup.py"
        script.write_text(DATATROVE_SCRIPT)
        proc = subprocess.run([args.datatrove_python, str(script), str(src_dir), str(dt)], capture_output=True,
                              text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"datatrove failed: {proc.stderr[-2000:]}")
        seconds = float(proc.stdout.split("SECONDS")[-1])
        start = time.perf_counter()
        report = fastload.pack(str(dt / "out"), work / "dt-packed", progress=False, overwrite=True)
        return {"seconds": seconds + time.perf_counter() - start, "clean_seconds": seconds, "records": report.records}

    systems = {
        "fastload plain, 1 worker": fastload_run(1),
        "fastload --dedup text, 1 worker": fastload_run(1, dedup="text"),
        "fastload --filter, 1 worker": fastload_run(1, filter=FILTER),
        "fastload --dedup --filter, 1 worker": fastload_run(1, dedup="text", filter=FILTER),
        "fastload --dedup --filter, 1 worker, table spilled (--dedup-memory 1MB)":
            fastload_run(1, dedup="text", filter=FILTER, dedup_memory="1MB"),
        "fastload plain, 2 workers": fastload_run(2),
        "fastload --dedup --filter, 2 workers": fastload_run(2, dedup="text", filter=FILTER),
        "pandas drop_duplicates + query, then pack": pandas_run,
    }
    if args.datatrove_python:
        systems["datatrove exact dedup + filter, then pack"] = datatrove_run

    # the same records from every system that cleans both ways
    checks = {}
    fastload.pack(source, work / "check", dedup="text", filter=FILTER, progress=False)
    checks["fastload"] = _dataset_fingerprint(work / "check")
    pandas_run()
    checks["pandas"] = _dataset_fingerprint(work / "pd")
    if args.datatrove_python:
        datatrove_run()
        checks["datatrove"] = _dataset_fingerprint(work / "dt-packed")
    print("# same records: " + ", ".join(f"{k} {n:,} records (xor {x:016x})" for k, (n, x) in checks.items()))

    results = interleaved(systems, args.repeats, before=lambda name: warm([source]))
    rows = []
    base = {1: med([r["seconds"] for r in results["fastload plain, 1 worker"]]),
            2: med([r["seconds"] for r in results["fastload plain, 2 workers"]])}
    for name, runs in results.items():
        secs = [r["seconds"] for r in runs]
        workers = 2 if "2 workers" in name else 1
        rate = args.rows / med(secs)
        rel = f"{base[workers] / med(secs):.2f}" if name.startswith("fastload") else f"{base[1] / med(secs):.2f}"
        clean = med([r["clean_seconds"] for r in runs]) if "clean_seconds" in runs[0] else None
        rows.append([name, f"{med(secs):.2f} ({min(secs):.2f}–{max(secs):.2f})", f"{rate:,.0f}",
                     f"{in_bytes / med(secs) / 1e6:.1f}", f"{runs[0]['records']:,}", rel,
                     f"{clean:.2f}" if clean is not None else ""])
    print()
    print_table(["system", "seconds, median (min–max)", "input records/s", "input MB/s", "records kept",
                 "throughput / plain pack (same workers)", "of which cleaning s"], rows)
    write_json(args.json, {"machine": info, "rows": args.rows, "input_bytes": in_bytes, "checks": checks,
                           "results": results})
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
