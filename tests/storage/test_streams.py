"""The shared download streams: at most N at once, granted lowest priority first, cancellable."""

from __future__ import annotations

import threading
import time

import pytest

from fastload.storage.streams import Cancelled, StreamCap


def test_waiters_are_served_by_priority_then_arrival():
    cap = StreamCap(1)
    cap.acquire(0)  # held: everyone below waits
    served, threads = [], []
    for priority in (5, 1, 3, 1):
        t = threading.Thread(target=lambda p=priority: (cap.acquire(p), served.append(p), cap.release()))
        t.start()
        threads.append(t)
        time.sleep(0.05)  # arrival order fixed
    cap.release()
    for t in threads:
        t.join(5)
    assert served == [1, 1, 3, 5]


def test_never_more_than_n_at_once():
    cap, lock = StreamCap(3), threading.Lock()
    now = most = 0

    def work(p):
        nonlocal now, most
        cap.acquire(p)
        with lock:
            now += 1
            most = max(most, now)
        time.sleep(0.01)
        with lock:
            now -= 1
        cap.release()

    threads = [threading.Thread(target=work, args=(i % 4,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert most == 3


def test_a_cancelled_waiter_leaves_the_queue_and_the_next_is_served():
    cap, cancel = StreamCap(1), threading.Event()
    cap.acquire(0)
    outcome = []
    first = threading.Thread(target=lambda: outcome.append(_try(cap, 1, cancel)))
    first.start()
    time.sleep(0.05)
    second = threading.Thread(target=lambda: outcome.append(_try(cap, 2, None)))
    second.start()
    time.sleep(0.05)
    cancel.set()
    first.join(5)
    cap.release()
    second.join(5)
    assert outcome == ["cancelled", "served"]


def _try(cap, priority, cancel):
    try:
        cap.acquire(priority, cancel)
    except Cancelled:
        return "cancelled"
    cap.release()
    return "served"


def test_at_least_one_stream():
    with pytest.raises(ValueError):
        StreamCap(0)
