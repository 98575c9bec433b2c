"""Byte-stream wrappers between a CSV file and pyarrow's streaming reader.

:class:`QuoteWatch` follows the quoting state of the bytes pyarrow reads (one pass of a Numba
scan; a block without a quote costs one ``find``), so the CSV source can tell afterwards whether
the file ended inside a quoted value. :class:`WhitespaceToTabs` turns whitespace-separated text
(``--delimiter whitespace``) into tab-separated text: runs of spaces and tabs become one tab,
leading and trailing ones go, and quoted values are kept as they are.
"""

from __future__ import annotations

import re
from typing import BinaryIO

import numpy as np

_READ_BYTES = 1 << 20
_QUOTE = b'"'


class _Stream:
    """The file-like surface pyarrow's reader needs."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.closed = False

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._raw.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class QuoteWatch(_Stream):
    """Passes ``raw``'s bytes through unchanged while tracking where a quoted value is open."""

    def __init__(self, raw: BinaryIO, delimiter: str) -> None:
        from ..._kernels.text_scan import CSV_FIELD_START, csv_classes

        super().__init__(raw)
        self._classes = csv_classes(delimiter.encode())
        self._state = CSV_FIELD_START
        self._lines_before = 0  # newlines in the bytes already passed on
        self._opened_line: int | None = None  # 1-based line of the last quote that opened a value
        self._eof = False

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        if not data:
            self._eof = True
            return data
        self._scan(data)
        self._lines_before += data.count(b"\n")
        return data

    def _scan(self, data: bytes) -> None:
        from ..._kernels.text_scan import CSV_FIELD_START, CSV_UNQUOTED, csv_quote_state

        if self._state in (CSV_FIELD_START, CSV_UNQUOTED) and _QUOTE not in data:
            # no quote: only where the block ends matters
            self._state = CSV_FIELD_START if self._classes[data[-1]] else CSV_UNQUOTED
            return
        buf = np.frombuffer(data, np.uint8)
        quotes = np.flatnonzero(buf == _QUOTE[0])
        self._state, opened = csv_quote_state(buf, quotes, self._classes, self._state)
        if opened >= 0:
            self._opened_line = self._lines_before + data.count(b"\n", 0, opened) + 1

    @property
    def open_quote_line(self) -> int | None:
        """Where the quoted value still open at the end of the file opened; None when none is."""
        from ..._kernels.text_scan import CSV_QUOTED

        return self._opened_line if self._eof and self._state == CSV_QUOTED else None


_EDGE_BLANKS = re.compile(rb"(?m)^[ \t]+|[ \t]+(?=\r?$)")
_BLANK_RUN = re.compile(rb"[ \t]+")
_QUOTED_OR_BLANKS = re.compile(rb'"(?:[^"\n]|"")*"|[ \t]+')


class WhitespaceToTabs(_Stream):
    """``raw``'s text with each run of spaces and tabs between fields turned into one tab."""

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__(raw)
        self._rest = b""  # an unfinished line
        self._out = bytearray()
        self._eof = False

    def read(self, n: int = -1) -> bytes:
        while not self._eof and (n < 0 or len(self._out) < n):
            piece = self._raw.read(_READ_BYTES)
            if not piece:
                self._eof = True
                self._out += tabs_for_blanks(self._rest)
                self._rest = b""
                break
            data = self._rest + piece
            cut = data.rfind(b"\n") + 1
            self._out += tabs_for_blanks(data[:cut])
            self._rest = data[cut:]
        size = len(self._out) if n < 0 else min(n, len(self._out))
        out = bytes(self._out[:size])
        del self._out[:size]
        return out


def tabs_for_blanks(text: bytes) -> bytes:
    """Whole lines of whitespace-separated fields as tab-separated ones (quoted values kept)."""
    if _QUOTE not in text:  # the common case: two C-level substitutions
        return _BLANK_RUN.sub(b"\t", _EDGE_BLANKS.sub(b"", text))

    def replace(m: re.Match) -> bytes:
        token = m.group()
        if token.startswith(_QUOTE):
            return token
        a, b = m.span()
        at_edge = a == 0 or text[a - 1] in b"\r\n" or b == len(text) or text[b] in b"\r\n"
        return b"" if at_edge else b"\t"

    return _QUOTED_OR_BLANKS.sub(replace, text)
