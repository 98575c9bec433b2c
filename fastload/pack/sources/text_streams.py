"""CSV text checks and transforms around pyarrow's streaming reader.

:func:`unclosed_quote_line` follows pyarrow's quoting rules over a whole file (a Numba scan of
the quotes alone) to tell whether it ends inside a quoted value, and where that value opened.
:class:`WhitespaceToTabs` turns whitespace-separated text (``--delimiter whitespace``) into
tab-separated text: runs of spaces and tabs become one tab, leading and trailing ones go, and
quoted values are kept as they are.
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


def unclosed_quote_line(stream: BinaryIO, delimiter: str) -> int | None:
    """The 1-based line where a quoted value still open at the end of ``stream`` opened, or None."""
    from ..._kernels.text_scan import CSV_FIELD_START, CSV_QUOTED, csv_classes, csv_quote_state

    classes = csv_classes(delimiter.encode())
    state, lines_before, opened_line = CSV_FIELD_START, 0, None
    while data := stream.read(_READ_BYTES):
        buf = np.frombuffer(data, np.uint8)
        state, opened = csv_quote_state(buf, np.flatnonzero(buf == _QUOTE[0]), classes, state)
        if opened >= 0:
            opened_line = lines_before + data.count(b"\n", 0, opened) + 1
        lines_before += data.count(b"\n")
    return opened_line if state == CSV_QUOTED else None


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
