"""fastload.pack on Dask DataFrames and Bags, on a distributed.LocalCluster of 2 worker processes,
writing to a local directory and to moto's S3 server on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import threading

import dask
import dask.bag as db
import dask.dataframe as dd
import pytest
from distributed import Client, LocalCluster

import fastload
import fastload.dask
from fastload.errors import SchemaError

from .distributed_cases import OPTS, assert_equals_frame, files_of, objects, open_remote, source_frame
from .storage.proxy import S3Proxy
from .storage.servers import S3Server

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def s3():
    srv = S3Server()  # first: it sets the AWS variables the worker processes inherit
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def client(s3):
    # a killed worker fails its task at once (the default retries it on another worker)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
        c = Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def frame():
    return source_frame()


def test_round_trip_to_a_directory_and_to_s3(client, s3, frame, tmp_path):
    ddf = dd.from_pandas(frame, npartitions=4)
    report = fastload.pack(ddf, tmp_path / "ds", **OPTS)
    assert report.records == len(frame) and report.shards > 4 and report.workers == 2
    assert set(report.stage_seconds) == {"read_s", "encode_s", "upload_s", "wait_s"}
    local = fastload.open(tmp_path / "ds")
    assert_equals_frame(local, frame)
    assert local.manifest.shard_names[0] == "shard-000000-000000.fls"
    assert not [n for n in os.listdir(tmp_path / "ds") if n.startswith(".")]  # no staging left

    fastload.pack(ddf, "s3://data/dask", storage_options=s3.storage_options, **OPTS)
    assert_equals_frame(open_remote("s3://data/dask", s3, tmp_path), frame)
    assert objects(s3, "dask") == files_of(tmp_path / "ds")  # the same bytes wherever they go


def test_one_and_two_workers_write_the_same_bytes(client, frame, tmp_path):
    ddf = dd.from_pandas(frame, npartitions=5)
    fastload.pack(ddf, tmp_path / "two", **OPTS)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as one, \
            Client(one, set_as_default=False) as c1:
        fastload.dask.pack_collection(ddf, tmp_path / "one", scheduler=c1.get, **OPTS)
    assert files_of(tmp_path / "one") == files_of(tmp_path / "two")
    # the local schedulers write the same bytes too
    fastload.dask.pack_collection(ddf, tmp_path / "threads", scheduler="threads", **OPTS)
    assert files_of(tmp_path / "threads") == files_of(tmp_path / "two")


def test_bag_of_records(client, tmp_path):
    records = [{"k": i, "name": f"n{i}" * (i % 4)} for i in range(3000)]
    report = fastload.pack(db.from_sequence(records, npartitions=3), tmp_path / "bag", **OPTS)
    ds = fastload.open(tmp_path / "bag")
    assert report.records == 3000 and list(ds) == records


def test_a_local_output_gets_the_record_sizes_of_its_token_lists(tmp_path):
    from fastload.format.record_sizes import read_record_sizes

    records = [{"k": i, "tokens": list(range(i % 37))} for i in range(2000)]
    fastload.dask.pack_collection(db.from_sequence(records, npartitions=3), tmp_path / "bag", scheduler="threads",
                                  schema="k:int64,tokens:int32[-1]", **OPTS)
    ds = fastload.open(tmp_path / "bag")
    assert read_record_sizes(ds, "tokens").tolist() == [len(r["tokens"]) for r in records]


def test_partitions_that_disagree_on_the_schema_leave_no_dataset(client, tmp_path):
    parts = [dask.delayed(lambda k: [{"v": k}] if k else [{"v": "text"}])(k) for k in range(3)]
    with pytest.raises(SchemaError, match="partitions inferred different schemas"):
        fastload.pack(db.from_delayed(parts), tmp_path / "mixed")
    assert os.listdir(tmp_path / "mixed") == []
    fastload.pack(db.from_delayed(parts), tmp_path / "mixed", schema="v:json")  # one type for all: fine
    assert [r["v"] for r in fastload.open(tmp_path / "mixed")] == ["text", 1, 2]


def test_a_worker_killed_mid_write_leaves_no_dataset_and_the_rerun_completes(client, s3, frame, tmp_path):
    proxy = S3Proxy(s3.endpoint)
    try:
        ddf = dd.from_pandas(frame, npartitions=4)
        # the second shard of partition 2 never gets stored: that task stays in the middle of its write
        proxy.add("hold", path=r"/dask-killed/shard-000002-000001")
        box = []
        run = threading.Thread(target=lambda: box.append(_pack_or_error(ddf, proxy)))
        run.start()
        assert proxy.held.wait(60), "the write never reached the held upload"
        for pid in client.run(os.getpid).values():
            os.kill(pid, signal.SIGKILL)
        run.join(120)
        assert isinstance(box[0], Exception), box
        assert objects(s3, "dask-killed") == {}  # nothing visible, nothing left
        proxy.clear()
        client.wait_for_workers(2, timeout=60)
        report = fastload.pack(ddf, "s3://data/dask-killed", storage_options=proxy.storage_options, **OPTS)
        assert report.records == len(frame)
        assert_equals_frame(open_remote("s3://data/dask-killed", s3, tmp_path), frame)
    finally:
        proxy.close()


def _pack_or_error(ddf, proxy):
    try:
        return fastload.pack(ddf, "s3://data/dask-killed", storage_options=proxy.storage_options, timeout=120, **OPTS)
    except Exception as exc:  # noqa: BLE001 - the test checks what it was
        return exc


@pytest.mark.parametrize("module, extra", [("dask", "dask"), ("ray", "ray")])
def test_a_missing_engine_names_the_extra(monkeypatch, module, extra):
    import importlib
    import sys

    monkeypatch.setitem(sys.modules, module, None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, f"fastload.{module}", raising=False)
    with pytest.raises(ImportError, match=rf'pip install "fastload\[{extra}\]"'):
        importlib.import_module(f"fastload.{module}")


def test_a_local_pack_clears_what_a_killed_distributed_pack_left(tmp_path, frame):
    out = tmp_path / "ds"
    (out / ".partition-000003.tmp-123-abcdef12").mkdir(parents=True)  # a killed task's staging
    (out / ".partition-000003.tmp-123-abcdef12" / "shard-000000.fls").write_bytes(b"partial")
    (out / "shard-000003-000000.fls").write_bytes(b"from the failed run")
    fastload.pack(frame, out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "shard-000000.fls"]


def test_driver_only_options_are_refused_for_a_collection(tmp_path, frame):
    with pytest.raises(ValueError, match="workers apply to a single-machine pack, not to a Dask collection"):
        fastload.pack(dd.from_pandas(frame, npartitions=2), tmp_path / "x", workers=4)
    # names would silently stay as they are: refused, like every option the driver alone applies
    with pytest.raises(ValueError, match="rename apply to a single-machine pack, not to a Dask collection"):
        fastload.pack(dd.from_pandas(frame, npartitions=2), tmp_path / "y", rename={"a": "b"})
