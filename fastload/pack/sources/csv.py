"""Read CSV files with pyarrow's streaming reader, one segment per file.

A CSV file cannot be cut at arbitrary bytes (a quoted value may hold newlines), so files are the
unit of parallelism. Rows with the wrong number of fields become :class:`BadRow` markers with
their line number and pyarrow's own reason; blank lines are skipped. The bytes pass through a
quote scanner on their way to pyarrow: a quoted value still open at the end of the file (which
pyarrow accepts, swallowing every later line into that one value) makes its record a bad row
naming the line where the quote opened.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ...errors import SourceError
from .base import BadRow, Chunk, Source, SourceInfo, describe_files, sorted_paths
from .compressed import STREAM_ERRORS, open_input, read_error, without_compression
from .csv_retype import failed_column, from_text
from .text_streams import WhitespaceToTabs, unclosed_quote_line

SUFFIXES = (".csv", ".tsv")
WHITESPACE = "whitespace"  # the --delimiter value for fields separated by runs of spaces and tabs
_DELIMITER_NAMES = {"\\t": "\t", "tab": "\t", "space": " ", "comma": ",", "semicolon": ";", "pipe": "|"}
_BLOCK_BYTES = 4 << 20
_ROW_IN_MESSAGE = re.compile(r"Row #(\d+)")


def parse_delimiter(text: str | None) -> str | None:
    """A --delimiter value: one character, an escape or name (``\\t``, ``tab``, ``semicolon``...),
    or ``whitespace``; None keeps the default (tab for ``.tsv``, else comma)."""
    if text is None or text == WHITESPACE:
        return text
    value = _DELIMITER_NAMES.get(text.lower() if len(text) > 1 else text, text)
    if len(value) != 1 or value in "\"\r\n":
        raise SourceError(
            f"delimiter must be one character (not a quote or newline), an escape or name "
            f"({', '.join(_DELIMITER_NAMES)}) or {WHITESPACE!r}; got {text!r}"
        )
    return value


@dataclass
class _Invalid:
    """Rows the parser set aside, keyed by record number (1-based, header included)."""

    rows: dict[int, tuple[str, str]] = field(default_factory=dict)  # number -> (reason, text)

    def handler(self, row: pacsv.InvalidRow) -> str:
        if row.number is None:  # only multi-threaded reading leaves it unknown
            return "error"
        # pyarrow's own wording, as it reads without the handler
        reason = f"Expected {row.expected_columns} columns, got {row.actual_columns}"
        self.rows[row.number] = (reason, row.text)
        return "skip"


class CsvSource(Source):
    """CSV files with a header line (``.tsv``: tab-separated), plain or compressed, in sorted path order.

    ``delimiter`` is one character, or ``"whitespace"`` for fields separated by runs of spaces
    and tabs (leading and trailing ones ignored; a quoted value may then not span lines). Column
    types are inferred by Arrow from each file's first 4 MB; a later value that does not fit
    (text in a numeric column) is a bad row naming its line and field (see :mod:`.csv_retype`).
    """

    def __init__(self, paths: str | os.PathLike | Sequence[str | os.PathLike], *,
                 delimiter: str | None = None) -> None:
        self.paths = sorted_paths(paths, "CSV files")
        self.delimiter = parse_delimiter(delimiter)
        given = "" if self.delimiter is None else f"delimiter {self.delimiter!r}"
        self.description = describe_files("CSV", self.paths, given)

    def info(self) -> SourceInfo:
        return SourceInfo(bytes_hint=sum(self.segment_bytes(p) for p in self.paths))

    def segments(self) -> list[str]:
        return list(self.paths)

    def segment_bytes(self, segment: str) -> int:
        return self.files.size(segment)

    def _text(self, path: str, delimiter: str):
        """The file's (decompressed) bytes, whitespace-separated fields turned to tab-separated."""
        stream = open_input(path, self.files)
        return WhitespaceToTabs(stream) if delimiter == WHITESPACE else stream

    def _delimiter_for(self, path: str) -> str:
        if self.delimiter is not None:
            return self.delimiter
        return "\t" if without_compression(path).lower().endswith(".tsv") else ","

    def read(self, segment: str) -> Iterator[Chunk | BadRow]:
        """The file's rows; when a column meets a value its inferred type cannot hold, the file is
        read again with that column as text (see :mod:`.csv_retype`), handing on only the rows
        not yet handed on."""
        retyped: dict[str, pa.DataType] = {}  # column -> the type inferred from the first block
        types: dict[str, pa.DataType] | None = None  # the first reading's types, kept when re-reading
        done = 2  # the first record (header = 1) not yet handed on
        while True:
            try:
                for item, record in self._read_file(segment, types, retyped):
                    count = len(item) if isinstance(item, Chunk) else 1
                    if record + count <= done:
                        continue
                    if record < done:  # only a chunk spans several records
                        skip = done - record
                        item = Chunk({k: v.slice(skip) for k, v in item.columns.items()}, item.origin,
                                     item.first_row + skip, item.row_label)
                    yield item
                    done = record + count
                return
            except _TypeChanged as change:
                types = types or change.types
                retyped[change.column] = types[change.column]

    def _read_file(self, segment: str, types: dict | None,
                   retyped: dict[str, pa.DataType]) -> Iterator[tuple[Chunk | BadRow, int]]:
        """One reading of the file: (item, its first record number) pairs, in order."""
        delimiter = self._delimiter_for(segment)
        invalid = _Invalid()
        parse = pacsv.ParseOptions(
            delimiter="\t" if delimiter == WHITESPACE else delimiter,
            newlines_in_values=True,
            invalid_row_handler=invalid.handler,
        )
        # Single-threaded: only then does Arrow give the record number of an invalid row.
        options = pacsv.ReadOptions(use_threads=False, block_size=_BLOCK_BYTES)
        convert = pacsv.ConvertOptions(column_types={**types, **{c: pa.string() for c in retyped}}) if types else None
        cursor = _Cursor(segment, invalid, retyped)
        stream = self._text(segment, delimiter)
        names: list[str] = []
        held = None  # the last item waits: the file's end may make it bad
        try:
            reader = pacsv.open_csv(stream, read_options=options, parse_options=parse, convert_options=convert)
            names = reader.schema.names
            for batch in reader:
                for item in cursor.batch(batch):
                    if held is not None:
                        yield held
                    held = item
        except pa.ArrowInvalid as exc:
            failed = failed_column(str(exc), names)
            if failed is not None and failed[0] not in retyped:
                raise _TypeChanged(failed[0], dict(zip(names, reader.schema.types))) from None
            raise _read_failure(segment, exc, cursor) from None
        except STREAM_ERRORS as exc:
            raise _read_failure(segment, exc, cursor) from None
        finally:
            stream.close()
        for item in cursor.finish():
            if held is not None:
                yield held
            held = item
        if held is not None:
            last, record = held
            # A quote left open swallows every later line into the last record's value, so only
            # when that record spans lines is the file scanned for it (a second read, then).
            opened = None
            if cursor.last_record_lines > 1:
                with self._text(segment, delimiter) as text:
                    opened = unclosed_quote_line(text, parse.delimiter)
            for item in _check_last(last, opened, segment):
                at_end = isinstance(item, BadRow) and isinstance(last, Chunk)
                yield item, record + (len(last) - 1 if at_end else 0)


