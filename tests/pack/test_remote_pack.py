"""``fastload pack`` from and to object storage: moto's S3 server (and an HTTP server) on 127.0.0.1,
with a proxy in front that fails or holds chosen requests."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fastload
from fastload._cli import main
from fastload.errors import OutputExistsError, SourceError, StorageError
from fastload.pack.sources.megatron import HEADER, MAGIC

from ..storage.proxy import S3Proxy
from ..storage.servers import S3Server, StaticServer

PEERS = Path(__file__).parents[1] / "data" / "peers"
N = 20_000
SMALL = {"shard_size": "150KB", "block_size": "16KB", "progress": False}


@pytest.fixture(scope="module")
def s3():
    srv = S3Server()
    yield srv
    srv.close()


@pytest.fixture
def proxy(s3):
    px = S3Proxy(s3.endpoint)
    yield px
    px.close()


@pytest.fixture(scope="module")
def table() -> pa.Table:
    rng = np.random.default_rng(7)
    return pa.table({"id": np.arange(N, dtype=np.int64),
                     "text": [f"record {i} " + "x" * int(k) for i, k in enumerate(rng.integers(0, 40, N))],
                     "score": rng.random(N)})


@pytest.fixture(scope="module")
def raw(tmp_path_factory, s3, table) -> Path:
    """The same rows as Parquet, JSON Lines (plain and gzip), CSV, .npy and a WebDataset tar, on
    disk and uploaded under ``s3://data/raw/``."""
    root = tmp_path_factory.mktemp("raw")
    pq.write_table(table, root / "part-0.parquet", row_group_size=4000)
    pq.write_table(table.slice(0, 5000), root / "part-1.parquet")
    rows = table.slice(0, 4000).to_pylist()
    lines = "".join(json.dumps(r) + "\n" for r in rows).encode()
    (root / "rows.jsonl").write_bytes(lines)
    (root / "rows.jsonl.gz").write_bytes(gzip.compress(lines))
    (root / "rows.csv").write_text("id,score\n" + "".join(f"{r['id']},{r['score']!r}\n" for r in rows))
    np.save(root / "tokens.npy", np.arange(2000 * 16, dtype=np.uint16).reshape(2000, 16))
    with tarfile.open(root / "shard-0.tar", "w") as tar:
        for i in range(50):
            for ext, data in (("txt", f"sample {i}".encode()), ("cls", str(i % 3).encode())):
                info = tarfile.TarInfo(f"{i:05d}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    from PIL import Image

    for k in range(12):  # an image folder: 3 classes, a hidden file, a file outside the classes
        img = Image.fromarray(np.full((8 + k, 10, 3), k * 20, np.uint8))
        (root / "images" / f"class{k % 3}").mkdir(parents=True, exist_ok=True)
        img.save(root / "images" / f"class{k % 3}" / f"{k:03d}.{'png' if k % 2 else 'jpg'}")
    (root / "images" / "class0" / ".hidden.jpg").write_bytes(b"not an image")
    (root / "images" / "README.txt").write_text("not a class")
    # a Megatron .bin/.idx pair (MMIDIDX v1, uint16): 40 sequences in 8 documents, back to back
    lengths = np.arange(1, 41, dtype=np.int32)
    tokens = np.arange(int(lengths.sum()), dtype=np.uint16)
    pointers = np.concatenate([[0], np.cumsum(lengths[:-1]) * 2]).astype(np.int64)
    docs = np.arange(0, 41, 5, dtype=np.int64)
    head = HEADER.pack(MAGIC, 1, 8, len(lengths), len(docs))
    (root / "mega.idx").write_bytes(head + lengths.tobytes() + pointers.tobytes() + docs.tobytes())
    (root / "mega.bin").write_bytes(tokens.tobytes())
    import datasets

    datasets.Dataset.from_dict({"n": list(range(500)), "label": [i % 2 for i in range(500)]},
                               features=datasets.Features({"n": datasets.Value("int64"),
                                                           "label": datasets.ClassLabel(names=["no", "yes"])})
                               ).save_to_disk(str(root / "hf"))
    for peer in ("mds", "mds_zstd", "litdata", "litdata_tokens"):  # other tools' datasets (tests/data)
        shutil.copytree(PEERS / peer, root / peer, ignore=shutil.ignore_patterns("expected.json"))
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        key = p.relative_to(root).as_posix()
        s3.client.put_object(Bucket=s3.bucket, Key=f"raw/{key}", Body=p.read_bytes())
    return root


def same_files(a: Path, b: dict[str, bytes] | Path) -> None:
    want = {p.name: p.read_bytes() for p in sorted(a.iterdir())}
    got = b if isinstance(b, dict) else {p.name: p.read_bytes() for p in sorted(b.iterdir())}
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name] == want[name], name


