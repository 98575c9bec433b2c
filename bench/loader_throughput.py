"""Loader throughput: fastload.DataLoader vs torch's DataLoader, MosaicML Streaming, LitData, WebDataset.

Two workloads (``bench/datasets.py`` inputs; each system's dataset written once by its own writer
from ``bench/peers.py``, cached under ``<data-dir>/loader/<dataset>-<rows>/<system>``):

* ``tokens``: 200,000 × 2049 uint16, batches of 64, shuffled, one epoch;
* ``records``: 1,000,000 rows {id int64, text ~200 B str, label int64}, batches of 256, shuffled.

Systems (``--systems``): ``fastload`` (0 workers, 2 process workers, 2 thread workers; each with
``shuffle="full"`` and ``"block"``), ``torch`` (torch's DataLoader, 0 and 2 workers, over a plain
map-style Dataset as users write it: a NumPy memmap row per ``__getitem__`` for tokens, a pyarrow
table row -> dict for records; default collate), ``mds`` (StreamingDataset), ``litdata``
(StreamingDataset + StreamingDataLoader), ``wds`` (WebDataset: shard shuffle + a 1,000-sample
shuffle buffer, ``.batched``, WebLoader), each with 0 and 2 workers; and a reference: ``memmap``
(a bare single-thread ``mm[batch]`` gather of the same batches of a fresh permutation, tokens) or
``arrow`` (``table.take(batch)`` + the text column to a list of str, records).

Each measured run is a fresh Python process (``--child``, run by ``bench/loader_systems.py``) that imports its system, reads the
system's files once (warm page cache), then (1) times a fresh loader to its first batch
(construction + ``iter`` + ``next``; imports excluded), closes it, (2) runs one shuffled epoch on
another fresh loader, stopping early once ``--cap`` seconds have passed (the rate is then the
samples consumed / time; the tables say which runs were capped). Each batch is consumed
minimally and alike for every system: ``len`` of the batch and one element of the main field.
The parent samples the child's process tree while it runs: the peak of the summed RSS (every
20 ms) and of the summed PSS (``smaps_rollup``, every 250 ms; PSS splits shared pages fairly,
so it does not double-count a memmap or shared-memory slot seen by several processes).
Systems run interleaved (A, B, C, A, B, C, ...), ``--repeats`` times; tables show medians with the
(min–max) range.

    .venv-bench/bin/python -m bench.loader_throughput [--quick] [--repeats 3] [--cap 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from . import datasets, peers
from .common import (BENCH_HOME, DEFAULT_DATA_DIR, fmt_range, interleaved, machine_info, med, print_machine,
                     print_table, tree_bytes, warm, write_json)
from .loader_systems import BATCH, SEED, SHUFFLE_BUFFER, child  # noqa: F401  (names kept for importers)

MANIFEST_SHARDS = 100_000
SCRATCH = Path(os.environ.get("FASTLOAD_BENCH_SCRATCH", BENCH_HOME / "loader"))


# -- the systems' datasets ---------------------------------------------------------------------
def source(dataset: str, data_dir: Path, scale: float) -> Path:
    return datasets.tokens(data_dir, scale) if dataset == "tokens" else datasets.records(data_dir, scale)


def system_dir(dataset: str, system: str, src: Path, data_dir: Path) -> Path:
    """Where ``system`` keeps its copy of the dataset; written once with its own writer."""
    rows = src.parent.name.split("-")[1] if dataset == "tokens" else src.stem.split("-")[1]
    return data_dir / "loader" / f"{dataset}-{rows}" / system


def ensure_written(dataset: str, system: str, src: Path, data_dir: Path) -> tuple[Path, float | None]:
    out = system_dir(dataset, system, src, data_dir)
    if (out / ".complete").exists():
        return out, None
    writer = peers.SYSTEMS[system][0][dataset]
    peers.preload([system])
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    writer(src, tmp, 2)
    seconds = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    (out / ".complete").write_text(f"{seconds:.2f} s\n")
    return out, seconds


# -- run configurations ------------------------------------------------------------------------
def configs(dataset: str, systems: list[str]) -> dict[str, dict]:
    """name -> spec of one measured run (what the child process builds)."""
    out: dict[str, dict] = {}
    if "ref" in systems:
        out["memmap mm[batch]" if dataset == "tokens" else "arrow take"] = {"system": "ref", "workers": 0}
    if "fastload" in systems:
        for shuffle in ("full", "block"):
            for workers, kind in ((0, "process"), (2, "process"), (2, "thread")):
                label = "w0" if workers == 0 else f"w2 {kind}"
                out[f"fastload {label} {shuffle}"] = {"system": "fastload", "workers": workers,
                                                      "worker_type": kind, "shuffle": shuffle}
    for system in ("torch", "mds", "litdata", "wds"):
        if system in systems:
            for workers in (0, 2):
                out[f"{system} w{workers}"] = {"system": system, "workers": workers}
    return out


# -- the parent: spawn a child, watch its memory ------------------------------------------------
def _tree_memory(pid: int, with_pss: bool) -> tuple[int, int]:
    """Summed RSS (and PSS when asked) of ``pid`` and all its descendants, in bytes."""
    try:
        import psutil

        root = psutil.Process(pid)
        procs = [root] + root.children(recursive=True)
        pids = [p.pid for p in procs]
    except ImportError:
        pids = [pid] + _descendants(pid)
    except Exception:
        return 0, 0
    rss = pss = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/statm") as f:
                rss += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            if with_pss:
                with open(f"/proc/{p}/smaps_rollup") as f:
                    for line in f:
                        if line.startswith("Pss:"):
                            pss += int(line.split()[1]) * 1024
                            break
        except OSError:
            pass
    return rss, pss


def _descendants(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in kids.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def spawn(spec: dict, timeout: float) -> dict:
    SCRATCH.mkdir(parents=True, exist_ok=True)
    out = SCRATCH / f"child-{os.getpid()}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "bench.loader_throughput", "--child", json.dumps(spec), "--child-out", str(out)]
    env = dict(os.environ, PYTHONWARNINGS="ignore", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parents[1], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)
    reader.start()
    peak_rss = peak_pss = 0
    next_pss = 0.0
    t0 = time.monotonic()
    while proc.poll() is None:
        now = time.monotonic()
        rss, pss = _tree_memory(proc.pid, now >= next_pss)
        if now >= next_pss:
            next_pss = now + 0.25
            peak_pss = max(peak_pss, pss)
        peak_rss = max(peak_rss, rss)
        if now - t0 > timeout:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"child {spec} ran past {timeout} s")
        time.sleep(0.02)
    reader.join(5)
    if proc.returncode != 0 or not out.exists():
        tail = "".join(err)[-3000:]
        raise RuntimeError(f"child {spec['system']} w{spec['workers']} failed ({proc.returncode}):\n{tail}")
    res = json.loads(out.read_text())
    out.unlink()
    res["peak_rss_mb"] = peak_rss / 1e6
    res["peak_pss_mb"] = peak_pss / 1e6
    return res


# -- manifest of 100,000 shards ------------------------------------------------------------------
def manifest_open(repeats: int, data_dir: Path = DEFAULT_DATA_DIR) -> dict:
    """Write a manifest.json listing 100,000 (absent) shards; time fastload.open and DataLoader on it."""
    import fastload
    from fastload.format.manifest import Manifest
    from fastload.format.schema import Schema
    from fastload.format.shard_writer import ShardInfo

    root = SCRATCH / f"manifest-{MANIFEST_SHARDS}"
    if not (root / "manifest.json").exists():
        root.mkdir(parents=True, exist_ok=True)
        real = fastload.open(str(_any_fastload_dataset(data_dir)))
        schema: Schema = real.schema
        settings = dict(real.manifest.settings)
        # 64 MB shards of 1 MB blocks: 15,616 token rows, 64 blocks each (as the real 64 MB shards)
        shards = [ShardInfo(name=f"shard-{i:06d}.fls", n_records=15_616, n_bytes=64_000_000, n_blocks=64,
                            checksum=f"{i:016x}") for i in range(MANIFEST_SHARDS)]
        Manifest.from_shards(schema, settings, shards).write(root)
    size = (root / "manifest.json").stat().st_size
    res: dict[str, list[float]] = {"open_s": [], "dataloader_s": [], "first_plan_s": []}
    for _ in range(repeats):
        warm([root / "manifest.json"])
        t0 = time.perf_counter()
        ds = fastload.open(str(root))
        res["open_s"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        loader = fastload.DataLoader(ds, batch_size=64, shuffle="full", seed=SEED)
        res["dataloader_s"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        loader.sampler.plan()  # the epoch order a first batch needs (no shard is opened)
        res["first_plan_s"].append(time.perf_counter() - t0)
        del ds, loader
    return {"shards": MANIFEST_SHARDS, "records": MANIFEST_SHARDS * 15_616, "manifest_mb": size / 1e6, **res}


def _any_fastload_dataset(data_dir: Path) -> Path:
    for p in sorted((Path(data_dir) / "loader").glob("tokens-*/fastload")):
        return p
    raise SystemExit("no fastload token dataset to copy the schema from: run the tokens benchmark first")


# -- main ----------------------------------------------------------------------------------------
def _num(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _fr(values: list[float]) -> str:
    """``median (min–max)``, thousands with separators rather than 1.07e+03."""
    if len(values) == 1:
        return _num(values[0])
    return f"{_num(med(values))} ({_num(min(values))}–{_num(max(values))})"


def report(dataset: str, n: int, res: dict[str, list[dict]], cap: float) -> dict:
    ref_name = "memmap mm[batch]" if dataset == "tokens" else "arrow take"
    ref = med([r["samples_s"] for r in res[ref_name]]) if ref_name in res else None
    peers_best = max((med([r["samples_s"] for r in rs]), name) for name, rs in res.items()
                     if not name.startswith("fastload") and name != ref_name) if any(
        not k.startswith("fastload") and k != ref_name for k in res) else (None, None)
    unit = "samples/s" if dataset == "tokens" else "rows/s"
    rows = []
    for name, rs in res.items():
        rate = [r["samples_s"] / 1e3 for r in rs]
        steady = [r["steady_samples_s"] / 1e3 for r in rs]
        capped = sum(r["capped"] for r in rs)
        share = f"{med([r['samples'] for r in rs]) / n:.0%}" + (f" (cap {cap:g} s)" if capped else "")
        ttfb = [r["ttfb_s"] for r in rs if r["ttfb_s"] is not None]
        rows.append([name, _fr(rate), _fr(steady), share,
                     f"{med([r['samples_s'] for r in rs]) / peers_best[0]:.2f}" if peers_best[0] else "–",
                     f"{med([r['samples_s'] for r in rs]) / ref:.2f}" if ref else "–",
                     _fr(ttfb) if ttfb else "–",
                     *(["–", "–"] if name == ref_name else  # a bare loop, not a loader: not sampled reliably
                       [_fr([r["peak_rss_mb"] for r in rs]), _fr([r["peak_pss_mb"] for r in rs])])])
    print(f"\n## {dataset}: {n:,} samples, batch {BATCH[dataset]}, shuffled; best peer: {peers_best[1]}")
    table = print_table(["system", f"k {unit} (epoch)", f"k {unit} (after 1st batch)", "epoch share",
                         "× best peer", f"× {ref_name}", "first batch s", "peak RSS MB", "peak PSS MB"], rows)
    return {"table": table, "best_peer": peers_best, "reference": ref}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the full inputs")
    ap.add_argument("--quick", action="store_true", help="smoke run: --scale 0.05 --repeats 1 --cap 5")
    ap.add_argument("--cap", type=float, default=20.0, help="seconds after which an epoch is cut short")
    ap.add_argument("--datasets", default="tokens,records")
    ap.add_argument("--systems", default="ref,fastload,torch,mds,litdata,wds",
                    help="comma list of ref, fastload, torch, mds, litdata, wds")
    ap.add_argument("--only", default="", help="comma list of run names to keep (e.g. 'fastload w0 full')")
    ap.add_argument("--no-manifest", action="store_true", help="skip the 100,000-shard manifest check")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-out", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        res = child(json.loads(a.child))
        Path(a.child_out).write_text(json.dumps(res))
        return 0
    if a.quick:
        a.scale, a.repeats, a.cap = 0.05, 1, 5.0
    systems = a.systems.split(",")
    info = machine_info(a.data_dir)
    info["skipped"] = peers.missing(systems)
    systems = peers.installed(systems)
    info.update(scale=a.scale, repeats=a.repeats, cap_s=a.cap, batch=BATCH, seed=SEED, commit=_commit())
    try:
        import psutil

        info["versions"]["psutil"] = psutil.__version__
    except ImportError:
        pass
    print_machine(info)
    print(f"# fastload commit: {info['commit']}", flush=True)
    payload: dict = {"machine": info, "written": {}, "results": {}, "summary": {}}
    for dataset in a.datasets.split(","):
        src = source(dataset, a.data_dir, a.scale)
        n = int(np.load(src, mmap_mode="r").shape[0]) if dataset == "tokens" else _parquet_rows(src)
        paths = {"ref": src, "torch": src}
        for system in ("fastload", "mds", "litdata", "wds"):
            if system in systems:
                p, secs = ensure_written(dataset, system, src, a.data_dir)
                paths[system] = p
                if secs is not None:
                    print(f"# wrote {dataset} for {system} in {secs:.1f} s: {p} ({tree_bytes(p) / 1e6:.0f} MB)",
                          flush=True)
                    payload["written"][f"{dataset}/{system}"] = secs
        specs = configs(dataset, systems)
        if a.only:
            keep = set(a.only.split(","))
            specs = {k: v for k, v in specs.items() if k in keep}
        for spec in specs.values():
            spec.update(dataset=dataset, path=str(paths[spec["system"]]), cap=a.cap, n=n)
        timeout = max(120.0, 6 * a.cap + 60)
        res = interleaved({name: (lambda s=spec: spawn(s, timeout)) for name, spec in specs.items()}, a.repeats)
        payload["results"][dataset] = res
        payload["summary"][dataset] = report(dataset, n, res, a.cap)
        write_json(a.json, payload)  # after each dataset: an interrupted run keeps what it measured
    if not a.no_manifest and "fastload" in systems:
        m = manifest_open(max(a.repeats, 3), a.data_dir)
        payload["manifest"] = m
        print(f"\n## manifest of {m['shards']:,} shards ({m['manifest_mb']:.1f} MB): fastload.open "
              f"{fmt_range(m['open_s'])} s; DataLoader(...) {fmt_range(m['dataloader_s'])} s; "
              f"first epoch plan {fmt_range(m['first_plan_s'])} s")
    write_json(a.json, payload)
    return 0


def _commit() -> str:
    """The fastload commit measured (others may commit while a run goes on: it is read at start)."""
    if os.environ.get("FASTLOAD_BENCH_COMMIT"):  # a snapshot outside git (git archive of a commit)
        return os.environ["FASTLOAD_BENCH_COMMIT"]
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                              text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "fastload"], cwd=root,
                               capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"
    return head + (" + uncommitted changes in fastload/" if dirty else "")


def _parquet_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


if __name__ == "__main__":
    sys.exit(main())