class _TypeChanged(Exception):
    """A column met a value its inferred type cannot hold: read the file again with it as text."""

    def __init__(self, column: str, types: dict[str, pa.DataType]) -> None:
        super().__init__(column)
        self.column = column
        self.types = types


def _check_last(item: Chunk | BadRow, opened: int | None, path: str) -> Iterator[Chunk | BadRow]:
    """``item`` holds the file's last record: a bad row when a quote ``opened`` on that line never closes."""
    if opened is None:
        yield item
        return
    reason = (f"the quoted value opened on line {opened} is never closed, so every "
              "line after it was read into that one value; close the quote")
    if isinstance(item, BadRow):
        yield BadRow(item.origin, f"{reason} ({item.reason})", item.row, item.row_label)
        return
    n = len(item)
    if n > 1:
        yield Chunk({k: v.slice(0, n - 1) for k, v in item.columns.items()}, item.origin,
                    item.first_row, item.row_label)
    yield BadRow(path, reason, row=item.first_row + n - 1, row_label="line")


def _read_failure(path: str, exc: BaseException, cursor: "_Cursor") -> SourceError:
    if not isinstance(exc, pa.ArrowInvalid):
        return read_error(path, exc)
    match = _ROW_IN_MESSAGE.search(str(exc))
    if match is None:
        return SourceError(f"{path}: {exc}")
    # Arrow numbers records (header = 1); lines are exact up to here, so count on from the cursor
    return SourceError(f"{path} line {cursor.line + int(match.group(1)) - cursor.record} (about): {exc}")