def objects(s3: S3Server, prefix: str) -> dict[str, bytes]:
    listing = s3.client.list_objects_v2(Bucket=s3.bucket, Prefix=prefix + "/").get("Contents", [])
    return {o["Key"].rsplit("/", 1)[1]: s3.client.get_object(Bucket=s3.bucket, Key=o["Key"])["Body"].read()
            for o in listing}


@pytest.mark.parametrize("name", ["part-*.parquet", "rows.jsonl", "rows.jsonl.gz", "rows.csv", "tokens.npy",
                                  "shard-0.tar", "images", "mds", "mds_zstd", "litdata", "litdata_tokens",
                                  "hf", "mega.*"])
def test_remote_input_packs_the_same_bytes_as_the_local_file(s3, raw, tmp_path, name):
    local = fastload.pack(str(raw / name), tmp_path / "local", **SMALL)
    remote = fastload.pack(f"s3://data/raw/{name}", tmp_path / "remote", storage_options=s3.storage_options, **SMALL)
    assert remote.records == local.records > 0
    same_files(tmp_path / "local", tmp_path / "remote")


def test_remote_to_remote_pack_equals_the_source_and_a_local_pack(s3, raw, table, tmp_path):
    report = fastload.pack("s3://data/raw/part-0.parquet", "s3://data/r2r", storage_options=s3.storage_options,
                           staging_dir=tmp_path / "staging", **SMALL)
    assert report.out == "s3://data/r2r" and report.records == N and report.shards > 5
    fastload.pack(str(raw / "part-0.parquet"), tmp_path / "local", **SMALL)
    same_files(tmp_path / "local", objects(s3, "r2r"))
    assert list((tmp_path / "staging").iterdir()) == []  # staging is emptied
    ds = fastload.open("s3://data/r2r", storage_options=s3.storage_options, cache_dir=tmp_path / "cache")
    assert [ds[i] for i in (0, 1, N - 1)] == [table.slice(i, 1).to_pylist()[0] for i in (0, 1, N - 1)]
    got = ds.get_batch(np.arange(N))
    assert got["text"] == table.column("text").to_pylist()  # the reference: pyarrow's own reading


def test_http_input(raw, tmp_path):
    srv = StaticServer(raw)
    try:
        fastload.pack(f"{srv.url}/part-1.parquet", tmp_path / "http", **SMALL)
    finally:
        srv.close()
    fastload.pack(str(raw / "part-1.parquet"), tmp_path / "local", **SMALL)
    same_files(tmp_path / "local", tmp_path / "http")


def test_remote_input_errors_name_the_url(s3, raw, tmp_path, proxy):
    with pytest.raises(SourceError, match="no files match"):
        fastload.pack("s3://data/raw/*.feather", tmp_path / "a", storage_options=s3.storage_options, **SMALL)
    with pytest.raises(SourceError, match="does not exist"):
        fastload.pack("s3://data/raw/nothing.parquet", tmp_path / "b", storage_options=s3.storage_options, **SMALL)
    proxy.add("fail", method="GET", path=r"/raw/part-0\.parquet")  # every read of the file fails
    with pytest.raises(StorageError, match=r"cannot read s3://data/raw/part-0.parquet after 2 attempts"):
        fastload.pack("s3://data/raw/part-0.parquet", tmp_path / "c", storage_options=proxy.storage_options,
                      retries=2, timeout=5, **SMALL)


def test_an_upload_failing_part_way_resumes_keeping_the_stored_shards(s3, raw, tmp_path, proxy):
    out = "s3://data/resume"
    proxy.add("fail", path=r"/resume/shard-", skip=4)  # the store stops taking shards after 4
    with pytest.raises(StorageError, match="cannot upload s3://data/resume/shard-"):
        fastload.pack(str(raw / "part-0.parquet"), out, storage_options=proxy.storage_options, retries=2,
                      timeout=5, uploads=2, staging_dir=tmp_path / "staging", **SMALL)
    left = objects(s3, "resume")
    assert "manifest.json" not in left  # no dataset is visible
    with pytest.raises(StorageError, match="manifest.json: FileNotFoundError"):
        fastload.open(out, storage_options=s3.storage_options, cache_dir=tmp_path / "cache")
    journal = json.loads(left[".fastload-pack.json"])
    kept = [s["name"] for s in journal["shards"]]
    assert 1 <= len(kept) <= 4 and all(left[n] for n in kept)
    assert list((tmp_path / "staging").iterdir()) == []

    proxy.clear()
    before = len(proxy.forwarded)
    report = fastload.pack(str(raw / "part-0.parquet"), out, storage_options=proxy.storage_options,
                           uploads=2, **SMALL)
    assert report.resumed_shards == len(kept)
    uploaded = {p.rsplit("/", 1)[1] for m, p in proxy.forwarded[before:] if m == "PUT"}
    assert not uploaded & set(kept)  # the stored shards were checked, not uploaded again
    fastload.pack(str(raw / "part-0.parquet"), tmp_path / "local", **SMALL)
    same_files(tmp_path / "local", objects(s3, "resume"))


