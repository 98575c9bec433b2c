"""Advice in plain words from a benchmark's measurements: a pure function, no I/O, no clocks.

``advise(m)`` reads the measurement dict that ``fastload bench`` builds (storage, decode, loader
grid, stall, machine) and returns sentences: which setting to use, whether the GPU is starved, and
which part (storage, decompression, decode, workers) limits the rate. Thresholds are named below
with the reasoning behind them.
"""

from __future__ import annotations

from statistics import median
from typing import Any

STALL_OK_PCT = 5.0  # under 5% of step time waiting, data loading costs less than run-to-run noise
STORAGE_BOUND = 0.7  # a loader at >= 70% of raw read bandwidth has little left to gain elsewhere
SHUFFLE_COST = 0.15  # "full" more than 15% slower than "block" is worth a sentence
WORKER_TYPE_GAP = 0.10  # thread vs process differences under 10% are noise on a busy machine
REMOTE_CACHED = 1.1  # past the remote bandwidth (plus noise), the loader must be reading a local cache
SCALING_GAIN = 1.3  # the most workers beating the fewest by 30% means workers still help


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def advise(m: dict[str, Any]) -> list[str]:
    """Plain-words advice from measurements (see the module docstring); never empty."""
    out: list[str] = []
    rows = judged_rows(m.get("loader") or [])
    storage = m.get("storage") or {}
    warm = median(storage["mb_s"]) if storage.get("mb_s") else None
    cold = median(storage["cold_mb_s"]) if storage.get("cold_mb_s") else None
    bpr = (m.get("dataset") or {}).get("bytes_per_record") or 0.0
    cores = (m.get("machine") or {}).get("cores") or 1
    if not rows:
        return ["No loader settings were measured, so there is no advice on settings; "
                "run without --skip-loader to get it."]
    top = best_setting(rows)
    frac = top["mb_s"] / warm if warm else None
    where = "remote storage" if storage.get("remote") else "storage (page cache)"
    out.append(("Decoding images in the loader, use" if top.get("decoded") else "Use")
               + f" num_workers={top['num_workers']}" +
               (f", worker_type={top['worker_type']!r}" if top["num_workers"] else "") +
               f", shuffle={top['shuffle']!r}, batch_size={top['batch_size']}: "
               f"{_fmt(top['samples_s'])} samples/s ({_fmt(top['mb_s'])} MB/s"
               + (f", {frac:.0%} of what {where} delivers)." if frac is not None else ")."))
    out += _stall(m.get("stall"), m.get("target_samples_s"))
    out += _bottleneck(m, top, frac, warm, cores)
    if cold is not None and bpr and cold < top["mb_s"]:
        out.append(f"From a cold cache the disk reads {_fmt(cold)} MB/s, below the {_fmt(top['mb_s'])} MB/s the "
                   "loader can use: the first epoch (or any data larger than memory) is disk-bound. Keep the "
                   "dataset on a faster local disk, or use compression=\"zstd\" if its blocks compress.")
    out += _workers(rows, cores)
    out += _shuffle(rows)
    if (m.get("torch_compare") or {}).get("speedup"):
        tc = m["torch_compare"]
        out.append(f"Your torch Dataset through torch's DataLoader gives {_fmt(tc['torch_samples_s'])} samples/s; "
                   f"packed with fastload.pack and read by fastload.DataLoader, {_fmt(tc['fastload_samples_s'])} "
                   f"samples/s ({tc['speedup']:.1f}x).")
    return out


def judged_rows(rows: list[dict]) -> list[dict]:
    """The grid rows advice is about: for image datasets the ones that decode in the loader (what
    training runs), else all."""
    return [r for r in rows if r.get("decoded")] or rows


def best_setting(rows: list[dict]) -> dict:
    """The fastest grid row; ties (within 3%) go to fewer workers, then threads (less memory)."""
    top = max(r["samples_s"] for r in rows)
    near = [r for r in rows if r["samples_s"] >= 0.97 * top]
    return min(near, key=lambda r: (r["num_workers"], r["worker_type"] != "thread", -r["samples_s"]))


def _stall(stall: dict | None, target: float | None) -> list[str]:
    if not stall:
        return []
    pct, step = stall["stall_pct"], stall["step_ms"]
    need = stall.get("step_samples_s")
    label = stall["setting"]["label"]
    if pct < STALL_OK_PCT:
        return [f"The GPU is not starved: with a {step:.0f} ms step ({label}) it waits for data "
                f"{pct:.1f}% of the time."]
    line = (f"The GPU is starved: with a {step:.0f} ms step ({label}) it waits for data {pct:.0f}% of the "
            f"time; the loader sustained {_fmt(stall['samples_s'])} samples/s")
    if need:
        line += f" where the step could take {_fmt(need)}"
    if target:
        line += f" (target {_fmt(target)} samples/s)"
    return [line + "."]


