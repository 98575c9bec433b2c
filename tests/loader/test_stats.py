"""LoaderStats: the stall arithmetic on a scripted clock, the one-line log, and its cost."""

from __future__ import annotations

import logging
import time

import pytest

from fastload.loader.stats import LoaderStats

pytestmark = pytest.mark.timeout(30)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, t: float = 100.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_stall_rates_and_utilization_on_a_scripted_timeline():
    clock = Clock()
    stats = LoaderStats(clock=clock)
    stats.set_workers(2)
    # batch 0: asked at t=100, arrives at 101 (1 s stall); the consumer computes until 103
    clock.t = 101.0
    stats.record_batch(1.0, 64, 6400, {"read": 0.5}, busy_s=0.6)
    # batch 1: asked at 103, arrives at 103.5; batch 2: asked at 105.5, arrives at once, at 105.5
    clock.t = 103.5
    stats.record_batch(0.5, 64, 6400, {"read": 0.4, "decode": 0.1})
    clock.t = 105.5
    stats.record_batch(0.0, 32, 3200, {"read": 0.2}, busy_s=0.3, helped=True)  # the consumer gathered it
    stats.add_stage("transfer", 0.25)
    stats.add_skipped(2)
    clock.t = 500.0  # a snapshot long after the last batch does not dilute the rates
    s = stats.snapshot()
    assert s["wall_s"] == pytest.approx(5.5) and s["first_batch_s"] == 1.0
    assert s["stall_s"] == pytest.approx(1.5) and s["stall_pct"] == pytest.approx(100 * 1.5 / 5.5)
    assert (s["batches"], s["samples"], s["bytes"], s["skipped"]) == (3, 160, 16000, 2)
    assert s["batches_per_s"] == pytest.approx(3 / 5.5) and s["samples_per_s"] == pytest.approx(160 / 5.5)
    assert s["bytes_per_s"] == pytest.approx(16000 / 5.5)
    assert s["stages"] == pytest.approx({"read": 1.1, "decode": 0.1, "transfer": 0.25})
    assert s["worker_busy_s"] == pytest.approx(0.6 + 0.5 + 0.3)  # busy defaults to the stages' sum
    assert s["consumer_gather_s"] == pytest.approx(0.3)
    assert s["worker_utilization"] == pytest.approx(1.4 / 5.5 / 2)
    assert s["num_workers"] == 2


def test_empty_and_reset():
    stats = LoaderStats()
    empty = stats.snapshot()
    assert empty["batches"] == 0 and empty["wall_s"] == 0 and empty["stall_pct"] == 0
    assert empty["samples_per_s"] == 0 and empty["first_batch_s"] is None and empty["stages"] == {}
    stats.set_workers(4)
    stats.record_batch(0.1, 8, 80, {"read": 0.1})
    stats.reset()
    assert stats.snapshot() == {**empty, "num_workers": 4}


def test_zero_workers_count_the_consumer_thread():
    clock = Clock(0.0)
    stats = LoaderStats(clock=clock)
    clock.t = 2.0
    stats.record_batch(2.0, 10, 100, {"read": 2.0})
    assert stats.snapshot()["worker_utilization"] == pytest.approx(1.0)


def test_periodic_one_line_log(caplog):
    clock = Clock(0.0)
    stats = LoaderStats(log_every=10.0, clock=clock)
    with caplog.at_level(logging.INFO, logger="fastload.loader"):
        for t in range(1, 32):
            clock.t = float(t)
            stats.record_batch(0.5, 100, 1_000_000, {"read": 0.2})
    lines = [r.getMessage() for r in caplog.records if r.name == "fastload.loader"]
    assert len(lines) == 3  # at t = 10.5.., 20.5.., 30.5..: at most one per 10 s
    assert lines[0].startswith("stall ") and "batches/s" in lines[0] and "k samples/s" in lines[0]
    assert "MB/s" in lines[0] and "% busy" in lines[0]
    with pytest.raises(ValueError, match="log_every"):
        LoaderStats(log_every=0)


def test_recording_is_cheap():
    """A few microseconds per batch: under 1% of even a 1 ms batch."""
    stats = LoaderStats()
    timings = {"read": 0.001}
    n = 20_000
    t0 = time.perf_counter()
    for _ in range(n):
        stats.record_batch(0.0001, 64, 262_272, timings, 0.0012)
    per_batch = (time.perf_counter() - t0) / n
    assert per_batch < 10e-6, per_batch
