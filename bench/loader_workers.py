"""Loader workers at the machine's limit: fastload.DataLoader with N workers against N NumPy threads.

Issue 17's tokens and records targets, measured side by side in one run, interleaved, each
measured run a fresh Python process (``--child``, ``bench/loader_workers_child.py``):

* ``tokens`` (``--token-rows`` × 2049 uint16, batch 64, shuffled, warm page cache): for each N of
  ``--workers``, ``numpy N``: N threads gathering ``mm[batch]`` from a ``np.load(mmap_mode="r")``
  of the same rows, thread ``i`` taking batches ``i, i + N, ...`` of the same shuffled order (the
  copy's limit: no hand-off, no consumer), against ``fastload N thread`` and ``fastload N process``
  (``DataLoader(shuffle=True, num_workers=N, worker_type=..., persistent_workers=True)``).
  ``fastload 0`` (no workers: the gather in the consumer's thread) is compared with ``numpy 1``.
* ``records`` (1,000,000 rows {id, text ~200 B, label}, batch 256, shuffled), with 0 and N
  workers: the default batch (text as ``list[str]``), the zero-copy form (``strings="buffers"``:
  text as a uint8 bytes tensor plus int64 offsets), and the fixed-width twin of the dataset (text
  cut or zero-padded to ``FIXED_TEXT`` bytes, a ``uint8[200]`` field gathered like any fixed
  field), whose bytes/s is the reference of the zero-copy form; pyarrow's ``take`` + ``to_pylist``
  of the same batches as a reference for ``list[str]``. Bytes are what a batch delivers: its
  tensors' bytes, a ``list[str]``'s UTF-8 bytes.

With ``--step-us US`` the tokens runs of thread workers (0, and each N) are repeated with a
simulated training step after each batch (``--step-kinds``: ``cpu``, Python spinning for US µs
holding the GIL; ``sleep``, about US µs of ``time.sleep``, no CPU and no GIL, as a device sync or
I/O), reporting the stall: the seconds the consumer waited for its batches (``stats()["stall_s"]``).

With ``--baseline-src DIR`` (a checkout of another commit with its C extension built in place,
e.g. ``git archive main | tar -x -C DIR && cd DIR && python setup.py build_ext --inplace``) every
fastload run is repeated with that code (``main ...`` rows), in the same interleaved order.

Each child reads its files once (warm page cache), runs one epoch untimed (first-touch
verification of the blocks, page-table population, worker start), then ``--epochs`` timed epochs;
its figure is the median epoch. Besides the rate, a child measures CPU time: the consumer's
(``time.thread_time`` of the thread iterating the loader, per batch: the consumer's cost, less the batches it
gathered itself for its worker threads while it waited, ``stats()["consumer_gather_s"]``) and the
workers' (the other threads of the process: with thread workers on this dataset the C threads,
which also compute the shuffle, plus those gathers of the consumer; or the worker processes'
``/proc/<pid>/schedstat``).
"workers' overhead" is their CPU per batch minus the CPU per batch of the NumPy threads that
gather the same batches (same N, same run). Every batch is consumed minimally and alike: its
main field's ``len`` (the consumer's cost is then the loader's own).

    .venv/bin/python -m bench.loader_workers [--quick] [--workers 1,2] [--repeats 5] [--step-us 30] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from . import datasets
from .common import (DEFAULT_DATA_DIR, interleaved, machine_info, med, print_machine, print_table,
                     write_json)
from .loader_throughput import _commit, ensure_written
from .peers import SHARD_BYTES

TOKENS_BATCH, RECORDS_BATCH = 64, 256
FIXED_TEXT = 200  # bytes of the fixed-width twin of the records' text


def configs(workers: list[int], baseline: bool, datasets_: list[str], step_us: float = 0.0,
            step_kinds: tuple[str, ...] = ()) -> dict[str, dict]:
    """name -> spec of one measured run (what the child builds)."""
    out: dict[str, dict] = {}
    codes = [("", None)] + ([("main ", "baseline")] if baseline else [])
    if "tokens" in datasets_ and step_us > 0:  # thread workers under a simulated training step
        for kind in step_kinds:
            for n in [0] + workers:
                for prefix, code in codes:
                    out[f"{prefix}fastload {n} thread + {kind} step"] = {
                        "dataset": "tokens", "system": "fastload", "workers": n, "worker_type": "thread",
                        "code": code, "step": kind, "step_us": step_us}
    if "tokens" in datasets_:
        for prefix, code in codes:
            out[f"{prefix}fastload 0"] = {"dataset": "tokens", "system": "fastload", "workers": 0, "code": code}
        for n in workers:
            out[f"numpy {n}"] = {"dataset": "tokens", "system": "numpy", "workers": n}
            for prefix, code in codes:
                for kind in ("thread", "process"):
                    out[f"{prefix}fastload {n} {kind}"] = {"dataset": "tokens", "system": "fastload",
                                                           "workers": n, "worker_type": kind, "code": code}
    if "records" in datasets_:
        out["pyarrow take + to_pylist"] = {"dataset": "records", "system": "arrow", "workers": 0}
        for n, kind in [(0, "thread")] + [(n, k) for n in workers for k in ("thread", "process")]:
            for prefix, code in codes:  # another commit's code: the default batch only
                out[f"{prefix}fastload {n} {kind} list[str]"] = {
                    "dataset": "records", "system": "fastload", "workers": n, "worker_type": kind, "code": code}
            out[f"fastload {n} {kind} buffers"] = {"dataset": "records", "system": "fastload", "workers": n,
                                                   "worker_type": kind, "strings": "buffers"}
            out[f"fastload {n} {kind} fixed[{FIXED_TEXT}]"] = {"dataset": "records_fixed", "system": "fastload",
                                                               "workers": n, "worker_type": kind}
    return out


def spawn(spec: dict, timeout: float) -> dict:
    cmd = [sys.executable, "-m", "bench.loader_workers_child", json.dumps(spec)]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    res = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True, text=True,
                         timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"child {spec} failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _f(values: list[float], scale: float = 1.0) -> str:
    """The median, and the range when there are several values."""
    def fmt(x: float) -> str:
        return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"

    values = [v * scale for v in values]
    if len(values) == 1:
        return fmt(values[0])
    return f"{fmt(med(values))} ({fmt(min(values))}–{fmt(max(values))})"


def report_tokens(res: dict[str, list[dict]], workers: list[int]) -> str:
    """One row per run: rate, against the NumPy threads of the same N (N = 1 for no workers) and
    against the same run with one worker fewer, consumer and workers' CPU per batch."""
    rows = []
    for n in [0] + workers:
        ref = res.get(f"numpy {max(n, 1)}")
        ref_rate = med([r["rate"] for r in ref]) if ref else None
        ref_cpu = med([r["worker_us"] for r in ref]) if ref else None
        for name, rs in res.items():
            spec = rs[0]["spec"]
            if spec["dataset"] != "tokens" or spec["workers"] != n or spec.get("step"):
                continue
            rate = med([r["rate"] for r in rs])
            is_ref = spec["system"] == "numpy"
            fewer = None
            if n >= 1 and not is_ref:
                fewer = res.get(name.replace(f" {n} ", f" {n - 1} ") if n > 1 else name.rsplit(" ", 2)[0] + " 0")
            over = "–" if is_ref or ref_cpu is None or n == 0 else _f([r["worker_us"] - ref_cpu for r in rs])
            main = res.get(f"main {name}")
            rows.append([name, _f([r["rate"] for r in rs], 1e-3),
                         f"{rate / ref_rate:.2f}" if ref_rate else "–",
                         f"{rate / med([r['rate'] for r in main]):.2f}" if main else "–",
                         "–" if fewer is None else f"{rate / med([r['rate'] for r in fewer]):.2f}",
                         "–" if is_ref else _f([r["consumer_us"] for r in rs]),
                         "–" if n == 0 else _f([r["worker_us"] for r in rs]), over])
    return print_table(["run", "k samples/s", "× numpy N", "× main", "× N-1 workers", "consumer µs/batch",
                        "workers CPU µs/batch", "workers' overhead µs/batch"], rows)


