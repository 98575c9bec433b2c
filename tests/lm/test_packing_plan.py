"""The packing index against pure-Python references: cut windows token for token, best-fit bins."""

from __future__ import annotations

import numpy as np
import pytest

from fastload.lm.packing_index import PackingConfig, build_index
from fastload.lm.window_batch import WindowBatch
from fastload.plan.document_order import GridOrder, layout_order
from fastload.plan.orders import FullShuffle
from fastload.plan.packing import CutIndex, SegmentIndex, cut_index, document_order, window_fill

from ..jit_modes import outputs_with_and_without_jit
from .reference import best_fit_fills, cut_reference


def make_docs(n: int, seed: int = 0, max_len: int = 300) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = np.minimum(rng.lognormal(3.5, 1.2, size=n).astype(np.int64), max_len)
    lengths[::17] = 0  # empty documents happen
    return [rng.integers(1, 1000, size=int(k)) for k in lengths]


def render(index, docs, separator, pad_id) -> list[list[int]]:
    """The windows an index describes, token by token, from the segments its batch planner gives."""
    batch = WindowBatch(index, np.arange(index.n_windows, dtype=np.int64))
    out = [[] for _ in range(index.n_windows)]
    for j in range(len(batch.doc)):
        d, s, k = int(batch.doc[j]), int(batch.start[j]), int(batch.length[j])
        tokens = out[int(batch.window[j])]
        tokens.extend(int(t) for t in docs[d][s:s + k])
        if batch.sep[j]:
            tokens.append(separator)
    return [w + [pad_id] * (index.seq_len - len(w)) for w in out]


@pytest.mark.parametrize("seq_len, stride", [(64, None), (64, 63), (7, None), (1, None), (2048, None), (50, 17)])
@pytest.mark.parametrize("separator", [None, 0])
@pytest.mark.parametrize("tail", ["drop", "pad"])
def test_cut_windows_match_the_concatenate_and_slice_reference(seq_len, stride, separator, tail):
    docs = make_docs(300)
    lengths = np.array([len(d) for d in docs])
    order = document_order(len(docs), seed=3)
    index = cut_index(lengths, seq_len, order=order, separator=separator is not None, tail=tail, stride=stride)
    index.check(len(docs))
    expect = cut_reference(docs, order, seq_len, separator, -1, tail, stride)
    assert render(index, docs, separator, -1) == expect


def test_cut_of_nothing_and_of_less_than_a_window():
    order = document_order(3, None)
    assert cut_index(np.zeros(3, np.int64), 8, order=order, separator=False).n_windows == 0
    short = cut_index(np.array([2, 3, 0]), 8, order=order, separator=False, tail="pad")
    assert short.n_windows == 1 and WindowBatch(short, np.array([0])).pad.tolist() == [3]
    assert cut_index(np.array([2, 3, 0]), 8, order=order, separator=False, tail="drop").n_windows == 0


