"""Pack 1M records locally and to S3: fastload's driver, Ray Data, Dask, MDSWriter and LitData ``optimize``.

The input is the benchmarks' small-records table (``bench/datasets.py``: 1,000,000 rows of id,
~200 B of text, label) cut into 10 Parquet files of one row group each, so every engine sees the
same 10 partitions. Each system writes 64 MB shards (MDS ``size_limit``, LitData ``chunk_bytes``)
to a local directory and to a bucket of moto's S3 server, run as its own process on 127.0.0.1.
Systems are interleaved (A, B, C, A, ...); before each run the input is read once (warm page
cache) and the previous output deleted (``sync``ed locally, objects deleted in the bucket). The
Ray cluster (``ray.init(num_cpus=2)``) and the Dask clusters (``LocalCluster`` of 1 and of 2
processes) are started once before timing; their start-up is reported apart. fastload's
distributed packs report where their tasks' time went (read, encode, upload, wait; summed over
tasks); for the single-machine driver the table gives reading the input alone and uploading
its output alone. A last section writes and opens the manifest of 100,000 shards committed from
1,000 task results.

    .venv-bench/bin/python -m bench.distributed_pack [--scale 0.1] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import datasets
from .common import (BENCH_HOME, DEFAULT_DATA_DIR, flush_and_remove, fmt_range, interleaved, machine_info, med,
                     print_machine, print_table, tree_bytes, warm, write_json)

SHARD = "64MB"
SHARD_BYTES = 64_000_000
PARTS = 10
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
}
BUCKET = "bench"


# -- input ---------------------------------------------------------------------------------------
def partitioned_records(data_dir: Path, scale: float) -> Path:
    """The records table as PARTS Parquet files of one row group each (cached)."""
    import pyarrow.parquet as pq

    src = datasets.records(data_dir, scale)
    folder = src.with_name(src.stem + f"-{PARTS}parts")
    if folder.is_dir():
        return folder
    tmp = Path(tempfile.mkdtemp(dir=data_dir))
    table = pq.read_table(src)
    step = -(-table.num_rows // PARTS)
    for k in range(PARTS):
        part = table.slice(k * step, step)
        pq.write_table(part, tmp / f"part-{k:02d}.parquet", row_group_size=max(1, part.num_rows))
    os.replace(tmp, folder)
    return folder


# -- the S3 server ---------------------------------------------------------------------------------
class MotoServer:
    """``moto_server`` in its own process (not a thread of the benchmark: it would share our GIL)."""

    def __init__(self):
        os.environ.update(S3_ENV)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        exe = Path(sys.executable).with_name("moto_server")
        self.proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.endpoint = f"http://127.0.0.1:{port}"
        os.environ["S3_ENDPOINT_URL"] = self.endpoint  # MosaicML Streaming
        os.environ["AWS_ENDPOINT_URL"] = self.endpoint  # boto3
        import boto3

        self.client = boto3.client("s3", endpoint_url=self.endpoint)
        for _ in range(100):
            try:
                self.client.create_bucket(Bucket=BUCKET)
                break
            except Exception:  # noqa: BLE001 - not listening yet
                time.sleep(0.1)
        self.storage_options = {"client_kwargs": {"endpoint_url": self.endpoint}}

    def clear(self, prefix: str = "") -> None:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        keys = [{"Key": o["Key"]} for page in pages for o in page.get("Contents", [])]
        for i in range(0, len(keys), 1000):
            self.client.delete_objects(Bucket=BUCKET, Delete={"Objects": keys[i : i + 1000]})

    def names_under(self, prefix: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return [o["Key"].rsplit("/", 1)[-1] for page in pages for o in page.get("Contents", [])]

    def bytes_under(self, prefix: str) -> int:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return sum(o["Size"] for page in pages for o in page.get("Contents", []))

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# -- the systems -----------------------------------------------------------------------------------
def fastload_driver(files: list[str], out: str, workers: int, s3: MotoServer | None) -> dict:
    import fastload

    fastload.pack(files[0].rsplit("/", 1)[0] + "/*.parquet", out, shard_size=SHARD, workers=workers,
                  progress=False, overwrite=True, storage_options=s3.storage_options if s3 else None)
    return {}


def ray_pack(files: list[str], out: str, workers: int, s3: MotoServer | None) -> dict:
    import ray

    import fastload.ray

    ds = ray.data.read_parquet(files, override_num_blocks=len(files))
    r = fastload.ray.pack_dataset(ds, out, concurrency=workers, shard_size=SHARD, overwrite=True,
                                  storage_options=s3.storage_options if s3 else None)
    return dict(r.stage_seconds)


def dask_pack(clients: dict):
    def run(files: list[str], out: str, workers: int, s3: MotoServer | None) -> dict:
        import dask.dataframe as dd

        import fastload.dask

        ddf = dd.read_parquet(files)
        r = fastload.dask.pack_collection(ddf, out, scheduler=clients[workers].get, shard_size=SHARD, overwrite=True,
                                          storage_options=s3.storage_options if s3 else None)
        return dict(r.stage_seconds)

    return run


def mds_pack(files: list[str], out: str, workers: int, s3: MotoServer | None) -> dict:
    import pyarrow.parquet as pq

    from .peers import import_streaming

    streaming = import_streaming()
    cols = {"id": "int64", "text": "str", "label": "int64"}
    target = (tempfile.mkdtemp(prefix="mds-"), out) if s3 else out
    try:
        with streaming.MDSWriter(out=target, columns=cols, size_limit=SHARD_BYTES) as w:
            for f in files:
                for b in pq.ParquetFile(f).iter_batches(batch_size=65_536):
                    for row in b.to_pylist():
                        w.write(row)
    finally:
        if s3:
            shutil.rmtree(target[0], ignore_errors=True)
    return {}


def _lit_rows(path):
    import pyarrow.parquet as pq

    yield from pq.read_table(path).to_pylist()


def litdata_pack(files: list[str], out: str, workers: int, s3: MotoServer | None) -> dict:
    import litdata
    from litdata.streaming import downloader

    # LitData uploads through obstore, which refuses plain HTTP unless told; moto speaks HTTP on
    # 127.0.0.1 (a benchmark-only setting, like bench.peers' torchvision workaround)
    downloader._OBSTORE_CLIENT_OPTIONS["allow_http"] = "true"

    litdata.optimize(fn=_lit_rows, inputs=files, output_dir=out, chunk_bytes=SHARD_BYTES, num_workers=workers,
                     start_method="fork", verbose=False, mode="overwrite")
    return {}


def read_only(files: list[str], out: str, workers: int, s3: MotoServer | None) -> dict:
    import pyarrow.parquet as pq

    for f in files:
        pq.read_table(f)
    return {}


def upload_only(local_copy: Path):
    def run(files: list[str], out: str, workers: int, s3: MotoServer | None) -> dict:
        """fastload's own output, already packed, uploaded as the remote pack does (4 at once)."""
        from fastload.pack.destination import RemoteDestination
        from fastload.pack.uploads import Uploader

        dest = RemoteDestination(out, s3.storage_options)
        up = Uploader(dest, threads=4, limit=1 << 40)
        tmp = Path(tempfile.mkdtemp(prefix="upload-only-"))
        try:
            for p in sorted(local_copy.iterdir()):
                shutil.copyfile(p, tmp / p.name)  # Uploader deletes what it publishes
                up.submit(tmp / p.name, p.name, p.stat().st_size)
            up.wait()
        finally:
            up.close()
            shutil.rmtree(tmp, ignore_errors=True)
        return {}

    return run


