"""Sources over Python objects: iterables of dicts, map-style torch Datasets, Arrow tables, DataFrames."""

from __future__ import annotations

from itertools import islice
from typing import Any, Iterable, Iterator

from ...errors import SourceError
from ...format.infer import infer_schema
from .base import BadRow, Chunk, Source, SourceInfo

CHUNK_ROWS = 4096
TABLE_SEGMENT_BYTES = 64 * 2**20


def _rows_to_chunk(rows: list[Any], origin: str, first: int, label: str,
                   errors: dict[int, str] | None = None) -> Iterator[Chunk | BadRow]:
    """Regroup dict rows as columns, one chunk per run of good rows so row numbers stay exact.

    Rows that are not dicts, whose keys differ from the first good row's, or listed in ``errors``
    (position -> reason) become bad rows.
    """
    errors = dict(errors or {})
    keyset = None
    for i, r in enumerate(rows):
        if i in errors:
            continue
        if not isinstance(r, dict):
            errors[i] = f"expected a dict record, got {type(r).__name__}"
        elif keyset is None:
            keyset = list(r)
        elif set(r) != set(keyset):
            errors[i] = f"fields {sorted(r)} differ from {sorted(keyset)}"
    run: list[dict[str, Any]] = []
    for i in range(len(rows) + 1):
        if i < len(rows) and i not in errors:
            run.append(rows[i])
            continue
        if run:
            yield Chunk({n: [r[n] for r in run] for n in keyset}, origin, first + i - len(run), label)
            run = []
        if i < len(rows):
            yield BadRow(origin, errors[i], first + i, label)


class IterableSource(Source):
    """Any iterable of dict records; read once, in the calling process (it cannot be split).

    The first records are read ahead to infer the schema and then replayed, so a generator is
    consumed exactly once.
    """

    parallel_safe = False
    resumable = False

    def __init__(self, records: Iterable[dict[str, Any]], description: str = "python iterable"):
        self._iter = iter(records)
        self._head: list[Any] = list(islice(self._iter, CHUNK_ROWS))
        self.description = description

    def info(self) -> SourceInfo:
        if not self._head:
            return SourceInfo()
        chunk = next((c for c in _rows_to_chunk(self._head, self.description, 0, "record")
                      if isinstance(c, Chunk)), None)
        return SourceInfo(schema=infer_schema(chunk.columns) if chunk else None)

    def segments(self):
        return ["all"]

    def read(self, segment):
        if self._iter is None:
            raise SourceError(f"{self.description} was already read; an iterable is packed once")
        rows, first = self._head, 0
        while rows:
            if not isinstance(rows[0], dict):
                raise SourceError(f"{self.description}: records must be dicts of field -> value, "
                                  f"got {type(rows[0]).__name__}")
            yield from _rows_to_chunk(rows, self.description, first, "record")
            first += len(rows)
            rows = list(islice(self._iter, CHUNK_ROWS))
        self._iter, self._head = None, []


class TorchMapSource(Source):
    """A map-style torch Dataset (``__len__`` + ``__getitem__`` returning dicts), split in index ranges."""

    mp_context = "fork"  # datasets often hold unpicklable state (open files, lambdas)
    resumable = False

    def __init__(self, dataset: Any, segment_rows: int = 16384):
        self.dataset = dataset
        self.n = len(dataset)
        self.segment_rows = segment_rows
        self.description = f"torch dataset {type(dataset).__name__} ({self.n} items)"

    def segments(self):
        return [(s, min(s + self.segment_rows, self.n)) for s in range(0, self.n, self.segment_rows)]

    def read(self, segment):
        start, stop = segment
        for lo in range(start, stop, CHUNK_ROWS):
            rows, errors = [], {}
            for i in range(lo, min(lo + CHUNK_ROWS, stop)):
                try:
                    rows.append(self.dataset[i])
                except Exception as exc:  # a user dataset may raise anything for one item
                    rows.append(None)
                    errors[i - lo] = f"{type(exc).__name__}: {exc}"
            yield from _rows_to_chunk(rows, self.description, lo, "index", errors)


class ArrowTableSource(Source):
    """A pyarrow Table (or a pandas DataFrame, converted once) split into ~64 MB row slices."""

    mp_context = "fork"  # the table is shared with forked workers instead of pickled
    resumable = False

    def __init__(self, table: Any):
        import pyarrow as pa

        if type(table).__module__.startswith("pandas"):
            table = pa.Table.from_pandas(table, preserve_index=False)
        elif isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        self.table = table
        n = table.num_rows
        per_row = max(1, table.nbytes // max(n, 1))
        self.segment_rows = max(1, TABLE_SEGMENT_BYTES // per_row)
        self.description = f"arrow table ({n} rows, {len(table.schema)} columns)"

    def info(self):
        from ...format.arrow_types import schema_from_arrow

        return SourceInfo(schema=schema_from_arrow(self.table.schema), bytes_hint=self.table.nbytes)

    def segments(self):
        n = self.table.num_rows
        return [(s, min(s + self.segment_rows, n)) for s in range(0, n, self.segment_rows)]

    def read(self, segment):
        start, stop = segment
        for lo in range(start, stop, 65536):
            part = self.table.slice(lo, min(lo + 65536, stop) - lo)
            yield Chunk({name: part.column(name) for name in part.schema.names}, "table", lo)


class ArrowStreamSource(Source):
    """A pyarrow RecordBatchReader: streamed once in the calling process, never held whole."""

    parallel_safe = False
    resumable = False

    def __init__(self, reader: Any):
        self.reader = reader
        self.description = "arrow record batch stream"

    def info(self):
        from ...format.arrow_types import schema_from_arrow

        return SourceInfo(schema=schema_from_arrow(self.reader.schema))

    def segments(self):
        return ["all"]

    def read(self, segment):
        first = 0
        for batch in self.reader:
            yield Chunk({name: batch.column(name) for name in batch.schema.names}, "stream", first)
            first += batch.num_rows
