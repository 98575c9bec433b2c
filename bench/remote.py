"""Remote reading through a capped link: fastload vs MosaicML Streaming and LitData, cold and warm.

One aiohttp static server on 127.0.0.1 serves every system's copy of the ``tokens`` dataset
(``bench/datasets.py``; written once per system by ``bench/peers.py``); a throttling asyncio TCP
proxy written for this benchmark sits in front of it: a token bucket shared by all connections caps
server-to-client bandwidth (``--rate``, default 100 MB/s) and a delay line adds ``--latency``
(default 20 ms) round trip to every request. fastload reads ``http://PROXY/bench/fastload``;
Streaming and LitData read ``s3://bench/<system>`` through the same proxy and server (the static
server answers path-style S3 GETs and HEADs; neither peer reads plain HTTP). Server and proxy run
in their own process.

Each measured run is a fresh Python process (``--child``) that opens its system on an empty cache
directory (no limit for any system) and runs a shuffled epoch of batches of 64 with 2 workers:
*cold* (everything crosses the link) and then, on the same cache, *warm*. Reported: time to first
batch (open + iter + next, imports excluded), epoch seconds, and the cold epoch's rate as a
fraction of the cap (dataset bytes on disk / epoch seconds) and of what the link delivers to a plain
client in the same run (``link``: fastload's files fetched by urllib, 4 GETs at a time: the proxy and
server share the 2 cores with the client, so the cap itself is not reachable). Systems run interleaved ``--repeats``
times; tables show medians with the (min-max) range.

    .venv-bench/bin/python -m bench.remote --quick              # ~20 MB, 1 repeat, under a minute
    .venv-bench/bin/python -m bench.remote --repeats 3 --json remote.json   # 200,000 x 2049 tokens
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import datasets, peers
from .common import DEFAULT_DATA_DIR, fmt_range, interleaved, machine_info, med, print_machine, print_table, write_json

SYSTEMS = ("fastload", "mds", "litdata")
LINK_STREAMS = 4  # the reference download's parallel GETs (fastload's own: 2 shards x 4 ranges)
WRITERS = {"fastload": peers.fastload_pack, "mds": peers.mds_tokens, "litdata": peers.litdata_tokens}
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
          "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/dev/null",
          "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}


# -- the link: a token bucket and a delay line in front of a static server -----------------------
class TokenBucket:
    """``rate`` bytes/s with ``burst`` bytes of credit, shared by every connection (one link)."""

    def __init__(self, rate: float, burst: int = 256 << 10):
        self.rate, self.burst = rate, burst
        self.tokens, self.t = float(burst), time.monotonic()
        self.lock = asyncio.Lock()

    async def take(self, n: int) -> None:
        async with self.lock:  # FIFO: connections share the link in turn, like a queue on a wire
            while True:
                now = time.monotonic()
                self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
                self.t = now
                if self.tokens >= n:
                    self.tokens -= n
                    return
                await asyncio.sleep((n - self.tokens) / self.rate)


async def _pipe(reader, writer, delay: float, bucket: TokenBucket | None, counted: list | None = None) -> None:
    """Forward bytes, each chunk ``delay`` seconds after it arrived (a delay line, not a stall);
    ``counted[0]`` adds up the bytes forwarded."""
    queue: asyncio.Queue = asyncio.Queue()

    async def receive():
        while True:
            data = await reader.read(64 << 10)
            await queue.put((time.monotonic() + delay, data))
            if not data:
                return

    task = asyncio.ensure_future(receive())
    try:
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                break
            if bucket is not None:
                await bucket.take(len(data))
            if counted is not None:
                counted[0] += len(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        task.cancel()
        try:
            writer.close()
        except Exception:  # noqa: BLE001 - the peer may already be gone
            pass


async def _serve(root: str, rate: float, latency: float) -> None:
    from aiohttp import web

    app = web.Application()
    app.router.add_static("/", root)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    upstream = site._server.sockets[0].getsockname()[1]
    bucket = TokenBucket(rate)
    delivered = [0]  # bytes the link carried to clients: GET /bytes on the control port

    async def bytes_sent(request):
        return web.json_response({"bytes": delivered[0]})

    control = web.Application()
    control.router.add_get("/bytes", bytes_sent)
    control_runner = web.AppRunner(control, access_log=None)
    await control_runner.setup()
    control_site = web.TCPSite(control_runner, "127.0.0.1", 0)
    await control_site.start()

    async def handle(cr, cw):
        try:
            sr, sw = await asyncio.open_connection("127.0.0.1", upstream)
        except OSError:
            cw.close()
            return
        # half the round trip each way: a request pays ``latency`` before its first byte returns
        await asyncio.gather(_pipe(cr, sw, latency / 2, None), _pipe(sr, cw, latency / 2, bucket, delivered))

    proxy = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(json.dumps({"proxy": proxy.sockets[0].getsockname()[1],
                      "control": control_site._server.sockets[0].getsockname()[1]}), flush=True)
    await asyncio.Event().wait()


class Link:
    """The server and proxy in their own process (so they do not share the measured process's GIL)."""

    def __init__(self, root: Path, rate: float, latency: float):
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.remote", "--serve", str(root), "--rate", str(rate),
                                      "--latency", str(latency)], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the benchmark server did not start")
        ports = json.loads(line)
        self.url = f"http://127.0.0.1:{ports['proxy']}"
        self._control = f"http://127.0.0.1:{ports['control']}/bytes"

    def bytes_sent(self) -> int:
        """Bytes the link has carried to clients so far (every system's downloads)."""
        import urllib.request

        with urllib.request.urlopen(self._control) as r:
            return int(json.loads(r.read())["bytes"])

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# -- one measured run, in a fresh process ---------------------------------------------------------
def _link_child(url: str, streams: int = LINK_STREAMS) -> dict:
    """What the link delivers to a plain client: fastload's files, ``streams`` GETs at a time."""
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    from fastload.format.manifest import Manifest

    base = f"{url}/bench/fastload"

    def get(name: str) -> int:
        n = 0
        with urllib.request.urlopen(f"{base}/{name}") as r:
            while chunk := r.read(1 << 20):
                n += len(chunk)
        return n

    t0 = time.perf_counter()
    with urllib.request.urlopen(f"{base}/manifest.json") as r:
        names = list(Manifest.loads(r.read(), base).shard_names)
    with ThreadPoolExecutor(streams) as pool:
        total = sum(pool.map(get, names))
    return {"first_batch_s": float("nan"), "epoch_s": time.perf_counter() - t0, "batches": 0, "bytes": total}


