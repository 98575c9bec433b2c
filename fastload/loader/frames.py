"""The bytes on a worker process's pipes: batch tasks and result envelopes, framed by hand.

Each pipe has one writer and one reader. A frame is a 5-byte header (body length, kind) and its
body. A task is ``(seq, slot, n)``, its indices being in the slot's index array; a result is the
worker's envelope ``(seq, worker_id, payload, failure)``, sent as a fixed struct when it carries
only numbers (a batch of fixed fields, all in its slot: the common case) and pickled otherwise.

Why by hand: ``Connection.send_bytes``/``recv_bytes`` cost ~1.5 us a call in Python and two
``read`` calls a message; a frame here is one ``os.write``, and :class:`FrameReader` takes every
frame waiting in a pipe with one ``os.read``, which matters when a batch's whole hand-off must
stay within a few microseconds of a ~40 us gather.
"""

from __future__ import annotations

import os
import pickle
import struct
from collections import deque

HEADER = struct.Struct("<IB")  # body length, kind
TASK = struct.Struct("<qqq")  # seq, slot, n
RESULT = struct.Struct("<qqqqqdd")  # seq, worker_id, slot, n, skipped, busy seconds, read seconds
KIND_TASK, KIND_STOP, KIND_RESULT, KIND_PICKLE = 0, 1, 2, 3
_READ = 1 << 16


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` (a pipe write of up to 4 KiB is atomic; larger ones may be split)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def task_frame(seq: int, slot: int, n: int) -> bytes:
    return HEADER.pack(TASK.size, KIND_TASK) + TASK.pack(seq, slot, n)


STOP_FRAME = HEADER.pack(0, KIND_STOP)


def result_frame(env: tuple) -> bytes:
    """A worker's envelope: a struct when it holds only numbers, else its pickle."""
    seq, wid, payload, failure = env
    if failure is None:
        slot, n, cols, timings, busy, skipped, collated = payload
        if not cols and collated is None and len(timings) == 1 and "read" in timings:
            return HEADER.pack(RESULT.size, KIND_RESULT) + RESULT.pack(seq, wid, slot, n, skipped, busy,
                                                                       timings["read"])
    body = pickle.dumps(env, pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body), KIND_PICKLE) + body


def decode(kind: int, buf, start: int, stop: int):
    """The value of the frame body ``buf[start:stop]``: a task tuple, None for stop, or a result
    envelope."""
    if kind == KIND_TASK:
        return TASK.unpack_from(buf, start)
    if kind == KIND_RESULT:
        seq, wid, slot, n, skipped, busy, read = RESULT.unpack_from(buf, start)
        return seq, wid, (slot, n, {}, {"read": read}, busy, skipped, None), None
    if kind == KIND_PICKLE:
        return pickle.loads(buf[start:stop])
    if kind == KIND_STOP:
        return None
    raise ValueError(f"unknown frame kind {kind}")


class FrameReader:
    """Frames from one pipe's read end: :meth:`fill` takes what the pipe holds with one read.

    Complete frames wait in :attr:`frames` (in order); a frame cut by the read stays in the
    buffer until the rest arrives. EOF (the writer is gone) raises EOFError, also mid-frame.
    """

    __slots__ = ("fd", "frames", "_buf", "_need")

    def __init__(self, fd: int):
        self.fd = fd
        self.frames: deque = deque()
        self._buf = bytearray()
        self._need = 0  # bytes still missing from a frame cut by the last read

    def fill(self) -> None:
        """One read (blocking while the pipe is empty), then every complete frame decoded."""
        data = os.read(self.fd, max(_READ, self._need))
        if not data:
            raise EOFError("the pipe's writer is gone")
        buf = self._buf
        buf += data
        pos, end, self._need = 0, len(buf), 0
        while end - pos >= HEADER.size:
            length, kind = HEADER.unpack_from(buf, pos)
            stop = pos + HEADER.size + length
            if stop > end:
                self._need = stop - end
                break
            self.frames.append(decode(kind, buf, pos + HEADER.size, stop))
            pos = stop
        del buf[:pos]
