"""IndexFeeder: a pure order drawn ahead in a thread, delivered whole, in order, errors in place."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from fastload.loader.index_feeder import IndexFeeder

pytestmark = pytest.mark.timeout(30)

END = object()


def drain(feeder) -> list:
    out = []
    while (b := feeder.take()) is not END:
        out.append(b)
    return out


@pytest.mark.parametrize("depth", [2, 3, 64])
def test_every_batch_in_order_whatever_the_depth(depth):
    batches = [np.arange(i, i + 4) for i in range(500)]
    feeder = IndexFeeder(iter(batches), depth, END)
    got = drain(feeder)
    feeder.close()
    assert len(got) == len(batches) and all(np.array_equal(g, b) for g, b in zip(got, batches))
    assert feeder.take() is END  # asked again: still the end, never a wait


def test_a_slow_order_is_waited_for_and_its_error_comes_at_its_place():
    def order():
        for i in range(3):
            time.sleep(0.02)
            yield i
        raise ValueError("the order broke after 3 batches")

    feeder = IndexFeeder(order(), 8, END)
    assert [feeder.take() for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="after 3 batches"):
        feeder.take()
    feeder.close()


def test_close_mid_way_stops_the_thread_and_closes_the_order():
    closed = threading.Event()

    def order():
        try:
            for i in range(10**9):
                yield i
        finally:
            closed.set()

    feeder = IndexFeeder(order(), 16, END)
    assert feeder.take() == 0
    feeder.close()
    assert not any(t.name == "fastload-indices" and t.is_alive() for t in threading.enumerate())
    assert closed.is_set()
