"""fastload.ray: the Datasink and fastload.pack(ray_dataset) on a local Ray cluster of 2 CPUs (one
start per module), writing to a local directory and to moto's S3 server on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import threading
import time

import psutil
import pytest
import ray

import fastload
import fastload.ray

from .distributed_cases import OPTS, assert_equals_frame, files_of, objects, open_remote, source_frame
from .storage.proxy import S3Proxy
from .storage.servers import S3Server

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def s3():
    srv = S3Server()  # first: it sets the AWS variables Ray's workers inherit
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def cluster(s3):
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def frame():
    return source_frame()


def dataset(frame, blocks=4):
    return ray.data.from_pandas(frame).repartition(blocks)


def test_pack_and_datasink_round_trip_to_a_directory_and_to_s3(cluster, s3, frame, tmp_path):
    report = fastload.pack(dataset(frame), tmp_path / "ds", **OPTS)
    assert report.records == len(frame) and report.shards > 4
    local = fastload.open(tmp_path / "ds")
    assert_equals_frame(local, frame)
    assert local.manifest.shard_names[0] == "shard-000000-000000.fls"

    sink = fastload.ray.Datasink("s3://data/ray", storage_options=s3.storage_options, **OPTS)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    try:
        dataset(frame).write_datasink(sink)
    finally:
        context.execution_options.preserve_order = False
    assert sink.manifest.n_records == len(frame) and len(sink.results) == 4
    assert_equals_frame(open_remote("s3://data/ray", s3, tmp_path), frame)
    assert objects(s3, "ray") == files_of(tmp_path / "ds")


def test_one_and_two_workers_write_the_same_bytes(cluster, frame, tmp_path):
    fastload.ray.pack_dataset(dataset(frame, 5), tmp_path / "one", concurrency=1, **OPTS)
    fastload.ray.pack_dataset(dataset(frame, 5), tmp_path / "two", concurrency=2, **OPTS)
    assert files_of(tmp_path / "one") == files_of(tmp_path / "two")


def test_a_write_task_killed_mid_write_leaves_no_dataset_and_the_rerun_completes(cluster, s3, frame, tmp_path):
    proxy = S3Proxy(s3.endpoint)
    try:
        # the second shard of task 1 never gets stored: that task stays in the middle of its write
        proxy.add("hold", path=r"/ray-killed/shard-000001-000001")
        box = []
        run = threading.Thread(target=lambda: box.append(_pack_or_error(dataset(frame), proxy)))
        run.start()
        assert proxy.held.wait(90), "the write never reached the held upload"
        killed = _kill_write_tasks()
        assert killed
        run.join(120)
        assert isinstance(box[0], Exception), box
        assert objects(s3, "ray-killed") == {}  # on_write_failed removed what the tasks wrote
        proxy.clear()
        report = fastload.pack(dataset(frame), "s3://data/ray-killed", storage_options=proxy.storage_options, **OPTS)
        assert report.records == len(frame)
        assert_equals_frame(open_remote("s3://data/ray-killed", s3, tmp_path), frame)
    finally:
        proxy.close()


def _pack_or_error(ds, proxy):
    try:  # no retry of the killed task: the failure must reach on_write_failed
        return fastload.ray.pack_dataset(ds, "s3://data/ray-killed", storage_options=proxy.storage_options,
                                         timeout=120, ray_remote_args={"max_retries": 0}, **OPTS)
    except Exception as exc:  # noqa: BLE001 - the test checks what it was
        return exc


def _kill_write_tasks() -> list[int]:
    """Kill the Ray worker processes running a write task (Ray titles them ``ray::...Write...``)."""
    for _ in range(50):
        pids = [p.pid for p in psutil.process_iter(["cmdline"])
                if p.info["cmdline"] and p.info["cmdline"][0].startswith("ray::") and "Write" in p.info["cmdline"][0]]
        if pids:
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            return pids
        time.sleep(0.1)
    return []


def test_an_existing_dataset_is_refused_and_left_intact(cluster, frame, tmp_path):
    fastload.pack(dataset(frame, 2), tmp_path / "ds", **OPTS)
    before = files_of(tmp_path / "ds")
    with pytest.raises(fastload.OutputExistsError, match="already holds a finished dataset"):
        fastload.pack(dataset(frame, 2), tmp_path / "ds", **OPTS)
    assert files_of(tmp_path / "ds") == before  # on_write_failed did not touch it
