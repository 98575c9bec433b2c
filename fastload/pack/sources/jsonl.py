"""Read JSON Lines files in byte ranges cut at line boundaries, so big files parse in parallel.

Each segment (~32 MB) is parsed by ``pyarrow.json`` in one block. When that fails (an invalid
line, a value that changes type, a line that is not an object) or the segment holds blank lines,
the segment is parsed again line by line with ``json`` so that each bad line becomes a
:class:`BadRow` with its line number and the good rows around it are still yielded.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import pyarrow as pa
import pyarrow.json as pajson

from ...errors import SourceError
from .base import BadRow, Chunk, Source, SourceInfo, sorted_paths

SUFFIXES = (".jsonl", ".ndjson")
SEGMENT_BYTES = 32 << 20
_COUNT_BLOCK = 16 << 20  # read size while counting newlines
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class JsonlSegment:
    """Bytes ``[start, stop)`` of a file, starting at 1-based line ``first_line``."""

    path: str
    start: int
    stop: int
    first_line: int


class JsonlSource(Source):
    """JSON Lines files (one JSON object per line), read in sorted path order.

    The schema is left to the pack driver to infer from the first chunk: Arrow infers types per
    segment, so an all-null or missing key in one segment says nothing about the others.
    """

    def __init__(self, paths: str | os.PathLike | Sequence[str | os.PathLike], *,
                 segment_size: int = SEGMENT_BYTES) -> None:
        self.paths = sorted_paths(paths, "JSON Lines files")
        if segment_size < 1:
            raise SourceError(f"segment_size must be positive, not {segment_size}")
        self.segment_size = segment_size
        self.description = f"jsonl: {self.paths[0]} ({len(self.paths)} files)"

    def info(self) -> SourceInfo:
        return SourceInfo(bytes_hint=sum(_size(p) for p in self.paths))

    def segments(self) -> list[JsonlSegment]:
        out: list[JsonlSegment] = []
        for path in self.paths:
            size = _size(path)
            with open(path, "rb") as f:
                bounds = _cut_points(f, size, self.segment_size)
                lines = _line_numbers(f, bounds[:-1])
            out.extend(JsonlSegment(path, a, b, n) for a, b, n in zip(bounds, bounds[1:], lines))
        return out

    def segment_bytes(self, segment: JsonlSegment) -> int:
        return segment.stop - segment.start

    def read(self, segment: JsonlSegment) -> Iterator[Chunk | BadRow]:
        try:
            with open(segment.path, "rb") as f:
                f.seek(segment.start)
                data = f.read(segment.stop - segment.start)
        except OSError as exc:
            raise SourceError(f"{segment.path}: cannot read: {exc}") from None
        first_line = segment.first_line
        if segment.start == 0 and data.startswith(_BOM):
            data = data[len(_BOM):]
        table = _parse_arrow(data)
        if table is not None:
            columns = {name: table.column(name) for name in table.column_names}
            yield Chunk(columns, origin=segment.path, first_row=first_line, row_label="line")
            return
        yield from _parse_lines(data, segment.path, first_line)


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc}") from None


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
    # Arrow skips blank lines; then row i is no longer line first_line + i.
    return table if table.num_rows == lines else None


def _parse_lines(data: bytes, path: str, first_line: int) -> Iterator[Chunk | BadRow]:
    """Parse line by line: chunks of consecutive good lines, a BadRow per bad line."""
    rows: list[dict[str, Any]] = []
    run_start = first_line
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # the newline ending the last line starts no new line
    for number, line in enumerate(lines, start=first_line):
        reason = None
        if line.strip():
            try:
                value = json.loads(line)
            except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
                reason = f"invalid JSON: {exc}"
            else:
                if isinstance(value, dict):
                    rows.append(value)
                    continue
                reason = f"a JSON {type(value).__name__}, not an object"
        if rows:
            yield Chunk(_columns(rows), origin=path, first_row=run_start, row_label="line")
            rows = []
        if reason is not None:
            yield BadRow(path, reason, row=number, row_label="line")
        run_start = number + 1
    if rows:
        yield Chunk(_columns(rows), origin=path, first_row=run_start, row_label="line")


def _columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Rows as columns: keys in order of first appearance, None where a row lacks a key."""
    keys = dict.fromkeys(k for row in rows for k in row)
    return {k: [row.get(k) for row in rows] for k in keys}
