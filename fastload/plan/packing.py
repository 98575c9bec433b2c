"""Sequence packing: documents of variable length -> windows of ``seq_len`` tokens, as segments.

A packing index says which stretches of which documents fill each window, in order. A window's
*segments* are ``(document, first token, tokens, separator follows)``; the window is its
segments' tokens, then padding up to ``seq_len``. Two policies, two compact forms:

* ``"cut"`` (Megatron's): the documents, in a keyed shuffled order
  (:mod:`fastload.plan.document_order`), are laid end to end (each followed by the separator
  when there is one) and cut every ``stride`` tokens (``seq_len`` by default; ``seq_len - 1``
  gives Megatron's windows that share one token, for shifted labels). The last partial window is
  dropped (``tail="drop"``) or padded (``tail="pad"``). :class:`CutIndex` stores only where each
  laid-out document starts in the stream (4 bytes a document below 2**31 tokens, else 8); the
  order is recomputed from its seed, and a batch's segments are found by binary search when it
  is read.
* ``"best-fit"``: no document is cut unless it is longer than a window (then it is cut into
  ``seq_len`` pieces and the rest packed like a document). Pieces are packed best-fit decreasing
  (largest first, each into the window with the least room that still holds it), and each window
  is padded to ``seq_len``. :class:`SegmentIndex` lists every window's segments. The bin
  assignment is the Numba kernel in ``fastload/_kernels``; this module prepares its input and
  assembles its output.

Everything here is vectorised NumPy over whole arrays: no Python loop per document.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .document_order import DOC_SHUFFLES, DocumentOrder, ListedOrder, document_order
from .orders import _check_int

POLICIES = ("cut", "best-fit")
TAILS = ("drop", "pad")


@dataclass(frozen=True, eq=False)
class CutIndex:
    """Policy "cut": piece k (document ``order.docs(k)``, then the separator) starts at stream
    position ``bounds[k]``; ``bounds[-1]`` is the stream's length."""

    seq_len: int
    stride: int
    separator: bool  # each piece is its document's tokens, then one separator token
    tail: str
    order: DocumentOrder  # the layout, computed per batch from its seed (not stored)
    bounds: np.ndarray  # int32 or int64 (documents + 1), see bounds_dtype

    ARRAYS = ("bounds",)
    DTYPES = {"bounds": (np.int32, np.int64)}

    @property
    def total(self) -> int:
        return int(self.bounds[-1]) if len(self.bounds) else 0

    @property
    def n_windows(self) -> int:
        total, seq_len, stride = self.total, self.seq_len, self.stride
        if total < seq_len:
            return 1 if (self.tail == "pad" and total > 0) else 0
        n = (total - seq_len) // stride + 1
        return n + 1 if self.tail == "pad" and (n - 1) * stride + seq_len < total else n

    def check(self, n_docs: int | None = None) -> None:
        """Raise ValueError unless the arrays form a valid index (over ``n_docs`` documents)."""
        _check_arrays(self)
        if len(self.bounds) != self.order.n + 1 or self.bounds[0] != 0:
            raise ValueError("packing index: bounds must start at 0 and have one entry per document more")
        if self.order.n and np.any(np.diff(self.bounds) < int(self.separator)):
            raise ValueError("packing index: bounds must rise by at least the separator")
        if n_docs is not None and self.order.n != n_docs:
            raise ValueError(f"packing index: lays out {self.order.n} documents, the dataset has {n_docs}")
        if isinstance(self.order, ListedOrder) and self.order.n and (
                self.order.order.min() < 0 or (n_docs is not None and self.order.order.max() >= n_docs)):
            raise ValueError("packing index: its order names records outside the dataset")


def bounds_dtype(total: int) -> type:
    """int32 stream bounds while the stream fits (half the bytes to write, map and check)."""
    return np.int32 if total <= np.iinfo(np.int32).max else np.int64