def test_transient_upload_faults_are_retried(s3, raw, tmp_path, proxy):
    proxy.add("fail", path=r"/flaky/shard-0000[0-9][13579]", times=3)
    proxy.add("reset", path=r"/flaky/shard-0000[0-9][02468]", skip=1, times=2)
    fastload.pack(str(raw / "part-0.parquet"), "s3://data/flaky", storage_options=proxy.storage_options,
                  retries=3, timeout=10, **SMALL)
    assert sum(r.applied for r in proxy.rules) == 5
    fastload.pack(str(raw / "part-0.parquet"), tmp_path / "local", **SMALL)
    same_files(tmp_path / "local", objects(s3, "flaky"))


def test_staging_space_is_bounded(s3, raw, tmp_path, proxy):
    proxy.add("delay", path=r"/bounded/shard-", seconds=0.15)  # a store slower than encoding
    staging = tmp_path / "staging"
    peak, stop = [0], threading.Event()

    def watch():
        while not stop.is_set():
            used = sum(p.stat().st_size for p in staging.rglob("*") if p.is_file()) if staging.exists() else 0
            peak[0] = max(peak[0], used)
            time.sleep(0.005)

    t = threading.Thread(target=watch)
    t.start()
    try:
        fastload.pack(str(raw / "part-0.parquet"), "s3://data/bounded", storage_options=proxy.storage_options,
                      staging_dir=staging, staging_limit="250KB", uploads=2, **SMALL)
    finally:
        stop.set()
        t.join()
    # finished shards waiting (<= the limit, or one shard) plus the shard being written
    assert 0 < peak[0] <= 250_000 + 2 * 150_000


def test_an_existing_remote_dataset_is_refused_unless_overwrite(s3, raw, tmp_path):
    opts = {"storage_options": s3.storage_options, **SMALL}
    fastload.pack(str(raw / "part-1.parquet"), "s3://data/exists", **opts)
    with pytest.raises(OutputExistsError, match="already holds a finished dataset"):
        fastload.pack(str(raw / "part-1.parquet"), "s3://data/exists", **opts)
    fastload.pack(str(raw / "part-0.parquet"), "s3://data/exists", overwrite=True, **opts)
    ds = fastload.open("s3://data/exists", storage_options=s3.storage_options, cache_dir=tmp_path / "c")
    assert len(ds) == N
    assert not any(k.startswith(".") for k in objects(s3, "exists"))
    s3.client.put_object(Bucket=s3.bucket, Key="other/notes.txt", Body=b"mine")
    with pytest.raises(OutputExistsError, match="not empty"):
        fastload.pack(str(raw / "part-1.parquet"), "s3://data/other", **opts)


def test_cli_packs_remote_to_remote(s3, raw, tmp_path, capsys):
    code = main(["pack", "s3://data/raw/part-1.parquet", "s3://data/cli", "--no-progress", "--shard-size", "150KB",
                 "--block-size", "16KB", "--storage-options", json.dumps(s3.storage_options),
                 "--timeout", "20", "--retries", "3", "--uploads", "2", "--staging-limit", "1MB"])
    assert code == 0, capsys.readouterr().err
    assert "into     s3://data/cli" in capsys.readouterr().out
    fastload.pack(str(raw / "part-1.parquet"), tmp_path / "local", **SMALL)
    same_files(tmp_path / "local", objects(s3, "cli"))


def test_large_files_go_up_as_parallel_multipart_uploads(s3, proxy, tmp_path):
    from fastload.pack.destination import RemoteDestination

    data = np.random.default_rng(3).integers(0, 256, 12 << 20, dtype=np.uint8).tobytes()
    path = tmp_path / "big.fls"
    path.write_bytes(data)
    dest = RemoteDestination("s3://data/multipart", proxy.storage_options, part_bytes=5 << 20, part_concurrency=3)
    dest.publish(path, "big.fls", len(data))
    parts = [p for m, p in proxy.forwarded if m == "PUT" and "partNumber=" in p]
    assert len(parts) == 3  # 5 + 5 + 2 MiB
    assert s3.client.get_object(Bucket=s3.bucket, Key="multipart/big.fls")["Body"].read() == data
    assert dest.list() == {"big.fls": len(data)}


def test_a_killed_runs_unfinished_multipart_uploads_are_aborted(s3, raw, tmp_path):
    left = s3.client.create_multipart_upload(Bucket=s3.bucket, Key="parts/shard-000001.fls")
    s3.client.upload_part(Bucket=s3.bucket, Key="parts/shard-000001.fls", PartNumber=1,
                          UploadId=left["UploadId"], Body=b"x" * (5 << 20))
    elsewhere = s3.client.create_multipart_upload(Bucket=s3.bucket, Key="other-prefix/big.bin")
    fastload.pack(str(raw / "part-1.parquet"), "s3://data/parts", storage_options=s3.storage_options, **SMALL)
    pending = s3.client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads", [])
    assert [u["UploadId"] for u in pending] == [elsewhere["UploadId"]]  # only ours went
