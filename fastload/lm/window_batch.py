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
from ..plan.packing import CutIndex, PackingIndex


class WindowBatch:
    """The segments of windows ``windows`` of ``index``, in output order (planned by a Numba
    kernel: 6 us for 32 windows of 2048 tokens, against 90 us for the same in NumPy calls)."""

    def __init__(self, index: PackingIndex, windows: np.ndarray):
        from .._kernels.packing import plan_cut_windows, plan_windows  # Numba: packed datasets only

        self.n = len(windows)
        self.seq_len = index.seq_len
        if isinstance(index, CutIndex):
            pieces, *planned = plan_cut_windows(windows, index.bounds, index.seq_len, index.stride,
                                                int(index.separator))
            planned = [index.order.docs(pieces), *planned]  # the layout is computed, not stored
        else:
            planned = plan_windows(windows, index.ptr, index.doc, index.start, index.length, index.sep,
                                   index.ends, index.seq_len)
        self.doc, self.start, self.length, self.sep, self.window, self.ends, self.pad, bad = planned
        if bad >= 0:
            raise FormatError(f"packing index: window {int(windows[bad])} holds more than "
                              f"seq_len={self.seq_len} tokens (damaged index)")

    def spans(self) -> tuple[np.ndarray, np.ndarray]:
        """(spans, span_ptr): each window's runs of tokens that belong together, in order: a
        document's stretch with its separator, then the padding (when there is any); window b's
        spans are ``spans[span_ptr[b]:span_ptr[b + 1]]``."""
        n_seg = len(self.doc)
        cum = np.zeros(self.n + 1, dtype=np.int64)
        np.cumsum(np.bincount(self.window, minlength=self.n), out=cum[1:])
        vals = np.empty(n_seg + self.n, dtype=np.int64)
        vals[np.arange(n_seg) + self.window] = self.length + self.sep
        pad_at = cum[1:] + np.arange(self.n)
        vals[pad_at] = self.pad
        keep = np.ones(len(vals), dtype=bool)
        keep[pad_at] = self.pad > 0
        span_ptr = np.zeros(self.n + 1, dtype=np.int64)
        np.cumsum((cum[1:] - cum[:-1]) + (self.pad > 0), out=span_ptr[1:])
        return vals[keep], span_ptr

    def copy_list(self, doc_addr: np.ndarray, doc_bytes: np.ndarray, itemsize: int, sep: np.ndarray,
                  pad: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(addresses, byte counts, lower and upper bounds) of every piece of the batch's tokens,
        in output order; each piece lies inside [lower, upper), the buffer it is copied from.

        ``doc_addr``/``doc_bytes`` are each segment's document payload address and size; a segment
        reaching past its document, or ending it short of its size (an index, or the record sizes
        file it was built from, that does not belong to these documents), raises.
        ``sep`` holds the separator token, ``pad`` a window of padding tokens.
        """
        from .._kernels.packing import copy_list

        size = 2 * len(self.doc) + self.n
        addr, nbytes = np.empty(size, dtype=np.int64), np.empty(size, dtype=np.int64)
        lo, hi = np.empty(size, dtype=np.int64), np.empty(size, dtype=np.int64)
        j = copy_list(self.start, self.length, self.sep, self.window, self.ends, self.pad, doc_addr, doc_bytes,
                      itemsize, sep.ctypes.data, pad.ctypes.data, pad.nbytes, addr, nbytes, lo, hi)
        if j >= 0:
            as_end = " as its end" if self.ends[j] else ""
            raise FormatError(f"packing index: a window reads tokens {int(self.start[j])}..{int(self.start[j] + self.length[j])} "
                              f"of record {int(self.doc[j])}{as_end}, which holds {int(doc_bytes[j]) / itemsize:g} "
                              f"(the index, or the record sizes file it was built from, does not match the dataset)")
        return addr, nbytes, lo, hi
