"""Read a JSON file holding one array of objects (``[{"a": 1}, {"a": 2}]``), plain or compressed.

The file is decoded whole (one segment), then its elements are decoded one at a time with
``json``'s ``raw_decode``, so an element that is not an object becomes a :class:`BadRow` named by
its index, integers stay exact, and nesting too deep for the parser is a clear error. An element
that is not valid JSON ends the read with a SourceError naming the line and column: after it,
where the next element starts cannot be known. For data larger than memory, use JSON Lines.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

from ...errors import SourceError
from .base import BadRow, Chunk
from .compressed import STREAM_ERRORS, open_input, read_error
from .files import InputFiles

CHUNK_ROWS = 4096
_SNIFF_BYTES = 1 << 16
_BOM = "\ufeff"
_WHITESPACE = " \t\n\r"


def is_json_array(path: str, files: InputFiles | None = None) -> bool:
    """True when the file's first non-blank character (after a byte order mark) is ``[``."""
    with open_input(path, files) as f:
        try:
            while piece := f.read(_SNIFF_BYTES):
                text = piece.lstrip(b"\xef\xbb\xbf" + _WHITESPACE.encode())
                if text:
                    return text.startswith(b"[")
        except STREAM_ERRORS as exc:
            raise read_error(path, exc) from None
    return False


def read_json_array(path: str, files: InputFiles | None = None) -> Iterator[Chunk | BadRow]:
    """Chunks of the array's object elements, numbered from 0; a BadRow per other element."""
    from .jsonl import columns_of  # the same rows-to-columns rule as JSON Lines

    text = _read_text(path, files)
    decoder = json.JSONDecoder()
    pos = _skip(text, text.index("[") + 1)
    rows: list[dict[str, Any]] = []
    first = index = 0
    while pos < len(text) and text[pos] != "]":
        if index:
            if text[pos] != ",":
                raise _syntax_error(path, text, pos, "expected ',' or ']' after an element")
            pos = _skip(text, pos + 1)
        try:
            value, pos = decoder.raw_decode(text, pos)
        except RecursionError:
            raise SourceError(f"{path} element {index}: nested too deeply for the JSON parser; "
                              "the rest of the array cannot be read") from None
        except json.JSONDecodeError as exc:
            raise _syntax_error(path, text, exc.pos, exc.msg) from None
        pos = _skip(text, pos)
        if isinstance(value, dict):
            rows.append(value)
        else:
            if rows:
                yield Chunk(columns_of(rows), origin=path, first_row=first, row_label="element")
                rows = []
            yield BadRow(path, f"a JSON {type(value).__name__}, not an object", row=index, row_label="element")
            first = index + 1
        index += 1
        if len(rows) == CHUNK_ROWS:
            yield Chunk(columns_of(rows), origin=path, first_row=first, row_label="element")
            rows, first = [], index
    if pos >= len(text):
        raise _syntax_error(path, text, pos, "the array is not closed (missing ']')")
    if text[_skip(text, pos + 1):]:
        raise _syntax_error(path, text, _skip(text, pos + 1), "text after the closing ']'")
    if rows:
        yield Chunk(columns_of(rows), origin=path, first_row=first, row_label="element")


def _read_text(path: str, files: InputFiles | None) -> str:
    with open_input(path, files) as f:
        try:
            data = f.read()
        except STREAM_ERRORS as exc:
            raise read_error(path, exc) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path}: not UTF-8 text (byte {exc.start}): {exc.reason}") from None
    return text[1:] if text.startswith(_BOM) else text


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WHITESPACE:
        pos += 1
    return pos


def _syntax_error(path: str, text: str, pos: int, what: str) -> SourceError:
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return SourceError(f"{path} line {line} column {column}: invalid JSON array: {what}; "
                       "fix the file, or convert it to JSON Lines to skip bad records")