@pytest.mark.parametrize("seq_len", [16, 100, 512])
@pytest.mark.parametrize("separator", [False, True])
def test_best_fit_keeps_documents_whole_and_matches_the_reference_bins(seq_len, separator):
    docs = make_docs(500, seed=1, max_len=1200)
    lengths = np.array([len(d) for d in docs])
    config = PackingConfig(field="tokens", seq_len=seq_len, policy="best-fit", separator=separator, seed=5)
    index = build_index(lengths, config)
    index.check(len(docs), lengths)
    windows = render(index, docs, -2, -1)
    # every document's tokens are there once, in order; documents that fit a window are never cut
    pieces: dict[int, list[tuple[int, int]]] = {}
    for j in range(index.n_segments):
        pieces.setdefault(int(index.doc[j]), []).append((int(index.start[j]), int(index.length[j])))
    for d, doc in enumerate(docs):
        if len(doc) == 0 and not separator:
            assert d not in pieces
            continue
        got = sorted(pieces[d])
        assert sum(k for _, k in got) == len(doc)
        assert all(a + k == b for (a, k), (b, _) in zip(got, got[1:]))
        if len(doc) + separator <= seq_len:
            assert len(got) == 1
    # the bins are those of best-fit decreasing over the same pieces
    sizes = []
    for d in docs:
        total = len(d) + separator
        sizes += [seq_len] * (total // seq_len) + ([total % seq_len] if total % seq_len else [])
    assert sorted(window_fill(index).tolist()) == best_fit_fills(sizes, seq_len)
    assert all(len(w) == seq_len for w in windows)


def materialised_grid(n: int, seed: int) -> np.ndarray:
    """The grid layout written out whole: rows and columns permuted, read column by column."""
    cols = int(np.ceil(np.sqrt(n)))
    rows = -(-n // cols)
    col_order = FullShuffle(cols, seed, 1).indices(np.arange(cols))
    row_order = FullShuffle(rows, seed, 2).indices(np.arange(rows))
    grid = (row_order[None, :] * cols + col_order[:, None]).ravel()
    return grid[grid < n]


@pytest.mark.parametrize("n", [64, 65, 99, 100, 101, 1000, 4097, 12_345])
def test_the_grid_order_is_computed_per_piece_as_the_materialised_grid(n):
    expect = materialised_grid(n, 7)
    order = GridOrder(n, 7)
    assert np.array_equal(order.docs(np.arange(n)), expect)
    some = np.random.default_rng(n).integers(0, n, 300)
    assert np.array_equal(order.docs(some), expect[some])  # any pieces, in any order


# 100,003 documents: grid rows laid 8 at a time, the partial last row inside such a stretch
@pytest.mark.parametrize("n", [0, 1, 5, 63, 64, 65, 1000, 4097, 100_003])
@pytest.mark.parametrize("seed, shuffle", [(None, "grid"), (3, "grid"), (3, "full")])
@pytest.mark.parametrize("separator", [False, True])
def test_the_built_bounds_are_the_numpy_cut_index(n, seed, shuffle, separator):
    """The build (kernels walking the layout, no order array) against NumPy over the whole order."""
    lengths = np.random.default_rng(n).integers(0, 900, n).astype(np.uint32)
    config = PackingConfig(field="tokens", seq_len=64, seed=seed, shuffle=shuffle, separator=separator)
    built = build_index(lengths, config)
    built.check(n)
    reference = cut_index(lengths.astype(np.int64), 64, order=document_order(n, seed, shuffle), separator=separator)
    assert built.bounds.dtype == np.int32 and np.array_equal(built.bounds, reference.bounds)
    assert np.array_equal(built.order.docs(np.arange(n)), document_order(n, seed, shuffle))
    assert type(built.order) is type(layout_order(n, seed, shuffle))


def test_bounds_widen_to_int64_past_two_billion_tokens():
    lengths = np.full(100, 30_000_000, dtype=np.uint32)  # 3 billion tokens
    built = build_index(lengths, PackingConfig(field="tokens", seq_len=2048, separator=True))
    assert built.bounds.dtype == np.int64 and built.total == 3_000_000_100
    reference = cut_index(lengths, 2048, order=document_order(100, 0), separator=True)
    assert np.array_equal(built.bounds, reference.bounds)
    assert build_index(lengths[:71], PackingConfig(field="tokens", seq_len=2048)).bounds.dtype == np.int32


@pytest.mark.parametrize("lengths", [[2**32 - 1] * 64, [-1] * 64, [2**32] * 64, [0.5] * 64])
def test_lengths_the_index_cannot_sum_are_refused(lengths):
    """A u4 length that its separator would wrap, or lengths that are not u4 integers."""
    lengths = np.array(lengths, dtype=np.uint32 if lengths[0] == 2**32 - 1 else None)
    with pytest.raises(ValueError, match=r"2\*\*32"):
        build_index(lengths, PackingConfig(field="tokens", seq_len=2048, separator=True))


def test_best_fit_kernel_runs_as_python_too(tmp_path):
    """NUMBA_DISABLE_JIT=1 (the debugging mode) gives the same bins."""
    code = ("import numpy as np; from fastload._kernels.packing import best_fit\n"
            "s = np.random.default_rng(0).integers(1, 64, 2000); b = np.empty(2000, np.int64)\n"
            "n = best_fit(np.sort(s)[::-1].copy(), 64, b); print(n, int(b.sum()))")
    outs = outputs_with_and_without_jit(["-c", code])
    assert outs[0] == outs[1] and outs[0].strip()


def test_build_kernels_run_as_python_too():
    """NUMBA_DISABLE_JIT=1: the lengths scan and the grid walk give the same index."""
    code = ("import numpy as np; from fastload.lm.packing_index import PackingConfig, build_index\n"
            "from fastload._kernels.packing_build import block_lengths\n"
            "w = np.array([0, 4, 10, 0, 6], np.uint32); out = np.empty(3, np.uint32)\n"
            "print([int(v) for v in block_lengths(w, np.array([0, 3]), np.array([2, 1]), np.array([10, 6]), 2, out)],"
            " out.tolist())\n"
            "L = np.random.default_rng(0).integers(0, 500, 3000).astype(np.uint32)\n"
            "b = build_index(L, PackingConfig(field='t', seq_len=64, separator=True)).bounds\n"
            "print(b.dtype, int(b.sum()), int(b[-1]))")
    outs = outputs_with_and_without_jit(["-c", code])
    assert outs[0] == outs[1] and "[2, 3, 3]" in outs[0]


def test_check_refuses_damaged_indexes():
    lengths = np.array([10, 20, 30])
    config = PackingConfig(field="tokens", seq_len=8, policy="best-fit", separator=True, seed=0)
    index = build_index(lengths, config)
    index.check(3, lengths)
    bad = SegmentIndex(seq_len=8, ptr=index.ptr, doc=index.doc, start=index.start + 25,
                       length=index.length, sep=index.sep, ends=index.ends)
    with pytest.raises(ValueError, match="past or short of the end"):
        bad.check(3, lengths)
    with pytest.raises(ValueError, match="past or short of the end"):  # documents longer than planned
        index.check(3, lengths + 1)
    crowded = SegmentIndex(seq_len=4, ptr=index.ptr, doc=index.doc, start=index.start,
                           length=index.length, sep=index.sep, ends=index.ends)
    with pytest.raises(ValueError, match="more than seq_len"):
        crowded.check()
    with pytest.raises(ValueError, match="pointers"):
        SegmentIndex(seq_len=8, ptr=index.ptr[::-1].copy(), doc=index.doc, start=index.start,
                     length=index.length, sep=index.sep, ends=index.ends).check()
    with pytest.raises(ValueError, match="refers to document"):
        index.check(2)
    cut = cut_index(lengths, 8, order=np.array([2, 0, 1]), separator=True)
    cut.check(3)
    with pytest.raises(ValueError, match="the dataset has 4"):
        cut.check(4)
    with pytest.raises(ValueError, match="rise"):
        CutIndex(seq_len=8, stride=8, separator=True, tail="drop", order=cut.order,
                 bounds=cut.bounds[::-1].copy() - cut.bounds[-1]).check()


@pytest.mark.parametrize("n", [0, 5, 63, 64, 65, 1000, 4097])
@pytest.mark.parametrize("shuffle", ["grid", "full"])
def test_document_orders_are_keyed_permutations(n, shuffle):
    a = document_order(n, 3, shuffle)
    assert sorted(a.tolist()) == list(range(n))
    assert np.array_equal(a, document_order(n, 3, shuffle))
    if n >= 64:
        assert not np.array_equal(a, document_order(n, 4, shuffle))
    if n >= 1000:  # dataset neighbours land far apart: rarely within a few windows of each other
        pos = np.empty(n, np.int64)
        pos[a] = np.arange(n)
        assert np.mean(np.abs(np.diff(pos)) < np.sqrt(n) / 2) < 0.05


@pytest.mark.parametrize("n", [0, 5, 262_143, 262_144, 1_000_000, 2_500_001])
def test_large_arrays_start_at_a_huge_page(n):
    """large_empty: n items of the dtype, writable and contiguous; from 1 MiB on at a 2 MiB boundary."""
    from fastload.lm.packing_index import large_empty

    a, b = large_empty(n, np.uint32), large_empty(n, np.uint32)
    assert a.shape == (n,) and a.dtype == np.uint32 and a.flags.c_contiguous and a.flags.writeable
    a[:] = 7
    b[:] = 9
    assert (a == 7).all()
    if n * 4 >= 1 << 20:
        assert a.ctypes.data % (2 << 20) == 0
