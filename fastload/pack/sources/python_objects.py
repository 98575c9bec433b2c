"""Sources over Python objects: iterables of dicts, map-style torch Datasets, Arrow tables, DataFrames."""

from __future__ import annotations

import uuid
import weakref
from itertools import chain, islice
from typing import Any, Iterable, Iterator

from ...errors import SourceError
from ...format.arrow_types import table_from_pandas
from .base import BadRow, Chunk, Source, SourceInfo

CHUNK_ROWS = 4096
TABLE_SEGMENT_BYTES = 64 * 2**20


# Sources that forked pack workers read: a worker inherits this registry when it is forked, so a
# job names its source by token instead of pickling it (a torch Dataset may hold lambdas or open
# files; a table would otherwise be copied into every job, once per segment).
_FORK_SHARED: "weakref.WeakValueDictionary[str, Source]" = weakref.WeakValueDictionary()


def _inherited_source(token: str) -> Source:
    try:
        return _FORK_SHARED[token]
    except KeyError:
        raise SourceError("a source over a Python object can only be read by the process that made it "
                          "and by pack workers forked from it") from None


class _ForkShared(Source):
    """A source whose object reaches pack workers through fork, never through pickle."""

    mp_context = "fork"

    def _share(self) -> None:
        self._token = uuid.uuid4().hex
        _FORK_SHARED[self._token] = self

    def __reduce__(self):
        return _inherited_source, (self._token,)


def _first_keys(rows: Iterable[Any]) -> list[str] | None:
    return next((list(r) for r in rows if isinstance(r, dict)), None)


def _rows_to_chunk(rows: list[Any], origin: str, first: int, label: str,
                   errors: dict[int, str] | None = None,
                   keys: list[str] | None = None) -> Iterator[Chunk | BadRow]:
    """Regroup dict rows as columns, one chunk per run of good rows so row numbers stay exact.

    Rows that are not dicts, whose keys differ from ``keys`` (the source's first record's; by
    default the first good row's), or listed in ``errors`` (position -> reason) become bad rows.
    """
    errors = dict(errors or {})
    keyset = keys
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

    The first records are read ahead (the schema is inferred from them, as for every source without
    one of its own) and then replayed, so a generator is consumed exactly once.
    """

    parallel_safe = False
    resumable = False

    def __init__(self, records: Iterable[dict[str, Any]], description: str = "python iterable"):
        self._iter = iter(records)
        self._head: list[Any] = list(islice(self._iter, CHUNK_ROWS))
        self._keys = _first_keys(self._head)
        self.description = description

    def segments(self):
        return ["all"]

    def read(self, segment):
        if self._iter is None:
            raise SourceError(f"{self.description} was already read; an iterable is packed once")
        rows, first = self._head, 0
        if rows and self._keys is None:
            raise SourceError(f"{self.description}: records must be dicts of field -> value, "
                              f"got {type(rows[0]).__name__}")
        while rows:
            yield from _rows_to_chunk(rows, self.description, first, "record", keys=self._keys)
            first += len(rows)
            rows = list(islice(self._iter, CHUNK_ROWS))
        self._iter, self._head = None, []


class TorchMapSource(_ForkShared):
    """A map-style torch Dataset (``__len__`` + ``__getitem__`` returning dicts), split in index ranges.

    Tensor values are handed on as NumPy arrays (0-d ones as NumPy scalars). The dataset reaches
    pack workers by fork, as it often holds unpicklable state (open files, lambdas).
    """

    resumable = False

    def __init__(self, dataset: Any, segment_rows: int = 16384):
        self.dataset = dataset
        self.n = len(dataset)
        self.segment_rows = segment_rows
        self.description = f"torch dataset {type(dataset).__name__} ({self.n} items)"
        self._keys: list[str] | None = None
        self._keys_searched = False
        self._share()

    def _item(self, i: int) -> Any:
        return _untensor(self.dataset[i])

    def _reference_keys(self) -> list[str] | None:
        """Field names of the first item that reads as a dict; the same in every worker."""
        if not self._keys_searched:
            self._keys_searched = True
            for i in range(min(self.n, CHUNK_ROWS)):
                try:
                    item = self._item(i)
                except Exception:  # reported with its index when its segment is read
                    continue
                if isinstance(item, dict):
                    self._keys = list(item)
                    break
        return self._keys

    def segments(self):
        return [(s, min(s + self.segment_rows, self.n)) for s in range(0, self.n, self.segment_rows)]

    def read(self, segment):
        start, stop = segment
        for lo in range(start, stop, CHUNK_ROWS):
            rows, errors = [], {}
            for i in range(lo, min(lo + CHUNK_ROWS, stop)):
                try:
                    rows.append(self._item(i))
                except Exception as exc:  # a user dataset may raise anything for one item
                    rows.append(None)
                    errors[i - lo] = f"{type(exc).__name__}: {exc}"
            yield from _rows_to_chunk(rows, self.description, lo, "index", errors, self._reference_keys())


def _untensor(item: Any) -> Any:
    """A dict item with its torch tensors as NumPy values (inference and conversion know NumPy)."""
    if not isinstance(item, dict):
        return item
    import torch

    out = dict(item)
    for name, value in item.items():
        if isinstance(value, torch.Tensor):
            try:
                arr = value.detach().cpu().numpy()
            except TypeError:  # e.g. bfloat16, which NumPy has no type for: reported as a bad value
                continue
            out[name] = arr[()] if arr.ndim == 0 else arr
    return out


class ArrowTableSource(_ForkShared):
    """A pyarrow Table (or a pandas DataFrame, converted once) split into ~64 MB row slices.

    The table reaches pack workers by fork: shared memory pages, never a pickled copy per job.
    """

    resumable = False

    def __init__(self, table: Any):
        import pyarrow as pa

        if type(table).__module__.startswith("pandas"):
            table = table_from_pandas(table)
        elif isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        self.table = table
        n = table.num_rows
        per_row = max(1, table.nbytes // max(n, 1))
        self.segment_rows = max(1, TABLE_SEGMENT_BYTES // per_row)
        self.description = f"arrow table ({n} rows, {len(table.schema)} columns)"
        self._share()

    def info(self):
        from ...format.arrow_types import schema_from_arrow

        return SourceInfo(schema=schema_from_arrow(self.table.schema, self.table), bytes_hint=self.table.nbytes)

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
        # the first batch is read ahead as the sample the schema is inferred from, then replayed
        self._head = next(iter(reader), None)

    def info(self):
        from ...format.arrow_types import schema_from_arrow

        return SourceInfo(schema=schema_from_arrow(self.reader.schema, self._head))

    def segments(self):
        return ["all"]

    def read(self, segment):
        first = 0
        batches = self.reader if self._head is None else chain([self._head], self.reader)
        self._head = None
        for batch in batches:
            yield Chunk({name: batch.column(name) for name in batch.schema.names}, "stream", first)
            first += batch.num_rows