# -- the manifest of 100,000 shards ------------------------------------------------------------------
def manifest_scale(out: Path, tasks: int = 1000, per_task: int = 100, repeats: int = 5) -> dict:
    import fastload
    from fastload.format.schema import Schema
    from fastload.format.shard_writer import ShardInfo
    from fastload.pack import distributed

    plan = distributed.PartitionPlan.make(out, schema=Schema.parse("id:int64,text:str,label:int64"))
    results = [distributed.PartitionResult(
        t, [ShardInfo(distributed.partition_shard_name(t, k), 1000, 64_000_000, 64, f"{t * per_task + k:016x}")
            for k in range(per_task)], plan.schema.to_json()) for t in range(tasks)]
    shutil.rmtree(out, ignore_errors=True)
    distributed.start(plan, overwrite=True)
    t0 = time.perf_counter()
    manifest = distributed.commit(plan, results)
    commit_s = time.perf_counter() - t0
    opens = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ds = fastload.open(out)
        opens.append(time.perf_counter() - t0)
    assert len(ds) == tasks * per_task * 1000 and ds.n_shards == manifest.n_shards
    size = (out / "manifest.json").stat().st_size
    shutil.rmtree(out, ignore_errors=True)
    return {"shards": tasks * per_task, "tasks": tasks, "commit_s": commit_s, "open_s": opens, "bytes": size}