def _bottleneck(m: dict, top: dict, frac: float | None, warm: float | None, cores: int) -> list[str]:
    remote = bool((m.get("storage") or {}).get("remote"))
    out = []
    if remote and frac is not None and frac > REMOTE_CACHED:
        bpr = (m.get("dataset") or {}).get("bytes_per_record") or 1.0
        out.append(f"The loader runs at {frac:.1f}x the remote read bandwidth because after the first pass it reads "
                   f"the local cache: a first epoch is limited by the remote storage to about "
                   f"{_fmt(warm * 1e6 / bpr)} samples/s ({_fmt(warm)} MB/s). Give the cache (cache_dir, "
                   "cache_limit) room for the whole dataset if epochs repeat.")
        frac = None  # the rest compares against the cache, which was not measured on its own
    elif frac is not None and frac >= STORAGE_BOUND:
        if remote:
            return [f"The bottleneck is storage: the loader reaches {frac:.0%} of the remote read bandwidth "
                    f"({_fmt(warm)} MB/s). A local cache (cache_dir) on fast disk, more parallel reads or a "
                    "storage closer to the machine would help; more workers will not."]
        return [f"The bottleneck is storage: the loader reaches {frac:.0%} of the raw read bandwidth "
                f"({_fmt(warm)} MB/s). More workers will not help; faster storage, or zstd if the data "
                "compresses, would."]
    parts = dict((m.get("decode") or {}).get("per_sample_s") or {})
    if not parts or sum(parts.values()) <= 0:
        return out + ["Storage is not the limit; the decode cost could not be measured, so the CPU-side part is unknown."]
    name, secs = max(parts.items(), key=lambda kv: kv[1])
    share = secs / sum(parts.values())
    per_core = 1 / sum(parts.values())
    workers = top["num_workers"]
    what = {"decompression": "zstd decompression", "gather": "copying records out of blocks (the gather)",
            "decode": "decoding variable fields to Python values (str/JSON/arrays)",
            "image decode": "image decoding"}[name]
    lead = ("Reading from the cache" if out else "Storage is not the limit"
            + (f" (the loader uses {frac:.0%} of it)" if frac is not None else ""))
    line = (f"{lead}; the CPU is: {what} takes {share:.0%} of the per-sample work, and one core does about "
            f"{_fmt(per_core)} samples/s of all of it.")
    tested = max(r["num_workers"] for r in (m.get("loader") or [top]))
    if top["num_workers"] >= cores:
        remedy = {"image decode": ", or storing smaller images (pre-resized, e.g. 256 px on the short side)",
                  "decompression": ", or storing with compression=\"none\"",
                  "decode": ", or fixed-size fields (arrays rather than str/JSON) where the data allows"}
        line += (f" All {cores} cores are in use, so more workers will not help; more cores would"
                 + remedy.get(name, "") + ".")
    else:
        if name == "decompression":
            line += " Store with compression=\"none\" if disk space allows."
        if tested < cores:
            line += f" Up to {cores} workers may help (measured up to {tested}; best {workers})."
        else:
            line += (f" The grid went up to {tested} workers and {workers} was best: extra workers cost more "
                     "(hand-off, sharing cores with the main process) than they add.")
    return out + [line]


def _workers(rows: list[dict], cores: int) -> list[str]:
    out = []
    threads = {(r["num_workers"], r["batch_size"], r["shuffle"]): r["samples_s"] for r in rows
               if r["num_workers"] > 0 and r["worker_type"] == "thread"}
    procs = {(r["num_workers"], r["batch_size"], r["shuffle"]): r["samples_s"] for r in rows
             if r["num_workers"] > 0 and r["worker_type"] == "process"}
    both = [k for k in threads if k in procs]
    if both:
        ratio = median(procs[k] / threads[k] for k in both)
        if ratio > 1 + WORKER_TYPE_GAP:
            out.append(f"Process workers are {ratio - 1:.0%} faster than threads here (Python-level work in the "
                       "workers holds the GIL): use worker_type='process'.")
        elif ratio < 1 - WORKER_TYPE_GAP:
            out.append(f"Thread workers are {1 / ratio - 1:.0%} faster than processes here: keep "
                       "worker_type='thread' (the default; it also uses less memory).")
        else:
            out.append("Threads and processes are within 10% of each other here: keep worker_type='thread' "
                       "(the default; less memory, no process start-up).")
    counts = sorted({r["num_workers"] for r in rows})
    if len(counts) > 1:
        lo = max(r["samples_s"] for r in rows if r["num_workers"] == counts[0])
        hi = max(r["samples_s"] for r in rows if r["num_workers"] == counts[-1])
        if hi >= SCALING_GAIN * lo and counts[-1] < cores:
            out.append(f"Throughput still grows with workers ({counts[0]} -> {counts[-1]}: {hi / lo:.1f}x); "
                       f"try up to {cores} (the number of cores).")
        elif hi < lo / SCALING_GAIN:
            out.append(f"More workers are slower here ({counts[-1]} workers: {hi / lo:.1f}x of {counts[0]}): "
                       "the machine has too few free cores for them; use fewer.")
    return out


def _shuffle(rows: list[dict]) -> list[str]:
    block = {(r["num_workers"], r["batch_size"], r["worker_type"]): r["samples_s"] for r in rows
             if r["shuffle"] == "block"}
    full = {(r["num_workers"], r["batch_size"], r["worker_type"]): r["samples_s"] for r in rows
            if r["shuffle"] == "full"}
    both = [k for k in block if k in full]
    if not both:
        return []
    cost = 1 - median(full[k] / block[k] for k in both)
    if cost > SHUFFLE_COST:
        return [f"shuffle='full' is {cost:.0%} slower than 'block' here: use 'block' (sequential reads, "
                "shuffled within a window of blocks) unless batches must be decorrelated from storage order."]
    return [f"shuffle='full' costs {max(cost, 0):.0%} against 'block' here (the data is read from memory): "
            "use 'full' for the best shuffle at little cost."]