@dataclass(frozen=True, eq=False)
class SegmentIndex:
    """Windows of ``seq_len`` tokens as segments of documents (see the module doc)."""

    seq_len: int
    ptr: np.ndarray  # int64 (windows + 1): window w is segments ptr[w]:ptr[w + 1]
    doc: np.ndarray  # int64 (segments): dataset record
    start: np.ndarray  # int64 (segments): first token within the document
    length: np.ndarray  # int32 (segments): tokens taken from the document
    sep: np.ndarray  # uint8 (segments): 1 when a separator token follows
    ends: np.ndarray  # uint8 (segments): 1 when the segment ends its document (checked on every read)

    ARRAYS = ("ptr", "doc", "start", "length", "sep", "ends")
    DTYPES = {"ptr": np.int64, "doc": np.int64, "start": np.int64, "length": np.int32, "sep": np.uint8,
              "ends": np.uint8}

    @property
    def n_windows(self) -> int:
        return len(self.ptr) - 1

    @property
    def n_segments(self) -> int:
        return len(self.doc)

    def check(self, n_docs: int | None = None, doc_lengths: np.ndarray | None = None) -> None:
        """Raise ValueError unless the arrays form a valid index (over these documents, if given).

        O(segments) vectorised: run once when an index is opened, so a damaged or foreign index
        is refused before any window is read from it.
        """
        _check_arrays(self)
        n_seg = len(self.doc)
        if not (len(self.start) == len(self.length) == len(self.sep) == len(self.ends) == n_seg):
            raise ValueError("packing index: segment arrays differ in length")
        p = self.ptr
        if len(p) < 1 or p[0] != 0 or p[-1] != n_seg or np.any(np.diff(p) < 0):
            raise ValueError("packing index: window pointers must rise from 0 to the segment count")
        if n_seg and (self.doc.min() < 0 or self.start.min() < 0 or self.length.min() < 0 or self.sep.max() > 1
                      or self.ends.max() > 1):
            raise ValueError("packing index: negative document, offset or length, or a bad separator or end flag")
        fill = window_fill(self)
        if len(fill) and fill.max() > self.seq_len:
            w = int(np.argmax(fill))
            raise ValueError(f"packing index: window {w} holds {int(fill[w])} tokens, more than seq_len={self.seq_len}")
        if n_docs is not None and n_seg and self.doc.max() >= n_docs:
            raise ValueError(f"packing index: refers to document {int(self.doc.max())} of {n_docs}")
        if doc_lengths is not None and n_seg:
            end = self.start + self.length
            over = (end > doc_lengths[self.doc]) | ((self.ends == 1) & (end != doc_lengths[self.doc]))
            if over.any():
                j = int(np.argmax(over))
                raise ValueError(f"packing index: segment {j} reads past or short of the end of document "
                                 f"{int(self.doc[j])}")


def _check_arrays(index) -> None:
    for name in index.ARRAYS:
        arr = getattr(index, name)
        allowed = index.DTYPES[name] if isinstance(index.DTYPES[name], tuple) else (index.DTYPES[name],)
        if not isinstance(arr, np.ndarray) or arr.ndim != 1 or arr.dtype not in allowed:
            names = " or ".join(np.dtype(t).name for t in allowed)
            raise ValueError(f"packing index: {name} must be a 1-D {names} array")


def window_fill(index: "SegmentIndex") -> np.ndarray:
    """Tokens (document tokens and separators) in each window; the rest is padding."""
    per_seg = index.length.astype(np.int64) + index.sep
    cum = np.concatenate([[0], np.cumsum(per_seg)])
    return cum[index.ptr[1:]] - cum[index.ptr[:-1]]


def cut_index(lengths: np.ndarray, seq_len: int, *, order: DocumentOrder | np.ndarray, separator: bool,
              tail: str = "drop", stride: int | None = None, bounds: np.ndarray | None = None) -> CutIndex:
    """Documents ``order`` (a layout, or an array of records) laid end to end, to be cut into windows.

    ``bounds``, when given, are the stream bounds already laid out (by the build kernel);
    otherwise they are computed here with NumPy.
    """
    seq_len = _check_int("seq_len", seq_len, 1)
    stride = seq_len if stride is None else _check_int("stride", stride, 1, seq_len)
    if tail not in TAILS:
        raise ValueError(f"tail must be one of {TAILS}, not {tail!r}")
    if not hasattr(order, "docs"):
        order = ListedOrder(order)
    if bounds is None:
        laid = np.asarray(lengths, dtype=np.int64)[order.docs(np.arange(order.n, dtype=np.int64))] + int(separator)
        total = int(laid.sum())
        bounds = np.empty(order.n + 1, dtype=bounds_dtype(total))
        bounds[0] = 0
        np.cumsum(laid, out=bounds[1:])
    return CutIndex(seq_len=seq_len, stride=stride, separator=bool(separator), tail=tail, order=order,
                    bounds=bounds)


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
                  hi: np.ndarray, lengths: np.ndarray, order: np.ndarray, separator: bool) -> SegmentIndex:
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
              hi: np.ndarray, doc_len: np.ndarray, separator: bool) -> SegmentIndex:
    """Stream ranges [lo, hi) of each document's piece (tokens, then the separator) as segments;
    empty ones (an empty document without separator) are dropped."""
    start = np.minimum(lo, doc_len)
    length = np.minimum(hi, doc_len) - start
    sep = (hi > doc_len) if separator else np.zeros(len(hi), dtype=bool)
    ends = hi >= doc_len
    keep = (length > 0) | sep
    if not keep.all():
        window, docs, start, length, sep, ends = (a[keep] for a in (window, docs, start, length, sep, ends))
    ptr = np.zeros(n_windows + 1, dtype=np.int64)
    np.cumsum(np.bincount(window, minlength=n_windows), out=ptr[1:])
    return SegmentIndex(seq_len=seq_len, ptr=ptr, doc=docs.astype(np.int64), start=start.astype(np.int64),
                        length=length.astype(np.int32), sep=sep.astype(np.uint8), ends=ends.astype(np.uint8))


PackingIndex = CutIndex | SegmentIndex

__all__ = ["CutIndex", "DOC_SHUFFLES", "POLICIES", "PackingIndex", "SegmentIndex", "TAILS", "assemble_bins",
           "bounds_dtype", "cut_index", "document_order", "split_documents", "window_fill"]