def report_steps(res: dict[str, list[dict]], workers: list[int]) -> str:
    """The runs with a simulated step: rate, against the same step with one worker fewer, and the
    stall (the consumer's seconds waiting for batches) per epoch and per batch."""
    rows = []
    for name, rs in res.items():
        spec = rs[0]["spec"]
        if not spec.get("step"):
            continue
        n = spec["workers"]
        fewer = res.get(name.replace(f" {n} thread", f" {n - 1} thread")) if n >= 1 else None
        rate = med([r["rate"] for r in rs])
        batches = med([r["wall_s"] * r["rate"] for r in rs]) / TOKENS_BATCH  # rows per epoch / batch
        rows.append([name, _f([r["rate"] for r in rs], 1e-3),
                     "–" if fewer is None else f"{rate / med([r['rate'] for r in fewer]):.2f}",
                     _f([r["stall_s"] * 1e3 for r in rs]), _f([r["stall_s"] / batches * 1e6 for r in rs]),
                     _f([r["step_us"] for r in rs]), _f([r["consumer_us"] for r in rs])])
    return print_table(["run", "k samples/s", "× N-1 workers", "stall ms/epoch", "stall µs/batch",
                        "step µs/batch", "consumer µs/batch"], rows)


def report_records(res: dict[str, list[dict]]) -> str:
    """One row per run: rows/s and bytes/s, against the same run of the baseline code and, for
    the text forms, the bytes/s of the fixed-width twin with the same workers."""
    rows = []
    main_rate = {name[len("main "):]: med([r["rate"] for r in rs]) for name, rs in res.items()
                 if name.startswith("main ")}
    for name, rs in res.items():
        if not rs[0]["spec"]["dataset"].startswith("records"):
            continue
        rate = med([r["rate"] for r in rs])
        vs_main = f"{rate / main_rate[name]:.2f}" if name in main_rate else "–"
        fixed = res.get(name.rsplit(" ", 1)[0] + f" fixed[{FIXED_TEXT}]") if not name.startswith("main ") else None
        vs_fixed = "–" if fixed is None or fixed is rs else \
            f"{med([r['byte_rate'] for r in rs]) / med([r['byte_rate'] for r in fixed]):.2f}"
        rows.append([name, _f([r["rate"] for r in rs], 1e-3), _f([r["byte_rate"] for r in rs], 1e-6), vs_fixed,
                     vs_main, _f([r["consumer_us"] for r in rs]) if "consumer_us" in rs[0] else "–"])
    return print_table(["run", "k rows/s", "MB/s", "× fixed bytes/s", "× main", "consumer µs/batch"], rows)


