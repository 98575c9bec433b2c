"""Read CSV files with pyarrow's streaming reader, one segment per file.

A CSV file cannot be cut at arbitrary bytes (a quoted value may hold newlines), so files are the
unit of parallelism. Rows with the wrong number of fields become :class:`BadRow` markers with
their line number; blank lines are skipped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ...errors import SourceError
from .base import BadRow, Chunk, Source, SourceInfo

SUFFIXES = (".csv", ".tsv")
_BLOCK_BYTES = 4 << 20


@dataclass
class _Invalid:
    """Rows the parser set aside, keyed by record number (1-based, header included)."""

    rows: dict[int, tuple[str, str]] = field(default_factory=dict)  # number -> (reason, text)

    def handler(self, row: pacsv.InvalidRow) -> str:
        if row.number is None:  # only multi-threaded reading leaves it unknown
            return "error"
        reason = f"expected {row.expected_columns} fields, found {row.actual_columns}"
        self.rows[row.number] = (reason, row.text)
        return "skip"


class CsvSource(Source):
    """CSV files with a header line (``.tsv``: tab-separated), read in sorted path order.

    Column types are inferred by Arrow from each file's first 4 MB; a later value that does not
    fit (text in a numeric column) stops the pack with a SourceError naming the column.
    """

    def __init__(self, paths: str | os.PathLike | Sequence[str | os.PathLike]) -> None:
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        self.paths = sorted(os.fspath(p) for p in paths)
        if not self.paths:
            raise SourceError("no CSV files to read")
        self.description = f"csv: {self.paths[0]} ({len(self.paths)} files)"

    def info(self) -> SourceInfo:
        return SourceInfo(bytes_hint=sum(self.segment_bytes(p) for p in self.paths))

    def segments(self) -> list[str]:
        return list(self.paths)

    def segment_bytes(self, segment: str) -> int:
        try:
            return os.path.getsize(segment)
        except OSError as exc:
            raise SourceError(f"{segment}: cannot read: {exc}") from None

    def read(self, segment: str) -> Iterator[Chunk | BadRow]:
        invalid = _Invalid()
        parse = pacsv.ParseOptions(
            delimiter="\t" if segment.lower().endswith(".tsv") else ",",
            newlines_in_values=True,
            invalid_row_handler=invalid.handler,
        )
        # Single-threaded: only then does Arrow give the record number of an invalid row.
        options = pacsv.ReadOptions(use_threads=False, block_size=_BLOCK_BYTES)
        cursor = _Cursor(segment, invalid)
        try:
            reader = pacsv.open_csv(segment, read_options=options, parse_options=parse)
            for batch in reader:
                yield from cursor.batch(batch)
        except FileNotFoundError:
            raise SourceError(f"{segment}: no such file") from None
        except (pa.ArrowInvalid, OSError) as exc:
            raise SourceError(f"{segment}: {exc}") from None
        yield from cursor.finish()


class _Cursor:
    """Walks a file's records in order, turning batches and set-aside rows into chunks and BadRows.

    Arrow numbers records, not lines; lines are rebuilt by adding the newlines inside quoted
    values of earlier records, which makes them exact at every chunk start and bad row except
    after blank lines (Arrow skips them without a trace, so each shifts later numbers by one).
    Within a chunk, ``Chunk.where`` assumes one line per row, so it is approximate after a row
    whose quoted value spans lines.
    """

    def __init__(self, path: str, invalid: _Invalid) -> None:
        self.path = path
        self.invalid = invalid
        self.record = 2  # record 1 is the header
        self.line = 2  # assumes a one-line header

    def _set_aside(self) -> Iterator[BadRow]:
        while self.record in self.invalid.rows:
            reason, text = self.invalid.rows.pop(self.record)
            yield BadRow(self.path, f"{reason}: {text[:80]!r}", row=self.line, row_label="line")
            self.record += 1
            self.line += 1 + text.count("\n")

    def batch(self, batch: pa.RecordBatch) -> Iterator[Chunk | BadRow]:
        extra = _embedded_newlines(batch)
        start = 0
        while start < batch.num_rows:
            yield from self._set_aside()
            # Good rows run until the next set-aside record, which the parser already met.
            later = [n for n in self.invalid.rows if n > self.record]
            run = min(later) - self.record if later else batch.num_rows
            stop = min(batch.num_rows, start + run)
            columns = dict(zip(batch.schema.names, batch.slice(start, stop - start).columns))
            yield Chunk(columns, origin=self.path, first_row=self.line, row_label="line")
            self.record += stop - start
            self.line += stop - start + int(extra[start:stop].sum())
            start = stop
        yield from self._set_aside()

    def finish(self) -> Iterator[BadRow]:
        yield from self._set_aside()
        for number in sorted(self.invalid.rows):  # records past the last batch
            self.record = number
            yield from self._set_aside()


def _embedded_newlines(batch: pa.RecordBatch) -> np.ndarray:
    """Newlines inside each row's values (only text can hold them)."""
    total = np.zeros(batch.num_rows, dtype=np.int64)
    for col in batch.columns:
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            total += pc.count_substring(col, "\n").fill_null(0).to_numpy()
    return total
