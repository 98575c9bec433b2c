"""UTF-8 text kernels of dedup's text normalisation (rows given as offsets into one byte buffer).

``collapse_whitespace`` makes each run of white space one ASCII space and drops it at both ends,
as ``" ".join(s.split())`` does in Python, with Python's ``str.isspace`` set: on 1 M texts of
~200 bytes it took 0.1 s where Arrow's ``utf8_split_whitespace`` + ``binary_join`` +
``utf8_trim_whitespace`` took 3.3 s. ``rows_with_byte_at_least`` finds the rows holding a code
point at or above U+0300 (lead byte 0xCC): every other row is already in NFC (no code point
below U+0300 decomposes or combines), so Arrow's slow ``utf8_normalize`` (4.5 s on the same
texts) runs only on the rest.
"""

from __future__ import annotations

import numpy as np
from numba import njit


# byte classes: 0 a byte of a non-space character, 1 an ASCII white space, 2 a lead byte that
# may start a multi-byte white space (U+0085, U+00A0, U+1680, U+2000-200A, U+2028/9, U+202F,
# U+205F, U+3000)
_CLASSES = np.zeros(256, np.uint8)
_CLASSES[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = 1
_CLASSES[[0xC2, 0xE1, 0xE2, 0xE3]] = 2
_CLASSES.flags.writeable = False


@njit(inline="always")
def _wide_space_len(d, p, end):
    """Byte length of the multi-byte white space at ``p``, or 0 when it is another character."""
    b = d[p]
    if b == 0xC2:
        return 2 if p + 1 < end and (d[p + 1] == 0x85 or d[p + 1] == 0xA0) else 0
    if p + 2 >= end:
        return 0
    b1, b2 = d[p + 1], d[p + 2]
    if b == 0xE1:
        return 3 if b1 == 0x9A and b2 == 0x80 else 0
    if b == 0xE2:
        if b1 == 0x80 and (b2 <= 0x8A or b2 == 0xA8 or b2 == 0xA9 or b2 == 0xAF):
            return 3
        return 3 if b1 == 0x81 and b2 == 0x9F else 0
    return 3 if b1 == 0x80 and b2 == 0x80 else 0  # 0xE3: U+3000


@njit(nogil=True, cache=True)
def collapse_whitespace(data, offsets, out, out_offsets, classes=_CLASSES):
    """Write each row with its white-space runs as one space and none at the ends; ``out`` is
    at least ``len(data)`` bytes, ``out_offsets`` has ``len(offsets)`` entries."""
    pos = 0
    out_offsets[0] = 0
    for i in range(len(offsets) - 1):
        p, end = offsets[i], offsets[i + 1]
        row_start = pos
        gap = False
        while p < end:
            c = classes[data[p]]
            k = 1 if c == 1 else (_wide_space_len(data, p, end) if c == 2 else 0)
            if k:
                gap = True
                p += k
                continue
            if gap and pos > row_start:
                out[pos] = 32
                pos += 1
            gap = False
            out[pos] = data[p]
            pos += 1
            p += 1
        out_offsets[i + 1] = pos


@njit(nogil=True, cache=True)
def rows_with_byte_at_least(data, offsets, threshold, out):
    """``out[i]`` = whether row ``i`` holds a byte >= ``threshold``."""
    for i in range(len(offsets) - 1):
        found = False
        for p in range(offsets[i], offsets[i + 1]):
            if data[p] >= threshold:
                found = True
                break
        out[i] = found
