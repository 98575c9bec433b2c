"""The cleaning kernels against references someone else wrote: the xxhash package's XXH3-128 (for
the C row hash over the vendored xxhash.h),
Python's ``" ".join(s.split())``, Python's set for the hash table; and the same in NUMBA_DISABLE_JIT."""

from __future__ import annotations

import numpy as np
import pytest
import xxhash

from fastload._kernels.hash_table import count_new, insert_first, move_all
from fastload._kernels.text_norm import collapse_whitespace, rows_with_byte_at_least
from fastload import _row_hash

from ...jit_modes import outputs_with_and_without_jit

pytestmark = pytest.mark.timeout(120)


def _rows(lengths, seed=0):
    rng = np.random.default_rng(seed)
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return rng.integers(0, 256, int(offsets[-1]), dtype=np.uint8), offsets


def test_xxh3_128_is_the_reference_hash_at_every_length():
    """Every length from 0 to 2,100 bytes (all of XXH3's paths: 0-16, 17-128, 129-240, stripes,
    several 1,024-byte blocks) and random longer ones."""
    lengths = np.concatenate([np.arange(0, 2101), np.random.default_rng(1).integers(2100, 9000, 50)])
    data, offsets = _rows(lengths)
    out = np.empty((len(lengths), 2), np.uint64)
    _row_hash.rows(data, offsets, out)
    raw = data.tobytes()
    for i in range(len(lengths)):
        ref = xxhash.xxh3_128_intdigest(raw[offsets[i]:offsets[i + 1]])
        assert (int(out[i, 0]) << 64 | int(out[i, 1])) == ref, f"length {lengths[i]}"


def test_the_row_hash_refuses_rows_outside_its_data():
    data, offsets = _rows([5, 5])
    out = np.empty((2, 2), np.uint64)
    for bad in ([0, 5, 11], [0, 6, 5], [-1, 5, 10]):
        with pytest.raises(ValueError, match="offsets must rise within data"):
            _row_hash.rows(data, np.array(bad, np.int64), out)
    with pytest.raises(ValueError, match="offsets must rise"):
        _row_hash.rows(data, offsets, np.empty((1, 2), np.uint64))  # out too small
    with pytest.raises(ValueError, match="len\\(out\\) rows"):
        _row_hash.fixed(data, 6, out)
    with pytest.raises(TypeError, match="items of 8 bytes"):
        _row_hash.rows(data, offsets.astype(np.int32), out)


@pytest.mark.parametrize("width", [0, 1, 3, 8, 16, 17, 32, 100, 240, 241, 1000])
def test_xxh3_128_of_fixed_width_rows(width):
    data, _ = _rows([width * 7])
    out = np.empty((7, 2), np.uint64)
    _row_hash.fixed(data, width, out)
    for i in range(7):
        ref = xxhash.xxh3_128_intdigest(data[i * width:(i + 1) * width].tobytes())
        assert (int(out[i, 0]) << 64 | int(out[i, 1])) == ref


TEXTS = ["", " ", "a", "  a  b  ", "\ta\n\nb\r\n", "x\u00a0y\u3000z\u2028w\u205f", "\u1680\u2000\u200a",
         "\u200bzero-width is not space", "caf\u00e9  cr\u00e8me", "\x1c\x1d\x1e\x1f", "\u0085next line",
         "\u2009thin\u202fnarrow ", "日本語　テキスト", "e\u0301", "a" * 300 + "   " + "b"]


def test_collapse_whitespace_is_pythons_split_and_join():
    payloads = [t.encode() for t in TEXTS]
    data = np.frombuffer(b"".join(payloads), np.uint8)
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in payloads])]).astype(np.int64)
    out = np.empty(len(data), np.uint8)
    out_offsets = np.empty(len(offsets), np.int64)
    collapse_whitespace(data, offsets, out, out_offsets)
    got = [out[out_offsets[i]:out_offsets[i + 1]].tobytes().decode() for i in range(len(TEXTS))]
    assert got == [" ".join(t.split()) for t in TEXTS]


