"""Sequence packing: documents of variable length -> windows of ``seq_len`` tokens, as segments.

A packing index says, for every window, which stretches of which documents fill it, in order:
segment ``j`` is ``length[j]`` tokens of dataset record ``doc[j]`` from token ``start[j]``,
followed by one separator token when ``sep[j]``; window ``w`` is the segments
``ptr[w]:ptr[w + 1]``, then padding up to ``seq_len``. One representation serves both policies:

* ``"cut"`` (Megatron's): the documents, in a keyed shuffled order, are laid end to end (each
  followed by the separator when there is one) and cut every ``stride`` tokens (``seq_len`` by
  default; ``seq_len - 1`` gives Megatron's windows that share one token, for shifted labels).
  The last partial window is dropped (``tail="drop"``) or padded (``tail="pad"``).
* ``"best-fit"``: no document is cut unless it is longer than a window (then it is cut into
  ``seq_len`` pieces and the rest packed like a document). Pieces are packed best-fit decreasing
  (largest first, each into the window with the least room that still holds it), and each window
  is padded to ``seq_len``. The bin assignment is the Numba kernel in ``fastload/_kernels``;
  this module prepares its input and assembles its output.

Everything here is vectorised NumPy over whole arrays: no Python loop per document.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .orders import FullShuffle, _check_int

POLICIES = ("cut", "best-fit")
TAILS = ("drop", "pad")


@dataclass(frozen=True, eq=False)
class PackingIndex:
    """Windows of ``seq_len`` tokens as segments of documents (see the module doc)."""

    seq_len: int
    ptr: np.ndarray  # int64 (windows + 1): window w is segments ptr[w]:ptr[w + 1]
    doc: np.ndarray  # int64 (segments): dataset record
    start: np.ndarray  # int64 (segments): first token within the document
    length: np.ndarray  # int32 (segments): tokens taken from the document
    sep: np.ndarray  # uint8 (segments): 1 when a separator token follows

    ARRAYS = ("ptr", "doc", "start", "length", "sep")
    DTYPES = {"ptr": np.int64, "doc": np.int64, "start": np.int64, "length": np.int32, "sep": np.uint8}

    @property
    def n_windows(self) -> int:
        return len(self.ptr) - 1

    @property
    def n_segments(self) -> int:
        return len(self.doc)

    def check(self, doc_lengths: np.ndarray | None = None) -> None:
        """Raise ValueError unless the arrays form a valid index (over these documents, if given).

        O(segments) vectorised: run once when an index is opened, so a damaged or foreign index
        is refused before any window is read from it.
        """
        for name in self.ARRAYS:
            arr = getattr(self, name)
            if not isinstance(arr, np.ndarray) or arr.ndim != 1 or arr.dtype != self.DTYPES[name]:
                raise ValueError(f"packing index: {name} must be a 1-D {np.dtype(self.DTYPES[name])} array")
        n_seg = len(self.doc)
        if not (len(self.start) == len(self.length) == len(self.sep) == n_seg):
            raise ValueError("packing index: segment arrays differ in length")
        p = self.ptr
        if len(p) < 1 or p[0] != 0 or p[-1] != n_seg or np.any(np.diff(p) < 0):
            raise ValueError("packing index: window pointers must rise from 0 to the segment count")
        if n_seg and (self.doc.min() < 0 or self.start.min() < 0 or self.length.min() < 0 or self.sep.max() > 1):
            raise ValueError("packing index: negative document, offset or length, or a bad separator flag")
        fill = window_fill(self)
        if len(fill) and fill.max() > self.seq_len:
            w = int(np.argmax(fill))
            raise ValueError(f"packing index: window {w} holds {int(fill[w])} tokens, more than seq_len={self.seq_len}")
        if doc_lengths is not None and n_seg:
            if self.doc.max() >= len(doc_lengths):
                raise ValueError(f"packing index: refers to document {int(self.doc.max())} of {len(doc_lengths)}")
            over = self.start + self.length > doc_lengths[self.doc]
            if over.any():
                j = int(np.argmax(over))
                raise ValueError(f"packing index: segment {j} reads past the end of document {int(self.doc[j])}")


def window_fill(index: PackingIndex) -> np.ndarray:
    """Tokens (document tokens and separators) in each window; the rest is padding."""
    per_seg = index.length.astype(np.int64) + index.sep
    cum = np.concatenate([[0], np.cumsum(per_seg)])
    return cum[index.ptr[1:]] - cum[index.ptr[:-1]]


def document_order(n_docs: int, seed: int | None) -> np.ndarray:
    """The order documents are laid out in: a keyed shuffle, or the dataset's order for ``None``."""
    if seed is None:
        return np.arange(n_docs, dtype=np.int64)
    return FullShuffle(n_docs, seed, 0).indices(np.arange(n_docs, dtype=np.int64))


