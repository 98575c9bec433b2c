"""The shared download streams: at most N at once, granted by priority, cancellable."""

from __future__ import annotations

import threading
import time

import pytest

from fastload.storage.streams import Cancelled, StreamCap


def _download(cap, priority, ranges, served, hold=0.0, cancel=None):
    try:
        with cap.download(priority, ranges) as me:
            for _ in range(ranges):
                cap.acquire(me, cancel)
                served.append(priority)
                time.sleep(hold)
                cap.release()
    except Cancelled:
        served.append(("cancelled", priority))


def test_free_streams_go_to_the_first_needed_download_even_if_it_asks_later():
    cap, got = StreamCap(2), []
    with cap.download(1.0, 3) as first, cap.download(2.0, 1) as second:
        t = threading.Thread(target=lambda: (cap.acquire(second), got.append("second")))
        t.start()
        time.sleep(0.1)
        assert got == []  # two streams are free, but download 1 still has ranges to ask for
        for _ in range(3):
            cap.acquire(first)
            cap.release()
        t.join(5)
        assert got == ["second"]
        cap.release()


def test_waiters_are_served_by_priority_then_arrival():
    cap, served, threads = StreamCap(1), [], []
    with cap.download(0.0, 1) as holder:
        cap.acquire(holder)
        for priority in (5, 1, 3, 1):
            t = threading.Thread(target=_download, args=(cap, priority, 1, served))
            t.start()
            threads.append(t)
            time.sleep(0.05)  # arrival order fixed
        cap.release()
    for t in threads:
        t.join(5)
    assert served == [1, 1, 3, 5]


def test_never_more_than_n_at_once():
    """As the cache uses it: a download asks for its ranges back to back, each runs on its own
    thread and gives its stream back when it ends."""
    cap, lock = StreamCap(3), threading.Lock()
    now = most = 0

    def one_range():
        nonlocal now, most
        with lock:
            now += 1
            most = max(most, now)
        time.sleep(0.01)
        with lock:
            now -= 1
        cap.release()

    def download(priority):
        running = []
        with cap.download(priority, 4) as me:
            for _ in range(4):
                cap.acquire(me)
                running.append(threading.Thread(target=one_range))
                running[-1].start()
        for t in running:
            t.join(5)

    threads = [threading.Thread(target=download, args=(i % 3,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert most == 3 and now == 0


def test_a_cancelled_download_leaves_the_queue_and_the_next_is_served():
    cap, cancel, served = StreamCap(1), threading.Event(), []
    with cap.download(0.0, 1) as holder:
        cap.acquire(holder)
        first = threading.Thread(target=_download, args=(cap, 1, 2, served), kwargs={"cancel": cancel})
        first.start()
        time.sleep(0.05)
        second = threading.Thread(target=_download, args=(cap, 2, 1, served))
        second.start()
        time.sleep(0.05)
        cancel.set()
        first.join(5)
        cap.release()
    second.join(5)
    assert served == [("cancelled", 1), 2]


def test_at_least_one_stream():
    with pytest.raises(ValueError):
        StreamCap(0)