def test_every_code_point_below_u0300_is_nfc_alone_and_combines_with_nothing():
    """What rows_with_byte_at_least(0xCC) relies on to skip the NFC kernel."""
    import unicodedata

    for c in range(0x300):
        ch = chr(c)
        if 0xD800 <= c <= 0xDFFF:
            continue
        assert unicodedata.is_normalized("NFC", ch) and unicodedata.combining(ch) == 0
        assert unicodedata.normalize("NFC", "a" + ch) == "a" + ch
    payloads = ["abc".encode(), "\u02ff".encode(), "a\u0300".encode(), b""]
    data = np.frombuffer(b"".join(payloads), np.uint8)
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in payloads])]).astype(np.int64)
    out = np.empty(4, bool)
    rows_with_byte_at_least(data, offsets, 0xCC, out)
    assert out.tolist() == [False, False, True, False]


def test_hash_table_keeps_first_occurrences_like_a_python_set():
    rng = np.random.default_rng(3)
    hashes = rng.integers(1, 50, (5000, 2)).astype(np.uint64)  # many repeats, many collisions of the top bits
    table = np.zeros((1 << 14, 2), np.uint64)
    keep = np.zeros(len(hashes), bool)
    done, added = insert_first(table, 14, hashes, np.arange(len(hashes)), keep, 0, len(hashes))
    assert done == len(hashes)
    seen, ref = set(), []
    for h in map(tuple, hashes.tolist()):
        ref.append(h not in seen)
        seen.add(h)
    assert keep.tolist() == ref and added == len(seen)
    bigger = np.zeros((1 << 15, 2), np.uint64)
    move_all(table, bigger, 15)
    again = np.zeros(len(hashes), bool)
    assert insert_first(bigger, 15, hashes, np.arange(len(hashes)), again, 0, 10)[1] == 0 and not again.any()
    partial = np.zeros((1 << 14, 2), np.uint64)  # a limit stops after that many insertions
    done, added = insert_first(partial, 14, hashes, np.arange(len(hashes)), np.zeros(len(hashes), bool), 0, 7)
    firsts = [i for i, new in enumerate(ref) if new]
    assert added == 7 and done == firsts[6] + 1  # it stops right after the 7th new hash


def test_count_new_is_the_number_of_distinct_hashes_the_table_lacks():
    rng = np.random.default_rng(4)
    table = np.zeros((1 << 12, 2), np.uint64)
    present = rng.integers(1, 300, (600, 2)).astype(np.uint64)
    insert_first(table, 12, present, np.arange(len(present)), np.zeros(len(present), bool), 0, len(present))
    batch = rng.integers(1, 300, (900, 2)).astype(np.uint64)
    order = np.lexsort((batch[:, 1], batch[:, 0]))
    known = set(map(tuple, present.tolist()))
    for start in (0, 450):
        rest = {tuple(batch[i]) for i in order[start:].tolist()}
        assert count_new(table, 12, batch, order, start) == len(rest - known)


def test_the_kernels_give_the_same_results_as_plain_python(tmp_path):
    """NUMBA_DISABLE_JIT=1 (the debugging mode) runs the kernels as Python: same output."""
    script = tmp_path / "run.py"
    out = tmp_path / "out.npy"
    script.write_text(
        "import sys, numpy as np\n"
        "np.seterr(over='ignore')\n"
        "import warnings; warnings.simplefilter('ignore')\n"
        "from fastload import _row_hash\n"
        "from fastload._kernels.text_norm import collapse_whitespace\n"
        "from fastload._kernels.hash_table import insert_first\n"
        "lengths = np.array([0, 2, 5, 12, 40, 200, 1500])\n"
        "offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)\n"
        "data = np.random.default_rng(0).integers(0, 256, offsets[-1], dtype=np.uint8)\n"
        "h = np.empty((len(lengths), 2), np.uint64)\n"
        "_row_hash.rows(data, offsets, h)\n"
        "text = np.frombuffer(' a \\u3000 b  c '.encode() * 3, np.uint8)\n"
        "t_off = np.array([0, len(text) // 3, len(text)], np.int64)\n"
        "w, w_off = np.empty(len(text), np.uint8), np.empty(3, np.int64)\n"
        "collapse_whitespace(text, t_off, w, w_off)\n"
        "keep = np.zeros(len(h) * 2, bool)\n"
        "table = np.zeros((64, 2), np.uint64)\n"
        "insert_first(table, 6, np.concatenate([h, h]), np.arange(len(h) * 2), keep, 0, 32)\n"
        "np.save(sys.argv[1], np.concatenate([h.view(np.uint8).ravel(), w[:w_off[-1]], w_off.view(np.uint8),"
        " keep.view(np.uint8)]))\n")
    results = outputs_with_and_without_jit([script, out], read=lambda proc: np.load(out))
    assert np.array_equal(results[0], results[1])
