"""Straightforward pure-Python references for sequence packing, written independently of fastload's."""

from __future__ import annotations

import bisect

import numpy as np


def cut_reference(docs: list[np.ndarray], order, seq_len: int, separator, pad_id: int, tail: str,
                  stride: int | None = None) -> list[list[int]]:
    """Documents in `order`, each followed by the separator, concatenated and sliced into windows."""
    stream: list[int] = []
    for d in order:
        stream.extend(int(t) for t in docs[d])
        if separator is not None:
            stream.append(separator)
    stride = stride or seq_len
    windows, begin = [], 0
    while begin + seq_len <= len(stream):
        windows.append(stream[begin:begin + seq_len])
        begin += stride
    uncovered = (begin - stride + seq_len < len(stream)) if windows else len(stream) > 0
    if tail == "pad" and uncovered:
        rest = stream[begin:begin + seq_len]
        windows.append(rest + [pad_id] * (seq_len - len(rest)))
    return windows


def best_fit_fills(sizes: list[int], capacity: int) -> list[int]:
    """Best-fit decreasing with a sorted list of open rooms: each bin's fill, sorted."""
    fills: list[int] = []
    open_rooms: list[tuple[int, int]] = []  # (room, bin), sorted
    for s in sorted(sizes, reverse=True):
        k = bisect.bisect_left(open_rooms, (s, -1))
        if k == len(open_rooms):
            b, room = len(fills), capacity
            fills.append(0)
        else:
            room, b = open_rooms.pop(k)
        fills[b] += s
        if room - s > 0:
            bisect.insort(open_rooms, (room - s, b))
    return sorted(fills)
