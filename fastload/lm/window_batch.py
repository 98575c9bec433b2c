"""One batch of packed windows, planned: its segments, its spans, and the copy list of its tokens.

Everything is vectorised over the batch's segments (a few per window), so planning a batch of
32 windows of 2048 tokens costs tens of microseconds whatever the documents' sizes. The tokens
are then copied by one native call: :func:`fastload._native.gather_var` takes the copy list
(address, bytes) in output order, where separators and padding are entries pointing at small
constant arrays, so a window's document pieces, separators and padding land back to back.
"""

from __future__ import annotations

import numpy as np

from ..errors import FormatError
from ..plan.packing import PackingIndex


class WindowBatch:
    """The segments of windows ``windows`` of ``index``, in output order."""

    def __init__(self, index: PackingIndex, windows: np.ndarray):
        ptr = index.ptr
        first, count = ptr[windows], ptr[windows + 1] - ptr[windows]
        self.n = len(windows)
        self.seq_len = index.seq_len
        self.cum = np.zeros(self.n + 1, dtype=np.int64)  # segments before each window of the batch
        np.cumsum(count, out=self.cum[1:])
        n_seg = int(self.cum[-1])
        seg = np.arange(n_seg, dtype=np.int64) - np.repeat(self.cum[:-1] - first, count)
        self.window = np.repeat(np.arange(self.n, dtype=np.int64), count)
        self.doc = np.asarray(index.doc[seg])
        self.start = np.asarray(index.start[seg])
        self.length = index.length[seg].astype(np.int64)
        self.sep = index.sep[seg].astype(np.int64)
        per_seg = np.zeros(n_seg + 1, dtype=np.int64)
        np.cumsum(self.length + self.sep, out=per_seg[1:])
        self.pad = self.seq_len - (per_seg[self.cum[1:]] - per_seg[self.cum[:-1]])
        if self.n and self.pad.min() < 0:
            raise FormatError(f"packing index: window {int(windows[np.argmin(self.pad)])} holds more than "
                              f"seq_len={self.seq_len} tokens (damaged index)")

    def spans(self) -> tuple[np.ndarray, np.ndarray]:
        """(spans, span_ptr): each window's runs of tokens that belong together, in order: a
        document's stretch with its separator, then the padding (when there is any); window b's
        spans are ``spans[span_ptr[b]:span_ptr[b + 1]]``."""
        n_seg = len(self.doc)
        vals = np.empty(n_seg + self.n, dtype=np.int64)
        vals[np.arange(n_seg) + self.window] = self.length + self.sep
        pad_at = self.cum[1:] + np.arange(self.n)
        vals[pad_at] = self.pad
        keep = np.ones(len(vals), dtype=bool)
        keep[pad_at] = self.pad > 0
        per_window = (self.cum[1:] - self.cum[:-1]) + (self.pad > 0)
        span_ptr = np.zeros(self.n + 1, dtype=np.int64)
        np.cumsum(per_window, out=span_ptr[1:])
        return vals[keep], span_ptr

    def copy_list(self, doc_addr: np.ndarray, doc_bytes: np.ndarray, itemsize: int, sep_addr: int,
                  pad_addr: int) -> tuple[np.ndarray, np.ndarray]:
        """(addresses, byte counts) of every piece of the batch's tokens, in output order.

        ``doc_addr``/``doc_bytes`` are each segment's document payload address and size; a segment
        reaching past its document (an index that does not belong to these documents) raises.
        """
        over = (self.start + self.length) * itemsize > doc_bytes
        if over.any():
            j = int(np.argmax(over))
            raise FormatError(f"packing index: a window reads tokens {int(self.start[j])}..{int(self.start[j] + self.length[j])} "
                              f"of record {int(self.doc[j])}, which holds {int(doc_bytes[j]) // itemsize} "
                              f"(the index does not match the dataset)")
        n_seg = len(self.doc)
        addr = np.full(2 * n_seg + self.n, pad_addr, dtype=np.int64)
        nbytes = np.zeros(2 * n_seg + self.n, dtype=np.int64)
        at = 2 * np.arange(n_seg, dtype=np.int64) + self.window  # each earlier window added a pad entry
        addr[at] = doc_addr + self.start * itemsize
        nbytes[at] = self.length * itemsize
        addr[at + 1] = sep_addr
        nbytes[at + 1] = self.sep * itemsize
        nbytes[2 * self.cum[1:] + np.arange(self.n)] = self.pad * itemsize
        return addr, nbytes
