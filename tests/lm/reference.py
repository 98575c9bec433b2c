"""Straightforward pure-Python references for sequence packing, written independently of fastload's."""

from __future__ import annotations

import bisect

import numpy as np


def cut_reference(docs: list[np.ndarray], order, seq_len: int, separator, pad_id: int, tail: str,
                  stride: int | None = None) -> list[list[int]]:
    """Documents in `order`, each followed by the separator, concatenated and sliced into windows."""
    return cut_reference_spans(docs, order, seq_len, separator, pad_id, tail, stride)[0]


def cut_reference_spans(docs, order, seq_len, separator, pad_id, tail, stride=None):
    """(windows, spans): the windows, and per window the lengths of its runs of one document
    (with its separator) and of its padding, in order."""
    stream: list[int] = []
    owner: list[int] = []  # which laid-out document each stream token belongs to
    for k, d in enumerate(order):
        piece = [int(t) for t in docs[d]] + ([separator] if separator is not None else [])
        stream.extend(piece)
        owner.extend([k] * len(piece))
    stride = stride or seq_len
    starts, begin = [], 0
    while begin + seq_len <= len(stream):
        starts.append(begin)
        begin += stride
    uncovered = (begin - stride + seq_len < len(stream)) if starts else len(stream) > 0
    if tail == "pad" and uncovered:
        starts.append(begin)
    windows, spans = [], []
    for a in starts:
        tokens, who = stream[a:a + seq_len], owner[a:a + seq_len]
        runs: list[int] = []
        for i, k in enumerate(who):
            if i and k == who[i - 1]:
                runs[-1] += 1
            else:
                runs.append(1)
        if len(tokens) < seq_len:
            runs.append(seq_len - len(tokens))
        windows.append(tokens + [pad_id] * (seq_len - len(tokens)))
        spans.append(runs)
    return windows, spans


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
