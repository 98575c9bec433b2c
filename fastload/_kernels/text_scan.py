"""Byte scans that pack runs over text inputs before pyarrow parses them.

``json_too_deep`` finds JSON nested deeper than a limit: pyarrow's JSON reader recurses once per
level and overflows its stack (SIGSEGV) somewhere past 50,000 levels, so such input must never
reach it. ``csv_quote_state`` follows pyarrow's CSV quoting rules, so that a quoted value still
open at the end of a file (which pyarrow silently accepts, swallowing every later line into it)
is found with the place where it opened.

The JSON scan is one pass over the bytes through a 256-entry class table (most bytes are class 0
and take one predictable branch: 1.1 GB/s on this project's VM, vs 0.7 GB/s for a chain of byte
comparisons); the CSV scan visits only the quotes. Neither keeps state between calls beyond
what it returns.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# byte classes of the JSON scan
_J_NEWLINE, _J_QUOTE, _J_BACKSLASH, _J_OPEN, _J_CLOSE = 1, 2, 3, 4, 5
JSON_CLASSES = np.zeros(256, np.uint8)
JSON_CLASSES[ord("\n")] = _J_NEWLINE
JSON_CLASSES[ord('"')] = _J_QUOTE
JSON_CLASSES[ord("\\")] = _J_BACKSLASH
JSON_CLASSES[[ord("["), ord("{")]] = _J_OPEN
JSON_CLASSES[[ord("]"), ord("}")]] = _J_CLOSE
JSON_CLASSES.flags.writeable = False

# CSV scanner states (pyarrow's parser: quoting only starts at the beginning of a field; in a
# quoted value "" is a literal quote, and a quote followed by anything else ends the quoting)
CSV_FIELD_START, CSV_UNQUOTED, CSV_QUOTED, CSV_QUOTE_IN_QUOTED = 0, 1, 2, 3
_C_SEPARATOR = 1
_QUOTE_BYTE = 34  # "


def csv_classes(delimiter: bytes) -> np.ndarray:
    """The class table of :func:`csv_quote_state` for one delimiter (the quote is ``"``)."""
    table = np.zeros(256, np.uint8)
    table[[ord(delimiter), ord("\n"), ord("\r")]] = _C_SEPARATOR
    return table


@njit(nogil=True, cache=True)
def json_too_deep(buf, classes, limit):
    """Offset of the first bracket that opens a level past ``limit`` in ``buf`` (uint8), or -1.

    The depth runs on across lines, as pyarrow parses a value that spans lines; it never goes
    below 0, so stray closing brackets cannot hide a deep value after them. Brackets inside
    strings do not count. Where the text is not valid JSON the scan may err on the side of
    "too deep", never the other way on the valid prefix that pyarrow would parse.
    """
    depth = 0
    in_string = False
    n = buf.shape[0]
    i = 0
    while i < n:
        k = classes[buf[i]]
        if k != 0:
            if k == _J_NEWLINE:
                in_string = False  # a JSON string cannot hold a newline: the parser stops there
            elif in_string:
                if k == _J_BACKSLASH:
                    i += 1  # the escaped byte
                elif k == _J_QUOTE:
                    in_string = False
            elif k == _J_QUOTE:
                in_string = True
            elif k == _J_OPEN:
                depth += 1
                if depth > limit:
                    return i
            elif k == _J_CLOSE and depth > 0:
                depth -= 1
        i += 1
    return -1


@njit(nogil=True, cache=True)
def csv_quote_state(buf, quotes, classes, state):
    """Scan ``buf`` (uint8) from scanner ``state``; returns the state after it and the offset in
    ``buf`` of the last quote that opened a value (-1 if none did in ``buf``).

    ``quotes`` holds the offsets of the quote bytes in ``buf`` (``np.flatnonzero(buf == 34)``):
    only they can change the state, so the loop visits them alone (quote-heavy CSV: 0.74 GB/s
    byte by byte, ~3 GB/s this way); a quote opens a value when the byte before it separates
    fields, and inside a value a quote either doubles (a literal quote) or closes it.
    """
    n = buf.shape[0]
    opened = -1
    if n == 0:
        return state, opened
    first = 0
    if state == CSV_QUOTE_IN_QUOTED:  # the last buffer ended on a quote inside a value
        if buf[0] == _QUOTE_BYTE:
            state = CSV_QUOTED
            first = 1  # that quote pairs with the one before it
        else:
            state = CSV_FIELD_START if classes[buf[0]] == _C_SEPARATOR else CSV_UNQUOTED
    quoted = state == CSV_QUOTED
    i = 0
    while i < quotes.shape[0]:
        p = quotes[i]
        i += 1
        if p < first:
            continue
        if quoted:
            if p + 1 == n:
                return CSV_QUOTE_IN_QUOTED, opened  # doubled or closing: the next buffer tells
            if buf[p + 1] == _QUOTE_BYTE:
                i += 1  # "" inside a value: a literal quote
            else:
                quoted = False
        elif (p == 0 and state == CSV_FIELD_START) or (p > 0 and classes[buf[p - 1]] == _C_SEPARATOR):
            quoted = True
            opened = p
    if quoted:
        return CSV_QUOTED, opened
    return (CSV_FIELD_START if classes[buf[n - 1]] == _C_SEPARATOR else CSV_UNQUOTED), opened