def _child(system: str, url: str, cache: str) -> dict:
    os.environ.update(S3_ENV)
    if system == "link":
        return _link_child(url)
    if system == "fastload":
        import fastload
        from fastload import DataLoader  # noqa: F401 - imports torch now, outside the timing

        def make():
            ds = fastload.open(f"{url}/bench/fastload", cache_dir=cache)
            return fastload.DataLoader(ds, batch_size=64, shuffle="block", num_workers=2)
    elif system == "mds":
        os.environ["S3_ENDPOINT_URL"] = url
        streaming = peers.import_streaming()

        def make():
            ds = streaming.StreamingDataset(remote="s3://bench/mds", local=cache, batch_size=64, shuffle=True)
            return streaming.StreamingDataLoader(ds, batch_size=64, num_workers=2)
    else:
        import litdata
        import litdata.streaming.downloader as lit_dl

        # LitData fetches chunks with obstore when installed, and obstore refuses a plain-http
        # endpoint; its boto3 path (used when obstore is absent) reads the same objects
        lit_dl._OBSTORE_AVAILABLE = False

        def make():
            ds = litdata.StreamingDataset("s3://bench/litdata", cache_dir=cache, shuffle=True,
                                          storage_options={"endpoint_url": url})
            return litdata.StreamingDataLoader(ds, batch_size=64, num_workers=2)

    t0 = time.perf_counter()
    loader = make()
    it = iter(loader)
    next(it)
    first = time.perf_counter() - t0
    n = 1
    for _ in it:
        n += 1
    epoch = time.perf_counter() - t0
    return {"first_batch_s": first, "epoch_s": epoch, "batches": n}