def cut_windows(lengths: np.ndarray, seq_len: int, *, order: np.ndarray, separator: bool,
                tail: str = "drop", stride: int | None = None) -> PackingIndex:
    """Documents ``order[0], order[1], ...`` laid end to end and cut into windows (vectorised)."""
    seq_len = _check_int("seq_len", seq_len, 1)
    stride = seq_len if stride is None else _check_int("stride", stride, 1, seq_len)
    if tail not in TAILS:
        raise ValueError(f"tail must be one of {TAILS}, not {tail!r}")
    doc_len = np.asarray(lengths, dtype=np.int64)[order]
    piece = doc_len + int(separator)
    bounds = np.zeros(len(piece) + 1, dtype=np.int64)  # stream position where each piece starts
    np.cumsum(piece, out=bounds[1:])
    total = int(bounds[-1])
    if total >= seq_len:
        n_windows = (total - seq_len) // stride + 1
        if tail == "pad" and (n_windows - 1) * stride + seq_len < total:
            n_windows += 1
    else:
        n_windows = 1 if (tail == "pad" and total > 0) else 0
    begin = np.arange(n_windows, dtype=np.int64) * stride
    end = np.minimum(begin + seq_len, total)
    first = np.searchsorted(bounds, begin, side="right") - 1
    last = np.searchsorted(bounds, end, side="left") - 1  # the piece holding token end - 1
    counts = last - first + 1
    ptr = np.zeros(n_windows + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    window = np.repeat(np.arange(n_windows, dtype=np.int64), counts)
    k = np.arange(int(ptr[-1]), dtype=np.int64) - np.repeat(ptr[:-1] - first, counts)
    lo = np.maximum(begin[window] - bounds[k], 0)
    hi = np.minimum(end[window] - bounds[k], piece[k])
    return _segments(seq_len, window, n_windows, order[k], lo, hi, doc_len[k], separator)


def split_documents(lengths: np.ndarray, seq_len: int, *, order: np.ndarray,
                    separator: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Best-fit's items: each document (with its separator) cut into pieces of at most seq_len.

    Returns (piece sizes, document position in ``order``, stream offset lo, stream end hi), pieces
    in document order; lo/hi count within the document's own tokens plus separator.
    """
    seq_len = _check_int("seq_len", seq_len, 1)
    piece = np.asarray(lengths, dtype=np.int64)[order] + int(separator)
    n_pieces = -(-piece // seq_len)
    which = np.repeat(np.arange(len(piece), dtype=np.int64), n_pieces)
    first = np.concatenate([[0], np.cumsum(n_pieces)[:-1]])
    part = np.arange(len(which), dtype=np.int64) - first[which]
    lo = part * seq_len
    hi = np.minimum(lo + seq_len, piece[which])
    return hi - lo, which, lo, hi


def assemble_bins(seq_len: int, bin_of: np.ndarray, n_bins: int, which: np.ndarray, lo: np.ndarray,
                  hi: np.ndarray, lengths: np.ndarray, order: np.ndarray, separator: bool) -> PackingIndex:
    """The index of a bin assignment: bins in order, each bin's pieces in the order placed.

    ``bin_of`` gives the bin of each piece in placement order (pieces and their arrays already
    in that order).
    """
    by_bin = np.argsort(bin_of, kind="stable")
    window = bin_of[by_bin]
    docs = order[which[by_bin]]
    doc_len = np.asarray(lengths, dtype=np.int64)[docs]
    return _segments(seq_len, window, n_bins, docs, lo[by_bin], hi[by_bin], doc_len, separator)


def _segments(seq_len: int, window: np.ndarray, n_windows: int, docs: np.ndarray, lo: np.ndarray,
              hi: np.ndarray, doc_len: np.ndarray, separator: bool) -> PackingIndex:
    """Stream ranges [lo, hi) of each document's piece (tokens, then the separator) as segments;
    empty ones (an empty document without separator) are dropped."""
    start = np.minimum(lo, doc_len)
    length = np.minimum(hi, doc_len) - start
    sep = (hi > doc_len) if separator else np.zeros(len(hi), dtype=bool)
    keep = (length > 0) | sep
    if not keep.all():
        window, docs, start, length, sep = window[keep], docs[keep], start[keep], length[keep], sep[keep]
    ptr = np.zeros(n_windows + 1, dtype=np.int64)
    np.cumsum(np.bincount(window, minlength=n_windows), out=ptr[1:])
    return PackingIndex(seq_len=seq_len, ptr=ptr, doc=docs.astype(np.int64), start=start.astype(np.int64),
                        length=length.astype(np.int32), sep=sep.astype(np.uint8))


__all__ = ["POLICIES", "PackingIndex", "TAILS", "assemble_bins", "cut_windows", "document_order",
           "split_documents", "window_fill"]
