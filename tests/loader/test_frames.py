"""The hand-framed bytes on a worker process's pipes: tasks, stop, result envelopes, cut reads."""

from __future__ import annotations

import os

import pytest

from fastload.loader.frames import STOP_FRAME, FrameReader, result_frame, task_frame, write_all

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def pipe():
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


def test_tasks_and_stop_arrive_in_order_with_one_read(pipe):
    r, w = pipe
    os.write(w, task_frame(7, 2, 64) + task_frame(8, 0, 3) + STOP_FRAME)
    reader = FrameReader(r)
    reader.fill()
    assert list(reader.frames) == [(7, 2, 64), (8, 0, 3), None]


def test_results_round_trip_as_struct_or_pickle(pipe):
    r, w = pipe
    numbers = (5, 1, (3, 64, {}, {"read": 0.25}, 0.5, 2, None), None)
    with_text = (6, 0, (1, 64, {"text": ["a", "b"]}, {"read": 0.1}, 0.2, 0, None), None)
    failed = (7, 1, None, ("ValueError", "boom"))
    for env in (numbers, with_text, failed):
        write_all(w, result_frame(env))
    assert len(result_frame(numbers)) < len(result_frame(with_text))  # the common case is a fixed struct
    reader = FrameReader(r)
    while len(reader.frames) < 3:
        reader.fill()
    assert list(reader.frames) == [numbers, with_text, failed]


def test_a_frame_cut_by_a_read_waits_for_its_rest(pipe):
    r, w = pipe
    big = (9, 0, (0, 64, {"text": ["x" * 100_000]}, {"read": 0.0}, 0.0, 0, None), None)
    data = task_frame(1, 1, 1) + result_frame(big)
    reader = FrameReader(r)
    os.write(w, data[:40])
    reader.fill()
    assert list(reader.frames) == [(1, 1, 1)]
    reader.frames.clear()
    rest = memoryview(data)[40:]
    while rest:  # larger than the pipe: written and read in turns
        n = os.write(w, rest[:32_768])
        rest = rest[n:]
        reader.fill()
    assert list(reader.frames) == [big]


def test_the_writer_gone_mid_frame_is_eof(pipe):
    r, w = pipe
    os.write(w, task_frame(1, 1, 1)[:10])
    os.close(w)
    reader = FrameReader(r)
    reader.fill()
    assert not reader.frames
    with pytest.raises(EOFError):
        reader.fill()
