"""A gathered str column decoded through Arrow: the same values as Python's own UTF-8 decode, and
the same records refused (each then named by the row-by-row path)."""

from __future__ import annotations

import numpy as np
import pytest

from fastload.errors import RecordDecodeError
from fastload.format.varcolumn import VarColumn
from fastload.format.decode import decode_var
from fastload.format.schema import Schema

TEXT = Schema.parse("text:str")["text"]

# valid and invalid UTF-8, including what lenient decoders accept: surrogates, overlong forms,
# code points past U+10FFFF, truncated sequences, stray continuation bytes
PAYLOADS = [b"", b"plain", "héllo wörld".encode(), "日本語".encode(), "🙂".encode(), b"\x00nul",
            b"\xed\xa0\x80", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xf4\x90\x80\x80", b"\xe6\x97",
            b"\x80abc", b"ab\xff", "\U0010ffff".encode()]


def column(payloads: list[bytes]) -> VarColumn:
    offsets = np.zeros(len(payloads) + 1, np.int64)
    offsets[1:] = np.cumsum([len(p) for p in payloads])
    return VarColumn(offsets, np.frombuffer(b"".join(payloads), np.uint8).copy())


def python_decode(payloads: list[bytes]) -> list[str] | int:
    """Python's values, or the position of the first payload it refuses."""
    out = []
    for k, p in enumerate(payloads):
        try:
            out.append(p.decode("utf-8"))
        except UnicodeDecodeError:
            return k
    return out


@pytest.mark.parametrize("seed", range(40))
def test_arrow_decodes_and_refuses_exactly_what_python_does(seed):
    rng = np.random.default_rng(seed)
    payloads = [PAYLOADS[i] for i in rng.integers(0, len(PAYLOADS), rng.integers(0, 12))]
    want = python_decode(payloads)
    if isinstance(want, list):
        got = decode_var(TEXT, column(payloads))
        assert got == want and all(type(s) is str for s in got)
    else:
        with pytest.raises(RecordDecodeError, match=f"record {want} of the batch: field 'text' is not valid UTF-8"):
            decode_var(TEXT, column(payloads))


def test_an_empty_column_and_a_sliced_one():
    assert decode_var(TEXT, column([])) == []
    col = column([b"ab", "cé".encode(), b"", b"d"])
    sliced = VarColumn(col.offsets[1:][::1], col.data)  # offsets not starting at 0
    assert decode_var(TEXT, sliced) == ["cé", "", "d"]
