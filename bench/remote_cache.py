"""Remote data larger than the cache, and 4 nodes: fastload against MosaicML Streaming and LitData.

The link of ``bench/remote.py`` (an aiohttp server behind a throttling proxy: 100 MB/s, 20 ms per
request; it counts the bytes it carries). Each system reads its own copy of the ``tokens`` data
(``--scale`` of 200,000 x 2049 uint16) written with the same shard size (``--shard-mb``, default
8 MB: about 25 shards at the default scale, as in the issue).

*cache*: with a cache limit of 50% and 25% of the dataset (the same bytes for every system), one
cold epoch in batches of 64 with 2 workers: fastload with ``shuffle=True``, ``"block"`` and
``"full"``; Streaming (``cache_limit=``) and LitData (``max_cache_size=``) with their own shuffle
defaults (``shuffle=True``). Reported: bytes the link carried per epoch (and fastload's forecast,
``loader.io_plan()``), epoch seconds, and the shuffle quality of the order each delivered
(displacement, Spearman rho: uniform 1/3 and 0; source shards per batch). A run that would take
longer than ``--max-seconds`` stops there and its bytes and time are extrapolated to the epoch
(marked ``~``; quality then only shards per batch).

*nodes*: 4 simulated nodes (4 processes, each with its own cache directory and node rank, no
limit, 1 worker), one epoch: bytes each node downloaded (its cache directory), fastload (default
partitions: one per node) against Streaming (its default canonical nodes).

    .venv-bench/bin/python -m bench.remote_cache --quick
    .venv-bench/bin/python -m bench.remote_cache --repeats 3 --max-seconds 60 --json remote-cache.json  # alone on the machine
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
from pathlib import Path

import numpy as np

from . import datasets, peers
from .common import DEFAULT_DATA_DIR, fmt_range, interleaved, machine_info, med, print_machine, print_table, write_json
from .remote import S3_ENV, Link, write_copies

BATCH = 64
FASTLOAD_MODES = ("true", "block", "full")
PEERS = ("mds", "litdata")
NODES = 4


# -- identifying the samples a system delivered ----------------------------------------------------
def sample_keys(tokens: np.ndarray) -> np.ndarray:
    """A uint64 key per sample from its first 4 tokens (random ids: unique in practice)."""
    t = np.asarray(tokens)[:, :4].astype(np.uint64)
    return t[:, 0] | (t[:, 1] << np.uint64(16)) | (t[:, 2] << np.uint64(32)) | (t[:, 3] << np.uint64(48))


def _tokens_of(batch) -> np.ndarray:
    value = batch["tokens"] if isinstance(batch, dict) else batch
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


def quality(order: np.ndarray, n: int, rows_per_shard: int, complete: bool) -> dict:
    """Displacement and Spearman rho of a delivered order (whole epochs only) and source shards per batch."""
    out = {}
    if complete and len(order) == n:
        d = (order - np.arange(n)).astype(np.float64)
        out["displacement"] = float(np.abs(d).mean() / n)
        out["spearman"] = 1.0 - 6.0 * float(np.dot(d, d)) / (n * (float(n) ** 2 - 1))
    usable = len(order) // BATCH * BATCH
    shards = np.sort((order[:usable] // rows_per_shard).reshape(-1, BATCH), axis=1)
    out["shards_per_batch"] = float((1 + np.count_nonzero(np.diff(shards, axis=1), axis=1)).mean()) if usable else None
    return out


# -- one measured run, in a fresh process ---------------------------------------------------------
def _loader(system: str, mode: str, url: str, cache: str, limit: int | None, workers: int):
    os.environ.update(S3_ENV)
    if system == "fastload":
        import fastload

        ds = fastload.open(f"{url}/bench/fastload", cache_dir=cache, cache_limit=limit)
        shuffle = {"true": True, "block": "block", "full": "full"}[mode]
        return fastload.DataLoader(ds, batch_size=BATCH, shuffle=shuffle, num_workers=workers)
    if system == "mds":
        os.environ["S3_ENDPOINT_URL"] = url
        streaming = peers.import_streaming()
        ds = streaming.StreamingDataset(remote="s3://bench/mds", local=cache, batch_size=BATCH, shuffle=True,
                                        cache_limit=limit)
        return streaming.StreamingDataLoader(ds, batch_size=BATCH, num_workers=workers)
    import litdata
    import litdata.streaming.downloader as lit_dl

    lit_dl._OBSTORE_AVAILABLE = False  # obstore refuses plain-http endpoints; boto3 reads the same objects
    kwargs = {} if limit is None else {"max_cache_size": limit}
    ds = litdata.StreamingDataset("s3://bench/litdata", cache_dir=cache, shuffle=True,
                                  storage_options={"endpoint_url": url}, **kwargs)
    return litdata.StreamingDataLoader(ds, batch_size=BATCH, num_workers=workers)


def _child(system: str, mode: str, url: str, cache: str, limit: int | None, max_seconds: float, keys_out: str,
           workers: int) -> dict:
    import torch  # noqa: F401 - imported before the clock starts, as a training script would have

    t0 = time.perf_counter()
    loader = _loader(system, mode, url, cache, limit, workers)
    forecast = None
    if system == "fastload":
        forecast = loader.io_plan().node_bytes[0]  # before the first byte (and before the clock's end)
    keys, batches, complete = [], 0, True
    for batch in loader:
        keys.append(sample_keys(_tokens_of(batch)))
        batches += 1
        if time.perf_counter() - t0 > max_seconds:
            complete = False
            break
    seconds = time.perf_counter() - t0
    np.save(keys_out, np.concatenate(keys) if keys else np.zeros(0, np.uint64))
    out = {"seconds": seconds, "batches": batches, "complete": complete, "forecast": forecast}
    if system == "fastload":
        out["fastload_bytes"] = loader.stats()["storage"]["bytes_downloaded"]  # its own count, headers excluded
        out["shuffle"] = loader.stats()["shuffle"]
        out["total_batches"] = len(loader)
    return out


def _node_child(system: str, url: str, cache: str, node: int) -> dict:
    os.environ.update(RANK=str(node), WORLD_SIZE=str(NODES), LOCAL_WORLD_SIZE="1", LOCAL_RANK="0",
                      GROUP_RANK=str(node), NODE_RANK=str(node))
    loader = _loader(system, "true", url, cache, None, 1)
    t0 = time.perf_counter()
    n = sum(1 for _ in loader)
    return {"batches": n, "seconds": time.perf_counter() - t0,
            "bytes": sum(p.stat().st_size for p in Path(cache).rglob("*") if p.is_file() and ".claim" not in p.name
                         and ".lock" not in p.name and "/counters/" not in str(p) and "/hints/" not in str(p))}


def _run(args: list[str], timeout: float) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.remote_cache", *args], capture_output=True, text=True,
                         timeout=timeout)
    if out.returncode:
        lines = [ln for ln in out.stderr.strip().splitlines() if ln.strip()]
        return {"error": f"exit {out.returncode}: {(lines or ['?'])[-1][:300]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- the driver -----------------------------------------------------------------------------------
WRITERS = {"fastload": peers.fastload_pack, "mds": peers.mds_tokens, "litdata": peers.litdata_tokens}


def prepare(data_dir: Path, scale: float, shard_mb: int, systems: list[str]) -> tuple[Path, dict, Path]:
    src = datasets.tokens(data_dir, scale)
    root = data_dir / "remote-cache-data" / f"{src.parent.name}-{shard_mb}mb"
    sizes = write_copies(src, root, systems, shard_bytes=shard_mb * 1_000_000)
    return root, sizes, src


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="about 20 MB, one repeat")
    ap.add_argument("--scale", type=float, default=None, help="fraction of the 200,000-row tokens (default 0.1)")
    ap.add_argument("--shard-mb", type=int, default=None, help="shard size in MB for every system (default 8)")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--fractions", default="0.5,0.25", help="cache limits as fractions of the dataset")
    ap.add_argument("--max-seconds", type=float, default=120.0, help="a run stops here and is extrapolated")
    ap.add_argument("--parts", default="cache,nodes")
    ap.add_argument("--systems", default=",".join(("fastload", *PEERS)))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--rate", type=float, default=100e6)
    ap.add_argument("--latency", type=float, default=0.020)
    ap.add_argument("--child", nargs=8, help=argparse.SUPPRESS)
    ap.add_argument("--node-child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        system, mode, url, cache, limit, max_seconds, keys_out, workers = args.child
        print(json.dumps(_child(system, mode, url, cache, None if limit == "none" else int(limit),
                                float(max_seconds), keys_out, int(workers))))
        return 0
    if args.node_child:
        system, url, cache, node = args.node_child
        print(json.dumps(_node_child(system, url, cache, int(node))))
        return 0
    scale = args.scale if args.scale is not None else (0.0125 if args.quick else 0.1)
    shard_mb = args.shard_mb or (1 if args.quick else 8)
    repeats = args.repeats or (1 if args.quick else 3)
    info = machine_info(args.data_dir)
    print_machine(info)
    systems = peers.installed([s for s in args.systems.split(",") if s])
    root, sizes, src = prepare(args.data_dir, scale, shard_mb, systems)
    tokens = np.load(src, mmap_mode="r")
    n = tokens.shape[0]
    index = {int(k): i for i, k in enumerate(sample_keys(tokens))}
    if len(index) != n:
        raise RuntimeError("two samples share their first 4 tokens: the keys cannot identify the order")
    rows_per_shard = max(1, shard_mb * 1_000_000 // (tokens.shape[1] * tokens.itemsize))
    print(f"# data: {n} samples, " + ", ".join(f"{s} {sizes[s] / 1e6:.1f} MB" for s in systems)
          + f"; shards of {shard_mb} MB; link {args.rate / 1e6:g} MB/s, {args.latency * 1e3:g} ms per request", flush=True)
    link = Link(root, args.rate, args.latency)
    scratch = Path(tempfile.mkdtemp(prefix="fastload-bench-remote-cache-"))
    parts = args.parts.split(",")
    results: dict = {"cache": {}, "nodes": {}}
    try:
        if "cache" in parts:
            runs = {}
            for fraction in (float(f) for f in args.fractions.split(",")):
                limit = int(sizes.get("fastload", max(sizes.values())) * fraction)
                for system in systems:
                    for mode in (FASTLOAD_MODES if system == "fastload" else ("default",)):
                        runs[f"{fraction:g} {system} {mode}"] = _cache_run(link, system, mode, limit, args, scratch,
                                                                           index, n, rows_per_shard, sizes[system])
            results["cache"] = interleaved(runs, repeats)
            _cache_table(results["cache"], sizes)
        if "nodes" in parts:
            node_systems = [s for s in systems if s in ("fastload", "mds")]
            results["nodes"] = interleaved({s: _nodes_run(link, s, scratch) for s in node_systems}, repeats)
            _nodes_table(results["nodes"], sizes)
    finally:
        link.close()
        shutil.rmtree(scratch, ignore_errors=True)
    write_json(args.json, {"benchmark": "remote_cache", "results": results, "sizes": sizes, "scale": scale,
                           "shard_mb": shard_mb, "rate": args.rate, "latency": args.latency, "repeats": repeats,
                           "command": info["command"], "machine": info, "versions": info["versions"]})
    return 0


def _cache_run(link, system, mode, limit, args, scratch, index, n, rows_per_shard, size):
    def run():
        cache = scratch / "cache"
        shutil.rmtree(cache, ignore_errors=True)
        keys = scratch / "keys.npy"
        before = link.bytes_sent()
        out = _run(["--child", system, mode, link.url, str(cache), str(limit), str(args.max_seconds), str(keys),
                    str(args.workers)], timeout=args.max_seconds + 300)
        sent = link.bytes_sent() - before
        shutil.rmtree(cache, ignore_errors=True)
        if "error" in out:
            return out
        order = np.array([index.get(int(k), -1) for k in np.load(keys)], dtype=np.int64)
        epoch = n // BATCH if system != "fastload" else out["total_batches"]
        scale = epoch / max(out["batches"], 1) if not out["complete"] else 1.0
        return {"seconds": out["seconds"] * scale, "bytes": sent * scale, "of_dataset": sent * scale / size,
                "forecast": out["forecast"], "complete": out["complete"], "batches": out["batches"],
                "unknown_samples": int((order < 0).sum()), "shuffle": out.get("shuffle"),
                **quality(order, n, rows_per_shard, out["complete"])}
    return run


def _cache_table(results: dict, sizes: dict) -> None:
    headers = ["cache", "system", "shuffle", "bytes per epoch (x dataset)", "forecast (x dataset)", "epoch s",
               "displacement", "Spearman rho", "shards per batch"]
    rows = []
    for name, runs in results.items():
        fraction, system, mode = name.split(" ")
        ok = [r for r in runs if "error" not in r]
        if not ok:
            rows.append([f"{float(fraction):.0%}", system, mode, "failed: " + runs[0]["error"], "", "", "", "", ""])
            continue
        mark = "" if all(r["complete"] for r in ok) else "~"
        col = lambda k: [r[k] for r in ok if r.get(k) is not None]  # noqa: E731
        fc = col("forecast")
        size = sizes[system]
        rows.append([f"{float(fraction):.0%}", system, {"true": "True", "default": "its default"}.get(mode, mode),
                     f"{mark}{med(col('bytes')) / 1e6:.0f} MB ({mark}{med(col('of_dataset')):.2f})",
                     f"{med(fc) / 1e6:.0f} MB ({med(fc) / size:.2f})" if fc else "–",
                     mark + fmt_range(col("seconds")),
                     f"{med(col('displacement')):.3f}" if col("displacement") else "–",
                     f"{med(col('spearman')):+.3f}" if col("spearman") else "–",
                     f"{med(col('shards_per_batch')):.1f}" if col("shards_per_batch") else "–"])
    print_table(headers, rows)


def _nodes_run(link, system, scratch):
    def run():
        import socket

        caches = [scratch / f"node{i}" for i in range(NODES)]
        for c in caches:
            shutil.rmtree(c, ignore_errors=True)
        with socket.socket() as s:  # Streaming joins torch.distributed (gloo) when WORLD_SIZE > 1
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        procs = [subprocess.Popen(_own_shm([sys.executable, "-m", "bench.remote_cache", "--node-child", system,
                                            link.url, str(c), str(i)]),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                 for i, c in enumerate(caches)]
        outs = []
        for p in procs:
            stdout, stderr = p.communicate(timeout=1800)
            if p.returncode:
                return {"error": f"exit {p.returncode}: {(stderr.strip().splitlines() or ['?'])[-1][:300]}"}
            outs.append(json.loads(stdout.strip().splitlines()[-1]))
        for c in caches:
            shutil.rmtree(c, ignore_errors=True)
        return {"node_bytes": [o["bytes"] for o in outs], "batches": [o["batches"] for o in outs],
                "seconds": max(o["seconds"] for o in outs)}
    return run


def _own_shm(cmd: list[str]) -> list[str]:
    """``cmd`` in its own mount namespace with a private /dev/shm, as on a node of its own: Streaming's
    local leaders name their shared memory by scanning for a free prefix, so 4 of them sharing one
    /dev/shm collide (FileExistsError). Needs root and util-linux's unshare (else ``cmd`` as is)."""
    import shlex

    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return cmd
    inner = "mount -t tmpfs tmpfs /dev/shm && exec " + " ".join(shlex.quote(c) for c in cmd)
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", inner]


def _nodes_table(results: dict, sizes: dict) -> None:
    headers = ["system", "bytes per node per epoch (x dataset)", "sum over 4 nodes (x dataset)", "batches per node",
               "epoch s (slowest node)"]
    rows = []
    for system, runs in results.items():
        ok = [r for r in runs if "error" not in r]
        if not ok:
            rows.append([system, "failed: " + runs[0]["error"], "", "", ""])
            continue
        per_node = np.median(np.array([r["node_bytes"] for r in ok]), axis=0)
        size = sizes[system]
        rows.append([system, ", ".join(f"{b / 1e6:.1f} MB ({b / size:.3f})" for b in per_node),
                     f"{per_node.sum() / 1e6:.1f} MB ({per_node.sum() / size:.2f})",
                     ", ".join(str(b) for b in ok[0]["batches"]), fmt_range([r["seconds"] for r in ok])])
    print_table(headers, rows)


if __name__ == "__main__":
    sys.exit(main())