def records_fixed(src: Path, data_dir: Path) -> Path:
    """The fixed-width twin of the records (text cut or zero-padded to FIXED_TEXT bytes, a
    ``uint8[FIXED_TEXT]`` field), packed once beside the records' own copy."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    import fastload

    out = data_dir / "loader" / f"{src.stem}-fixed{FIXED_TEXT}" / "fastload"
    if (out / ".complete").exists():
        return out
    table = pq.read_table(src)
    text = table.column("text").combine_chunks()
    offsets = np.frombuffer(text.buffers()[1], np.int32)[text.offset: text.offset + len(text) + 1]
    data = np.frombuffer(text.buffers()[2], np.uint8)
    fixed = np.zeros((len(text), FIXED_TEXT), np.uint8)
    for i, (a, b) in enumerate(zip(offsets[:-1].tolist(), offsets[1:].tolist())):
        row = data[a: min(b, a + FIXED_TEXT)]
        fixed[i, : len(row)] = row
    twin = pa.table({"id": table.column("id"), "text": pa.FixedSizeListArray.from_arrays(fixed.reshape(-1), FIXED_TEXT),
                     "label": table.column("label")})
    fastload.pack(twin, out, shard_size=SHARD_BYTES, progress=False, overwrite=True)
    (out / ".complete").write_text("packed\n")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--token-rows", type=int, default=100_000)
    ap.add_argument("--records-scale", type=float, default=1.0)
    ap.add_argument("--workers", default="1,2", help="comma list of worker counts")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per run (after one untimed)")
    ap.add_argument("--datasets", default="tokens,records")
    ap.add_argument("--only", default="", help="comma list of run names to keep")
    ap.add_argument("--step-us", type=float, default=0.0,
                    help="tokens: also run thread workers with a simulated training step of this many µs a batch")
    ap.add_argument("--step-kinds", default="cpu,sleep",
                    help="the steps: cpu (Python spinning, GIL held), sleep (no CPU, GIL released)")
    ap.add_argument("--baseline-src", type=Path, help="a checkout of the code to compare with (rows 'main ...')")
    ap.add_argument("--quick", action="store_true", help="smoke run: 10,000 token rows, 5%% of the records, 1 repeat")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    if a.quick:
        a.token_rows, a.records_scale, a.repeats, a.epochs = 10_000, 0.05, 1, 1
    workers = [int(w) for w in a.workers.split(",")]
    wanted = a.datasets.split(",")
    info = machine_info(a.data_dir)
    info.update(commit=_commit(), baseline=str(a.baseline_src) if a.baseline_src else None, epochs=a.epochs,
                repeats=a.repeats, workers=workers)
    print_machine(info)
    print(f"# fastload commit: {info['commit']}; baseline: {info['baseline']}", flush=True)
    paths = {}
    if "tokens" in wanted:
        src = datasets.tokens(a.data_dir, a.token_rows / datasets.TOKENS_ROWS)
        paths["tokens"] = {"numpy": str(src), "fastload": str(ensure_written("tokens", "fastload", src, a.data_dir)[0])}
    if "records" in wanted:
        src = datasets.records(a.data_dir, a.records_scale)
        fl = str(ensure_written("records", "fastload", src, a.data_dir)[0])
        paths["records"] = {"arrow": str(src), "fastload": fl}
        paths["records_fixed"] = {"fastload": str(records_fixed(src, a.data_dir)), "order": fl}
    specs = configs(workers, a.baseline_src is not None, wanted, a.step_us, tuple(a.step_kinds.split(",")))
    if a.only:
        keep = set(a.only.split(","))
        specs = {k: v for k, v in specs.items() if k in keep}
    for spec in specs.values():
        spec["path"] = paths[spec["dataset"]][spec["system"]]
        spec["order_path"] = paths[spec["dataset"]].get("order", paths[spec["dataset"]].get("fastload"))
        spec["epochs"] = a.epochs
        spec["batch"] = TOKENS_BATCH if spec["dataset"] == "tokens" else RECORDS_BATCH
        spec["src"] = str(a.baseline_src) if spec.pop("code", None) else None
    payload: dict = {"machine": info, "results": {}, "tables": {}}
    res = interleaved({name: (lambda s=spec: spawn(s, 900)) for name, spec in specs.items()}, a.repeats)
    payload["results"] = res
    if "tokens" in wanted:
        print(f"\n## tokens: {a.token_rows:,} × 2049 uint16, batch {TOKENS_BATCH}, shuffled; medians of "
              f"{a.repeats} runs (min–max)")
        payload["tables"]["tokens"] = report_tokens(res, workers)
        if a.step_us > 0:
            print(f"\n## tokens with a simulated training step of {a.step_us:g} µs a batch; medians of "
                  f"{a.repeats} runs (min–max)")
            payload["tables"]["steps"] = report_steps(res, workers)
    if "records" in wanted:
        print(f"\n## records: batch {RECORDS_BATCH}, shuffled; medians of {a.repeats} runs (min–max)")
        payload["tables"]["records"] = report_records(res)
    write_json(a.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