class _Cursor:
    """Walks a file's records in order, turning batches and set-aside rows into chunks and BadRows.

    Arrow numbers records, not lines; lines are rebuilt by adding the newlines inside quoted
    values of earlier records, which makes them exact at every chunk start and bad row except
    after blank lines (Arrow skips them without a trace, so each shifts later numbers by one).
    Within a chunk, ``Chunk.where`` assumes one line per row, so it is approximate after a row
    whose quoted value spans lines.
    """

    def __init__(self, path: str, invalid: _Invalid, retyped: dict[str, pa.DataType]) -> None:
        self.path = path
        self.invalid = invalid
        self.retyped = retyped  # columns read as text, to cast back to these types
        self.record = 2  # record 1 is the header
        self.line = 2  # assumes a one-line header
        self.last_record_lines = 0  # lines the last record read so far spans

    def _set_aside(self) -> Iterator[tuple[BadRow, int]]:
        while self.record in self.invalid.rows:
            reason, text = self.invalid.rows.pop(self.record)
            yield BadRow(self.path, f"{reason}: {text[:80]!r}", row=self.line, row_label="line"), self.record
            self.record += 1
            self.last_record_lines = 1 + text.count("\n")
            self.line += self.last_record_lines

    def batch(self, batch: pa.RecordBatch) -> Iterator[tuple[Chunk | BadRow, int]]:
        extra = _embedded_newlines(batch)
        start = 0
        while start < batch.num_rows:
            yield from self._set_aside()
            # Good rows run until the next set-aside record, which the parser already met.
            later = [n for n in self.invalid.rows if n > self.record]
            run = min(later) - self.record if later else batch.num_rows
            stop = min(batch.num_rows, start + run)
            yield from self._run(dict(zip(batch.schema.names, batch.slice(start, stop - start).columns)),
                                 extra[start:stop])
            start = stop
        yield from self._set_aside()

    def _run(self, columns: dict[str, pa.Array], extra: np.ndarray) -> Iterator[tuple[Chunk | BadRow, int]]:
        """Consecutive parsed records; values a retyped column cannot hold make their rows bad."""
        n = len(extra)
        bad: dict[int, str] = {}
        for name, target in self.retyped.items():
            columns[name], reasons = from_text(columns[name], target)
            for row, reason in reasons.items():
                bad.setdefault(row, f"field {name!r}: {reason}")
        lines = self.line + np.arange(n) + np.cumsum(extra) - extra  # each record's first line
        start = 0
        for row in [*sorted(bad), n]:
            if row > start:
                part = {k: v.slice(start, row - start) for k, v in columns.items()}
                yield Chunk(part, self.path, int(lines[start]), "line"), self.record + start
            if row < n:
                yield BadRow(self.path, bad[row], row=int(lines[row]), row_label="line"), self.record + row
            start = row + 1
        self.record += n
        self.line += n + int(extra.sum())
        if n:
            self.last_record_lines = 1 + int(extra[-1])

    def finish(self) -> Iterator[tuple[BadRow, int]]:
        yield from self._set_aside()
        for number in sorted(self.invalid.rows):  # records past the last batch
            self.record = number
            yield from self._set_aside()


def _embedded_newlines(batch: pa.RecordBatch) -> np.ndarray:
    """Newlines inside each row's values (only text can hold them; invalid UTF-8 reads as binary)."""
    total = np.zeros(batch.num_rows, dtype=np.int64)
    for col in batch.columns:
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type) or pa.types.is_binary(col.type):
            total += pc.count_substring(col, "\n").fill_null(0).to_numpy()
    return total
