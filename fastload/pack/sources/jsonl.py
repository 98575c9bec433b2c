"""Read JSON Lines files in byte ranges cut at line boundaries, so big files parse in parallel.

Each segment (~32 MB) is parsed by ``pyarrow.json`` in one block. The block is first scanned for
nesting deeper than :data:`MAX_DEPTH` (pyarrow's parser would overflow its stack on it). When
the scan finds such a line, when pyarrow fails (an invalid line, a value that changes type, a
line that is not an object), when the segment holds blank lines or values spanning lines, or
when a float column holds a value of 2**53 or more (pyarrow reads an integer beyond int64 as a
double and turns its whole column into doubles, rounding every large integer in it), the segment
is parsed again line by line with ``json``, which keeps integers exact: each bad line becomes a
:class:`BadRow` with its line number, and the good rows around it are still yielded.

A compressed file (``.jsonl.gz``, ``.zst``, ...) is one segment, decompressed as a stream and
parsed in blocks of the same size. A ``.json`` file whose text starts with ``[`` is a JSON array
of objects (see :mod:`.json_array`); any other ``.json`` file is read as JSON Lines.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.json as pajson

from ...errors import SourceError
from .base import BadRow, Chunk, Source, SourceInfo, describe_files, sorted_paths
from .compressed import compression_of, line_blocks, open_input, read_error, without_compression
from .json_array import is_json_array, read_json_array

SUFFIXES = (".jsonl", ".ndjson", ".json")
SEGMENT_BYTES = 32 << 20
MAX_DEPTH = 1000  # nesting levels; like Python's json (its recursion limit), far below pyarrow's crash
_COUNT_BLOCK = 16 << 20  # read size while counting newlines
_BOM = b"\xef\xbb\xbf"
_EXACT_FLOAT_INTS = 2**53  # from here on, not every integer has a float64


@dataclass(frozen=True)
class JsonlSegment:
    """Bytes ``[start, stop)`` of a file, starting at 1-based line ``first_line``.

    ``layout`` is ``"range"`` for a byte range of a plain file, ``"stream"`` for a whole
    compressed file (``stop`` is then its size on disk) and ``"array"`` for a JSON array file.
    """

    path: str
    start: int
    stop: int
    first_line: int
    layout: str = "range"


class JsonlSource(Source):
    """JSON Lines files (one JSON object per line) and JSON array files, read in sorted path order.

    The schema is left to the pack driver to infer from the first chunk: Arrow infers types per
    segment, so an all-null or missing key in one segment says nothing about the others.
    """

    def __init__(self, paths: str | os.PathLike | Sequence[str | os.PathLike], *,
                 segment_size: int = SEGMENT_BYTES) -> None:
        self.paths = sorted_paths(paths, "JSON Lines files")
        if segment_size < 1:
            raise SourceError(f"segment_size must be positive, not {segment_size}")
        self.segment_size = segment_size
        kind = "JSON" if all(without_compression(p).lower().endswith(".json") for p in self.paths) else "JSON Lines"
        self.description = describe_files(kind, self.paths)

    def info(self) -> SourceInfo:
        return SourceInfo(bytes_hint=sum(self.files.size(p) for p in self.paths))

    def segments(self) -> list[JsonlSegment]:
        out: list[JsonlSegment] = []
        for path in self.paths:
            size = self.files.size(path)
            if without_compression(path).lower().endswith(".json") and is_json_array(path, self.files):
                out.append(JsonlSegment(path, 0, size, 1, "array"))
            elif compression_of(path):
                out.append(JsonlSegment(path, 0, size, 1, "stream"))
            else:
                with self.files.open(path) as f:
                    bounds = _cut_points(f, size, self.segment_size)
                    lines = _line_numbers(f, bounds[:-1])
                out.extend(JsonlSegment(path, a, b, n) for a, b, n in zip(bounds, bounds[1:], lines))
        return out

    def segment_bytes(self, segment: JsonlSegment) -> int:
        return segment.stop - segment.start

    def read(self, segment: JsonlSegment) -> Iterator[Chunk | BadRow]:
        if segment.layout == "array":
            yield from read_json_array(segment.path, self.files)
            return
        if segment.layout == "stream":
            with open_input(segment.path, self.files) as f:
                for data, first_line in line_blocks(f, segment.path, self.segment_size):
                    yield from parse_block(data, segment.path, first_line)
            return
        try:
            with self.files.open(segment.path) as f:
                f.seek(segment.start)
                data = f.read(segment.stop - segment.start)
        except OSError as exc:
            raise read_error(segment.path, exc) from None
        yield from parse_block(data, segment.path, segment.first_line)


def parse_block(data: bytes, path: str, first_line: int) -> Iterator[Chunk | BadRow]:
    """The rows of whole JSON lines ``data`` (line ``first_line`` onwards) as chunks and bad rows."""
    if first_line == 1 and data.startswith(_BOM):
        data = data[len(_BOM):]
    too_deep = _depth_scan(np.frombuffer(data, np.uint8)) >= 0
    table = None if too_deep else _parse_arrow(data)
    if table is not None and not _may_hold_rounded_ints(table):
        columns = {name: table.column(name) for name in table.column_names}
        yield Chunk(columns, origin=path, first_row=first_line, row_label="line")
        return
    yield from _parse_lines(data, path, first_line, check_depth=too_deep)


def _depth_scan(buf: np.ndarray) -> int:
    from ..._kernels.text_scan import JSON_CLASSES, json_too_deep

    return json_too_deep(buf, JSON_CLASSES, MAX_DEPTH)


def _cut_points(f: io.BufferedReader, size: int, target: int) -> list[int]:
    """Offsets ``0 = b0 < b1 < ... < bk = size``, each just after a newline, ~``target`` apart."""
    bounds = [0]
    while bounds[-1] + target < size:
        # Back one byte so a target landing on a line start keeps that line in the next segment.
        f.seek(bounds[-1] + target - 1)
        f.readline()
        if f.tell() >= size:
            break
        bounds.append(f.tell())
    bounds.append(size)
    return bounds if size else []


def _line_numbers(f: io.BufferedReader, starts: list[int]) -> list[int]:
    """1-based line number at each offset of ``starts``, counting newlines from the file start."""
    out, pos, newlines = [], 0, 0
    f.seek(0)
    for start in starts:
        while pos < start:
            block = f.read(min(_COUNT_BLOCK, start - pos))
            newlines += block.count(b"\n")
            pos += len(block)
        out.append(newlines + 1)
    return out


def _parse_arrow(data: bytes) -> pa.Table | None:
    """The segment as a table with one row per line, or None when that cannot be had."""
    if not data.strip():
        return None
    # One block for the whole segment: types are inferred over all of it, and a line longer
    # than a block cannot split; the pack workers already run segments in parallel.
    options = pajson.ReadOptions(use_threads=False, block_size=len(data) + 1)
    try:
        table = pajson.read_json(io.BytesIO(data), read_options=options)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    lines = data.count(b"\n") + (not data.endswith(b"\n"))
    # Arrow skips blank lines and joins a value spanning lines; then row i is not line first_line + i.
    return table if table.num_rows == lines else None


def _may_hold_rounded_ints(table: pa.Table) -> bool:
    """True when a float column (at any depth) holds a value of magnitude 2**53 or more.

    pyarrow reads an integer that does not fit int64 as a double and then makes its whole column
    double, so every integer of that column above 2**53 is silently rounded; such a segment is
    parsed again with ``json``, which keeps them exact. A genuine float that large only costs the
    slower parse.
    """
    import pyarrow.compute as pc

    for column in table.columns:
        for chunk in column.chunks:
            for leaf in _float_leaves(chunk):
                top = pc.max(pc.abs(leaf)).as_py() if len(leaf) else None
                if top is not None and top >= _EXACT_FLOAT_INTS:
                    return True
    return False


def _float_leaves(arr: pa.Array) -> Iterator[pa.Array]:
    t = arr.type
    if pa.types.is_floating(t):
        yield arr
    elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        yield from _float_leaves(arr.flatten())
    elif pa.types.is_struct(t):
        for i in range(t.num_fields):
            yield from _float_leaves(arr.field(i))


def _parse_lines(data: bytes, path: str, first_line: int, *, check_depth: bool) -> Iterator[Chunk | BadRow]:
    """Parse line by line: chunks of consecutive good lines, a BadRow per bad line."""
    rows: list[dict[str, Any]] = []
    run_start = first_line
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # the newline ending the last line starts no new line
    for number, line in enumerate(lines, start=first_line):
        reason = None
        if line.strip():
            reason, value = _parse_line(line, check_depth)
            if reason is None:
                rows.append(value)
                continue
        if rows:
            yield Chunk(columns_of(rows), origin=path, first_row=run_start, row_label="line")
            rows = []
        if reason is not None:
            yield BadRow(path, reason, row=number, row_label="line")
        run_start = number + 1
    if rows:
        yield Chunk(columns_of(rows), origin=path, first_row=run_start, row_label="line")


def _parse_line(line: bytes, check_depth: bool) -> tuple[str | None, Any]:
    """``(None, object)`` for a line holding a JSON object, else ``(reason, None)``."""
    too_deep = f"nested more than {MAX_DEPTH} levels deep"
    if check_depth and _depth_scan(np.frombuffer(line, np.uint8)) >= 0:
        return too_deep, None
    try:
        value = json.loads(line)
    except RecursionError:
        return too_deep, None
    except ValueError as exc:  # UnicodeDecodeError is a ValueError
        return f"invalid JSON: {exc}", None
    if not isinstance(value, dict):
        return f"a JSON {type(value).__name__}, not an object", None
    return None, value


def columns_of(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Rows as columns: keys in order of first appearance, None where a row lacks a key."""
    keys = dict.fromkeys(k for row in rows for k in row)
    return {k: [row.get(k) for row in rows] for k in keys}