def _run_child(system: str, url: str, cache: Path, timeout: float) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.remote", "--child", system, "--url", url, "--cache", str(cache)],
                         capture_output=True, text=True, timeout=timeout)
    if out.returncode:
        lines = [ln for ln in out.stderr.strip().splitlines() if ln.strip() and ln.strip() not in "{}[]()"]
        return {"error": f"exit {out.returncode}: {(lines or ['?'])[-1][:300]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- the driver -----------------------------------------------------------------------------------
def prepare(data_dir: Path, scale: float, systems: list[str]) -> tuple[Path, dict[str, int]]:
    """Each system's copy of the tokens data under ``<root>/bench/<system>``; returns root and sizes."""
    src = datasets.tokens(data_dir, scale)
    root = data_dir / "remote" / src.parent.name
    return root, write_copies(src, root, systems)


def write_copies(src: Path, root: Path, systems: list[str], **writer_options) -> dict[str, int]:
    """Each system's copy of ``src`` under ``<root>/bench/<system>`` (written once, published by
    rename); returns each copy's bytes."""
    sizes = {}
    for system in systems:
        out = root / "bench" / system
        if not out.exists():
            tmp = out.with_name(out.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            WRITERS[system](src, tmp, 2, **writer_options)
            os.replace(tmp, out)
        sizes[system] = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return sizes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="about 20 MB and one repeat: under a minute")
    ap.add_argument("--scale", type=float, default=None, help="fraction of the 200,000-row tokens dataset")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--rate", type=float, default=100e6, help="link cap in bytes/s (default 100 MB/s)")
    ap.add_argument("--latency", type=float, default=0.020, help="added round trip per request, seconds")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--cache", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        asyncio.run(_serve(args.serve, args.rate, args.latency))
        return 0
    if args.child:
        print(json.dumps(_child(args.child, args.url, args.cache)))
        return 0
    scale = args.scale if args.scale is not None else (0.025 if args.quick else 1.0)
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    info = machine_info(args.data_dir)
    print_machine(info)
    chosen = peers.installed([s for s in args.systems.split(",") if s])
    skipped = {s: "not installed" for s in args.systems.split(",") if s and s not in chosen}
    root, sizes = prepare(args.data_dir, scale, chosen)
    if "fastload" in chosen:  # the reference: what the link and server give a plain client, same run
        chosen = ["link", *chosen]
        sizes["link"] = sizes["fastload"]
    print(f"# link: {args.rate / 1e6:g} MB/s cap, {args.latency * 1e3:g} ms added per request; data "
          + ", ".join(f"{s} {sizes[s] / 1e6:.1f} MB" for s in chosen), flush=True)
    link = Link(root, args.rate, args.latency)
    caches = args.data_dir / "remote-cache"
    timeout = 60 if args.quick else 600

    def measure(system):
        def run():
            cache = caches / system
            shutil.rmtree(cache, ignore_errors=True)
            cold = _run_child(system, link.url, cache, timeout)
            warm = _run_child(system, link.url, cache, timeout) if "error" not in cold and system != "link" else cold
            shutil.rmtree(cache, ignore_errors=True)
            if "error" in cold:
                return {"error": cold["error"]}
            return {"cold_first_s": cold["first_batch_s"], "cold_s": cold["epoch_s"],
                    "warm_first_s": warm.get("first_batch_s", float("nan")), "warm_s": warm.get("epoch_s", float("nan")),
                    "cap_fraction": sizes[system] / cold["epoch_s"] / args.rate}
        return run

    try:
        results = interleaved({s: measure(s) for s in chosen}, repeats)
    finally:
        link.close()
    headers = ["system", "cold epoch s", "cold MB/s", "of cap", "of link", "first batch cold s", "warm epoch s",
               "first batch warm s"]
    rows = []
    link_runs = [r for r in results.get("link", []) if "error" not in r]
    link_rate = med([r["cap_fraction"] for r in link_runs]) if link_runs else None
    for s in chosen:
        runs = [r for r in results[s] if "error" not in r]
        if not runs:
            rows.append([s, "failed: " + results[s][0]["error"], "", "", "", "", "", ""])
            continue
        col = lambda k: [r[k] for r in runs]  # noqa: E731
        frac = med(col("cap_fraction"))
        of_link = f"{100 * frac / link_rate:.0f}%" if link_rate else "–"
        if s == "link":  # a plain download: no batches, no cache
            rows.append([f"link ({LINK_STREAMS} plain GETs at a time)", fmt_range(col("cold_s")),
                         f"{frac * args.rate / 1e6:.1f}", f"{100 * frac:.0f}%", "100%", "–", "–", "–"])
            continue
        rows.append([s, fmt_range(col("cold_s")), f"{frac * args.rate / 1e6:.1f}", f"{100 * frac:.0f}%", of_link,
                     fmt_range(col("cold_first_s")), fmt_range(col("warm_s")), fmt_range(col("warm_first_s"))])
    for s, why in skipped.items():
        rows.append([s, f"skipped: {why}", "", "", "", "", "", ""])
    print_table(headers, rows)
    write_json(args.json, {"benchmark": "remote", "headers": headers, "rows": rows, "results": results,
                           "sizes": sizes, "rate": args.rate, "latency": args.latency, "scale": scale,
                           "repeats": repeats, "command": info["command"], "machine": info,
                           "versions": info["versions"]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