# -- main ------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--out-dir", type=Path, default=BENCH_HOME / "distpack-out")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the 1M records")
    ap.add_argument("--systems", default="read,upload,fastload,ray,dask,mds,litdata")
    ap.add_argument("--targets", default="local,s3")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    info = machine_info(a.data_dir)
    for name in ("ray", "dask", "distributed", "moto", "s3fs"):
        try:
            from importlib.metadata import version

            info["versions"][name] = version(name)
        except Exception:  # noqa: BLE001
            info["versions"][name] = None
    info.update(scale=a.scale, repeats=a.repeats)
    print_machine(info)
    a.data_dir.mkdir(parents=True, exist_ok=True)
    folder = partitioned_records(a.data_dir, a.scale)
    files = [str(p) for p in sorted(folder.glob("*.parquet"))]
    in_bytes = tree_bytes(folder)
    print(f"\n# input: {len(files)} Parquet files, {in_bytes / 1e6:.1f} MB", flush=True)
    chosen = a.systems.split(",")
    targets = a.targets.split(",")

    startup = {}
    s3 = MotoServer() if "s3" in targets else None
    clients = {}
    try:
        if "ray" in chosen:
            import ray

            t0 = time.perf_counter()
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
            startup["ray.init(num_cpus=2)"] = time.perf_counter() - t0
        if "dask" in chosen:
            from distributed import Client, LocalCluster

            for w in (1, 2):
                t0 = time.perf_counter()
                cluster = LocalCluster(n_workers=w, threads_per_worker=1, processes=True, dashboard_address=":0")
                clients[w] = Client(cluster, set_as_default=False)
                startup[f"dask LocalCluster({w} processes)"] = time.perf_counter() - t0
        if "mds" in chosen:
            from .peers import import_streaming

            import_streaming()
        if "litdata" in chosen:
            import litdata  # noqa: F401
        import fastload  # noqa: F401

        local_copy = a.out_dir / "fastload-reference"
        if "upload" in chosen:
            flush_and_remove(local_copy)
            fastload_driver(files, str(local_copy), 1, None)

        systems = {"read": (read_only, (1,)), "upload": (upload_only(local_copy), (4,)),
                   "fastload": (fastload_driver, (1, 2)), "ray": (ray_pack, (1, 2)),
                   "dask": (dask_pack(clients), (1, 2)), "mds": (mds_pack, (1,)), "litdata": (litdata_pack, (2,))}
        runs = {}
        for target in targets:
            for name in chosen:
                fn, counts = systems[name]
                if (name == "read" and target == "s3") or (name == "upload" and target == "local"):
                    continue
                for w in counts:
                    label = f"{name} w{w} -> {target}" if name not in ("read", "upload") else f"{name} only"
                    runs[label] = _runner(fn, files, w, target, name, a.out_dir, s3, in_bytes,
                                          datasets.scaled(datasets.RECORDS_ROWS, a.scale))

        # one untimed run of each engine first: Ray and Dask start and import in their workers on
        # first use (Ray's first write took 7-17 s more here)
        for label, run in runs.items():
            if label.startswith(("ray", "dask")) and label.endswith("local"):
                run()
        flush_and_remove(a.out_dir / "run")

        def before(label: str) -> None:
            flush_and_remove(a.out_dir / "run")
            if s3 is not None:
                s3.clear()
            warm([folder])

        results = interleaved(runs, a.repeats, before=before)
        flush_and_remove(a.out_dir)
        if s3 is not None:
            s3.clear()
        manifest = manifest_scale(a.out_dir / "manifest-100k")
    finally:
        for c in clients.values():
            c.close()
        if s3 is not None:
            s3.close()

    rows = []
    base = {}
    for label, rs in results.items():
        secs = [r["seconds"] for r in rs]
        key = label.split(" w")[0], label.rsplit("-> ", 1)[-1]
        w = int(label.split(" w")[1].split()[0]) if " w" in label else 1
        if w == 1:
            base[key] = med(secs)
        scaling = f"{base[key] / med(secs):.2f}" if w == 2 and key in base else ""
        stages = {k: med([r.get(k, 0.0) for r in rs]) for k in ("read_s", "encode_s", "upload_s", "wait_s")}
        where = ", ".join(f"{k[:-2]} {v:.2f}" for k, v in stages.items() if v) if any(stages.values()) else ""
        rows.append([label, fmt_range(secs), fmt_range([r["mb_in_s"] for r in rs]),
                     f"{med([r['records_s'] for r in rs]):,.0f}", f"{rs[0]['out_bytes'] / 1e6:.1f}",
                     str(rs[0]["files"] or ""), scaling, where])
    print()
    table = print_table(["system", "seconds", "MB/s in", "records/s", "MB out", "shards", "w2 speed-up",
                         "task seconds (summed): read, encode, upload, wait"], rows)
    print("\nstart-up (not in the times above): " + ", ".join(f"{k} {v:.1f} s" for k, v in startup.items()))
    print(f"manifest of {manifest['shards']:,} shards from {manifest['tasks']:,} task results: commit "
          f"{manifest['commit_s']:.2f} s, fastload.open {fmt_range(manifest['open_s'])} s, "
          f"{manifest['bytes'] / 1e6:.1f} MB")
    write_json(a.json, {"machine": info, "in_bytes": in_bytes, "results": results, "startup": startup,
                        "manifest": manifest, "table": table})
    return 0


def _runner(fn, files, workers, target, name, out_dir: Path, s3: MotoServer | None, in_bytes: int, records: int):
    label = f"{name}-w{workers}"

    def run() -> dict:
        out = f"s3://{BUCKET}/{label}" if target == "s3" else str(out_dir / "run" / label)
        if target != "s3":
            (out_dir / "run").mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        stages = fn(files, out, workers, s3 if target == "s3" else None)
        s = time.perf_counter() - t0
        names = s3.names_under(label) if target == "s3" else (os.listdir(out) if os.path.exists(out) else [])
        out_bytes = s3.bytes_under(label) if target == "s3" else (tree_bytes(out) if os.path.exists(out) else 0)
        shards = sum(1 for n in names if n.endswith((".fls", ".mds", ".bin")))
        return {"seconds": s, "mb_in_s": in_bytes / s / 1e6, "records_s": records / s, "out_bytes": out_bytes,
                "files": shards, **stages}

    return run


if __name__ == "__main__":
    sys.exit(main())
