"""Sequence packing kernels: best-fit bin assignment, and the per-batch outputs of packed windows.

``best_fit`` is the one sequential step of building a packing index (each placement depends on
the bins before it); the per-batch kernels turn a batch's spans (documents' stretches, separators
included, and the padding at the end of a window, in order) into position ids and attention
masks, writing into the given ``out``.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def _first_at_least(tree, leaves, s):
    """Smallest capacity c >= s with a bin left (count tree over capacities), or -1."""
    i = s + leaves
    if tree[i] > 0:
        return s
    while i > 1:  # climb until a right sibling holds a bin
        if i % 2 == 0 and tree[i + 1] > 0:
            i += 1
            break
        i //= 2
    if i == 1:
        return -1
    while i < leaves:  # then descend to its leftmost non-empty leaf
        i = 2 * i if tree[2 * i] > 0 else 2 * i + 1
    return i - leaves


@njit(nogil=True, cache=True)
def _add(tree, leaves, c, delta):
    i = c + leaves
    while i >= 1:
        tree[i] += delta
        i //= 2


@njit(nogil=True, cache=True)
def best_fit(sizes, capacity, bin_of):
    """Place items of ``sizes`` (in this order) each into the open bin with the least room that
    still holds it, or a new bin; writes each item's bin into ``bin_of``, returns the bin count.

    Bins with the same room are taken last-opened first. O(items * log(capacity)): a count tree
    over the possible rooms finds the best bin, and one linked list per room holds its bins.
    """
    leaves = 1
    while leaves < capacity + 1:
        leaves *= 2
    tree = np.zeros(2 * leaves, np.int64)
    head = np.full(capacity + 1, -1, np.int64)
    nxt = np.empty(len(sizes), np.int64)
    n_bins = 0
    for i in range(len(sizes)):
        s = sizes[i]
        c = _first_at_least(tree, leaves, s) if s <= capacity else -1
        if c < 0:
            b = n_bins
            n_bins += 1
            room = capacity - s
        else:
            b = head[c]
            head[c] = nxt[b]
            _add(tree, leaves, c, -1)
            room = c - s
        bin_of[i] = b
        if room > 0:
            nxt[b] = head[room]
            head[room] = b
            _add(tree, leaves, room, 1)
    return n_bins


@njit(nogil=True, cache=True)
def fill_positions(spans, out):
    """Positions restarting at 0 at each span: ``out`` (flat) holds sum(spans) values."""
    t = 0
    for s in range(len(spans)):
        for i in range(spans[s]):
            out[t + i] = i
        t += spans[s]


@njit(nogil=True, cache=True)
def fill_block_causal(spans, span_ptr, out):
    """``out[b, q, k]`` is True where key k is at or before query q in the same span of window b:
    a causal mask, block-diagonal per document (Megatron's reset attention mask)."""
    for b in range(out.shape[0]):
        out[b] = False
        t = 0
        for s in range(span_ptr[b], span_ptr[b + 1]):
            n = spans[s]
            for i in range(n):
                out[b, t + i, t:t + i + 1] = True
            t += n


@njit(nogil=True, cache=True)
def _segment_arrays(n_segments, n_windows):
    """Segment documents, starts, lengths, separator flags, windows, end-of-document flags; and
    each window's padding."""
    return (np.empty(n_segments, np.int64), np.empty(n_segments, np.int64), np.empty(n_segments, np.int64),
            np.empty(n_segments, np.int64), np.empty(n_segments, np.int64), np.empty(n_segments, np.uint8),
            np.empty(n_windows, np.int64))


@njit(nogil=True, cache=True)
def plan_windows(windows, ptr, doc, start, length, sep, ends, seq_len):
    """The segments of a batch of windows, in output order, and each window's padding.

    Returns (seg_doc, seg_start, seg_len, seg_sep, seg_window, seg_end, pad, bad): ``seg_end``
    marks a segment that ends its document; ``bad`` is the first window holding more than
    ``seq_len`` tokens (a damaged index), or -1.
    """
    n = len(windows)
    total = 0
    for b in range(n):
        total += ptr[windows[b] + 1] - ptr[windows[b]]
    seg_doc, seg_start, seg_len, seg_sep, seg_window, seg_end, pad = _segment_arrays(total, n)
    j = 0
    for b in range(n):
        fill = 0
        for s in range(ptr[windows[b]], ptr[windows[b] + 1]):
            seg_doc[j] = doc[s]
            seg_start[j] = start[s]
            seg_len[j] = length[s]
            seg_sep[j] = sep[s]
            seg_window[j] = b
            seg_end[j] = ends[s]
            fill += length[s] + sep[s]
            j += 1
        pad[b] = seq_len - fill
        if pad[b] < 0:
            return seg_doc, seg_start, seg_len, seg_sep, seg_window, seg_end, pad, b
    return seg_doc, seg_start, seg_len, seg_sep, seg_window, seg_end, pad, -1


@njit(nogil=True, cache=True)
def copy_list(seg_start, seg_len, seg_sep, seg_window, seg_end, pad, doc_addr, doc_bytes, itemsize, sep_addr,
              pad_addr, pad_bytes, addr, nbytes, lo, hi):
    """Fill (addr, nbytes) with every piece of the batch's tokens in output order: per segment its
    document stretch then its separator (0 bytes if none), per window its padding after its
    segments; and (lo, hi), the buffer each piece must lie in (its document's payload, the
    separator, the padding row), which the native copy checks again. Returns the first segment
    reaching past its document's ``doc_bytes``, or ending its document (``seg_end``) short of
    them (lengths planned from a record sizes file or an index that miscount it), or -1."""
    k = 0
    j = 0
    for b in range(len(pad)):
        while j < len(seg_window) and seg_window[j] == b:
            end = (seg_start[j] + seg_len[j]) * itemsize
            if seg_start[j] < 0 or seg_len[j] < 0 or end > doc_bytes[j] or (seg_end[j] and end != doc_bytes[j]):
                return j
            addr[k] = doc_addr[j] + seg_start[j] * itemsize
            nbytes[k] = seg_len[j] * itemsize
            lo[k] = doc_addr[j]
            hi[k] = doc_addr[j] + doc_bytes[j]
            addr[k + 1] = sep_addr
            nbytes[k + 1] = seg_sep[j] * itemsize
            lo[k + 1] = sep_addr
            hi[k + 1] = sep_addr + itemsize
            k += 2
            j += 1
        addr[k] = pad_addr
        nbytes[k] = pad[b] * itemsize
        lo[k] = pad_addr
        hi[k] = pad_addr + pad_bytes
        k += 1
    return -1


@njit(nogil=True, cache=True)
def plan_cut_windows(windows, bounds, seq_len, stride, separator):
    """The segments of a batch of "cut" windows: piece k (the k-th document laid out, then the
    separator when ``separator``) spans stream ``[bounds[k], bounds[k + 1])``; window w spans
    ``[w * stride, w * stride + seq_len)`` of the stream, clipped to its end, then padding.

    Returns the same tuple as :func:`plan_windows` except that the first array holds each
    segment's *piece* (the caller maps pieces to records through the layout); ``bad`` is always
    -1: the bounds are checked when the index is opened.
    """
    n = len(windows)
    pieces = len(bounds) - 1
    total = bounds[pieces]
    first = np.empty(n, np.int64)
    count = 0
    for b in range(n):
        begin = windows[b] * stride
        end = min(begin + seq_len, total)
        k = np.searchsorted(bounds, begin, side="right") - 1
        first[b] = k
        while k < pieces and bounds[k] < end:
            count += 1
            k += 1
    seg_piece, seg_start, seg_len, seg_sep, seg_window, seg_end, pad = _segment_arrays(count, n)
    j = 0
    for b in range(n):
        begin = windows[b] * stride
        end = min(begin + seq_len, total)
        k = first[b]
        fill = 0
        while k < pieces and bounds[k] < end:
            piece = bounds[k + 1] - bounds[k]
            doc_len = piece - separator
            lo = max(begin - bounds[k], 0)
            hi = min(end - bounds[k], piece)
            start = min(lo, doc_len)
            length = min(hi, doc_len) - start
            sep = 1 if (separator and hi > doc_len) else 0
            if length > 0 or sep:
                seg_piece[j] = k
                seg_start[j] = start
                seg_len[j] = length
                seg_sep[j] = sep
                seg_window[j] = b
                seg_end[j] = 1 if hi >= doc_len else 0
                fill += length + sep
                j += 1
            k += 1
        pad[b] = seq_len - fill
    return seg_piece[:j], seg_start[:j], seg_len[:j], seg_sep[:j], seg_window[:j], seg_end[:j], pad, -1
