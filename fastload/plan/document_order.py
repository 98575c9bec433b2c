"""The order documents are laid out in before a "cut" packing index slices them into windows.

An order maps a *piece* (the k-th document laid out) to its dataset record, on whole arrays of
pieces, so a packing index never stores it: a batch's few hundred pieces are mapped when the
batch is read, and the index holds only where each piece starts in the token stream.

* :class:`DatasetOrder`: the dataset's own order (``seed=None``).
* :class:`GridOrder` (the default, ``shuffle="grid"``): documents form a grid of about
  sqrt(n) x sqrt(n), document d at row ``d // C``, column ``d % C``; rows and columns are each
  permuted by a keyed permutation, and the layout reads the grid column by column. Documents that
  neighbour in the dataset (same row) land a whole column apart, and the documents that share a
  window come from far-apart rows of one column. It is not a uniform permutation (window-mates
  share ``d % C``); the order in which windows are trained on is the loader's window-level
  shuffle, which is uniform. Its state is the two small permutations (O(sqrt n)), and its walk
  is what the build kernel follows to lay out the lengths without materialising the order.
* :class:`KeyedOrder` (``shuffle="full"``): the loader's uniform keyed permutation
  (:class:`~fastload.plan.orders.FullShuffle`), O(1) state, ~10x slower to lay out.
* :class:`ListedOrder`: an explicit array (tests and custom layouts).
"""

from __future__ import annotations

import numpy as np

from .orders import FullShuffle, _check_int

DOC_SHUFFLES = ("grid", "full")
GRID_MIN = 64  # below this many documents the grid is too small to mix: a keyed permutation instead


class DatasetOrder:
    """Piece k is record k."""

    def __init__(self, n: int):
        self.n = _check_int("n", n, 0)

    def docs(self, pieces: np.ndarray) -> np.ndarray:
        return np.asarray(pieces, dtype=np.int64).copy()


class ListedOrder:
    """Piece k is record ``order[k]`` of an explicit array."""

    def __init__(self, order: np.ndarray):
        self.order = np.asarray(order, dtype=np.int64).reshape(-1)
        self.n = len(self.order)

    def docs(self, pieces: np.ndarray) -> np.ndarray:
        return self.order[pieces]


class KeyedOrder:
    """A uniform keyed permutation of the documents (the loader's full shuffle, stream 0)."""

    def __init__(self, n: int, seed: int):
        self.n = _check_int("n", n, 0)
        self._perm = FullShuffle(self.n, seed, 0)

    def docs(self, pieces: np.ndarray) -> np.ndarray:
        return self._perm.indices(np.asarray(pieces, dtype=np.int64))


class GridOrder:
    """The column-major walk of a keyed-permuted grid of documents (see the module doc).

    ``col_order`` and ``row_order`` are the walk: column ``col_order[j]`` is read j-th, and in
    each column the rows in ``row_order``, skipping the cells past the last document (only the
    last grid row is partial: its first ``full_cols`` columns hold documents).
    """

    def __init__(self, n: int, seed: int):
        self.n = _check_int("n", n, GRID_MIN)
        self.cols = int(np.ceil(np.sqrt(self.n)))
        self.rows = -(-self.n // self.cols)
        self.col_order = FullShuffle(self.cols, seed, 1).permutation()
        self.row_order = FullShuffle(self.rows, seed, 2).permutation()
        self.full_cols = self.n - (self.rows - 1) * self.cols  # columns holding a document in the last row
        self.partial_at = int(np.flatnonzero(self.row_order == self.rows - 1)[0])  # where the walk meets it
        heights = self.rows - (self.col_order >= self.full_cols)
        self._col_start = np.concatenate([[0], np.cumsum(heights)])  # first piece of each walked column

    def column_pieces(self) -> np.ndarray:
        """The piece at which each grid column's walk starts, by column number (int64).

        Cell (row ``row_order[i]``, column c) is piece ``column_pieces()[c] + i``, less one past
        ``partial_at`` in a column without a cell in the partial last row (``c >= full_cols``).
        """
        pieces = np.empty(self.cols, dtype=np.int64)
        pieces[self.col_order] = self._col_start[:-1]
        return pieces

    def docs(self, pieces: np.ndarray) -> np.ndarray:
        k = np.asarray(pieces, dtype=np.int64)
        j = np.searchsorted(self._col_start, k, side="right") - 1
        col = self.col_order[j]
        i = k - self._col_start[j]
        i += (col >= self.full_cols) & (i >= self.partial_at)  # a short column skips the partial row
        return self.row_order[i] * self.cols + col


DocumentOrder = DatasetOrder | ListedOrder | KeyedOrder | GridOrder


def layout_order(n_docs: int, seed: int | None, shuffle: str = "grid") -> DocumentOrder:
    """The order documents are laid out in: the dataset's for ``seed=None``, else keyed by seed."""
    if shuffle not in DOC_SHUFFLES:
        raise ValueError(f"shuffle must be one of {DOC_SHUFFLES}, not {shuffle!r}")
    if seed is None:
        return DatasetOrder(n_docs)
    if shuffle == "full" or n_docs < GRID_MIN:
        return KeyedOrder(n_docs, seed)
    return GridOrder(n_docs, seed)


def document_order(n_docs: int, seed: int | None, shuffle: str = "grid") -> np.ndarray:
    """The whole layout as an array: ``order[k]`` is the record laid out k-th."""
    return layout_order(n_docs, seed, shuffle).docs(np.arange(n_docs, dtype=np.int64))


__all__ = ["DOC_SHUFFLES", "DatasetOrder", "DocumentOrder", "GridOrder", "KeyedOrder", "ListedOrder",
           "document_order", "layout_order"]
