"""Read Parquet and Arrow IPC (Feather v2) files, streamed by row group or record batch.

A segment is a run of consecutive row groups (Parquet) or record batches (IPC) of one file,
about 64 MB uncompressed, so a file is never loaded whole and tiny row groups do not turn into
thousands of segments. IPC *stream* files (what Hugging Face ``datasets`` writes as ``.arrow``)
are read the same way; reaching their batch ``k`` costs reading the batch headers before it.
"""

from __future__ import annotations

import os
from contextlib import closing, nullcontext
from dataclasses import dataclass
from typing import Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from ...errors import SchemaError, SourceError, StorageError
from ...format.arrow_types import needs_sample, schema_from_arrow
from ...format.schema import Schema
from .base import BadRow, Chunk, Source, SourceInfo, describe_files, sorted_paths
from .files import InputFiles, is_url, local_path

PARQUET_SUFFIXES = (".parquet", ".pq")
IPC_SUFFIXES = (".arrow", ".ipc", ".feather")
SEGMENT_BYTES = 64 << 20
_BATCH_ROWS = 65536  # Parquet read batch: bounds the memory of one chunk in a large row group


@dataclass(frozen=True)
class ArrowSegment:
    """Units ``[start, stop)`` (row groups or record batches) of one file."""

    path: str
    fmt: str  # "parquet", "ipc-file" or "ipc-stream"
    start: int
    stop: int
    first_row: int  # file row number of the first row of unit ``start``
    nbytes: int  # this segment's share of the file's size on disk


@dataclass(frozen=True)
class _FileScan:
    fmt: str
    schema: pa.Schema
    unit_rows: tuple[int, ...]
    unit_bytes: tuple[int, ...]


class ArrowFileSource(Source):
    """Parquet (``.parquet``) and Arrow IPC / Feather v2 (``.arrow``, ``.ipc``, ``.feather``) files.

    Files are read in sorted path order, so the pack does not depend on how the list was made.
    Columns come out as pyarrow arrays, dictionary-encoded ones decoded to their values.
    """

    def __init__(self, paths: str | os.PathLike | Sequence[str | os.PathLike], *,
                 segment_size: int = SEGMENT_BYTES) -> None:
        self.paths = sorted_paths(paths, "Parquet or Arrow files")
        self.segment_size = segment_size
        self.description = describe_files(file_kinds(self.paths), self.paths)
        self._scans: dict[str, _FileScan] | None = None

    def _scan(self) -> dict[str, _FileScan]:
        if self._scans is None:
            scans = {p: _scan_file(p, self.files) for p in self.paths}
            _check_same_schema(scans)
            self._scans = scans
        return self._scans

    def __getstate__(self) -> dict:
        # Workers get self-contained segments; shipping the scan with every job would cost more.
        return {**self.__dict__, "_scans": None}

    def info(self) -> SourceInfo:
        scans = self._scan()
        first = scans[self.paths[0]].schema
        sample = None
        if needs_sample(first):  # a numeric list column with null elements stays nested
            segments = [s for s in self.segments() if s.path == self.paths[0]][:1]
            with closing(_read_batches(segments[0], self.files)) if segments else nullcontext(iter(())) as batches:
                sample = next(batches, None)
        schema = _fastload_schema(self.paths[0], first, sample)
        return SourceInfo(schema=schema, bytes_hint=sum(self.files.size(p) for p in self.paths))

    def segments(self) -> list[ArrowSegment]:
        out: list[ArrowSegment] = []
        for path, scan in self._scan().items():
            # A segment's bytes are its share of the file on disk (by its units' in-memory
            # sizes), so the progress bar counts up to exactly the input size it shows.
            on_disk, whole = self.files.size(path), max(1, sum(scan.unit_bytes))
            start, row, nbytes, first_row, before, done = 0, 0, 0, 0, 0, 0
            for i, (rows, size) in enumerate(zip(scan.unit_rows, scan.unit_bytes)):
                nbytes += size
                row += rows
                last = i == len(scan.unit_rows) - 1
                if nbytes >= self.segment_size or last:
                    done += nbytes
                    share = on_disk if last else on_disk * done // whole
                    out.append(ArrowSegment(path, scan.fmt, start, i + 1, first_row, share - before))
                    start, nbytes, first_row, before = i + 1, 0, row, share
        return out

    def segment_bytes(self, segment: ArrowSegment) -> int:
        return segment.nbytes

    def read(self, segment: ArrowSegment) -> Iterator[Chunk | BadRow]:
        row = segment.first_row
        for batch in _read_batches(segment, self.files):
            if batch.num_rows:
                names = batch.schema.names
                columns = {name: _plain(col) for name, col in zip(names, batch.columns)}
                yield Chunk(columns, origin=segment.path, first_row=row)
            row += batch.num_rows


def file_kinds(paths: list[str]) -> str:
    """The file kinds as users name them: ``Parquet``, ``Feather``, ``Arrow IPC`` (joined when mixed)."""
    names = {".parquet": "Parquet", ".pq": "Parquet", ".feather": "Feather"}
    kinds = dict.fromkeys(names.get(os.path.splitext(p)[1].lower(), "Arrow IPC") for p in paths)
    return " and ".join(kinds)


def _open_arrow(path: str, files: InputFiles):
    """A local file memory-mapped (no copy), a remote one as a buffered stream of ranged reads."""
    if is_url(path):
        return pa.PythonFile(files.open(path), mode="r")
    return pa.memory_map(local_path(path))


def _parquet(path: str, files: InputFiles) -> pq.ParquetFile:
    return pq.ParquetFile(files.open(path) if is_url(path) else local_path(path))


def _scan_file(path: str, files: InputFiles) -> _FileScan:
    """Schema and per-unit rows and bytes of one file, from its footer or batch headers."""
    try:
        if path.lower().endswith(PARQUET_SUFFIXES):
            with _parquet(path, files) as pf:
                groups = [pf.metadata.row_group(i) for i in range(pf.metadata.num_row_groups)]
                return _FileScan(
                    "parquet", pf.schema_arrow,
                    tuple(g.num_rows for g in groups), tuple(g.total_byte_size for g in groups),
                )
        # Memory-mapped, so this reads batch headers without copying data; a compressed file
        # (Feather's default is LZ4) is decompressed once more here, at GB/s.
        with _open_arrow(path, files) as source:
            try:
                reader = pa.ipc.open_file(source)
                fmt, schema = "ipc-file", reader.schema
                batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
            except pa.ArrowInvalid:
                source.seek(0)
                reader = pa.ipc.open_stream(source)
                fmt, schema, batches = "ipc-stream", reader.schema, iter(reader)
            # One batch alive at a time: a compressed file is never held decompressed whole.
            sizes = [(b.num_rows, b.nbytes) for b in batches]
            return _FileScan(fmt, schema, tuple(r for r, _ in sizes), tuple(n for _, n in sizes))
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file") from None
    except StorageError:
        raise  # the store failed after its retries: not a fault of the file's bytes
    except (pa.ArrowException, OSError) as exc:
        kind = "Parquet" if path.lower().endswith(PARQUET_SUFFIXES) else "Arrow IPC / Feather v2"
        raise SourceError(f"{path}: cannot read as {kind} file: {exc}") from None


def _read_batches(seg: ArrowSegment, files: InputFiles) -> Iterator[pa.RecordBatch]:
    try:
        if seg.fmt == "parquet":
            with _parquet(seg.path, files) as pf:
                yield from pf.iter_batches(
                    batch_size=_BATCH_ROWS, row_groups=range(seg.start, seg.stop)
                )
            return
        with _open_arrow(seg.path, files) as source:
            if seg.fmt == "ipc-file":
                reader = pa.ipc.open_file(source)
                for i in range(seg.start, seg.stop):
                    yield reader.get_batch(i)
                return
            for i, batch in enumerate(pa.ipc.open_stream(source)):
                if i >= seg.stop:
                    return
                if i >= seg.start:
                    yield batch
    except StorageError:
        raise
    except (pa.ArrowException, OSError) as exc:
        # The footer read fine at scan time, so the data pages themselves are damaged.
        what = "row groups" if seg.fmt == "parquet" else "record batches"
        raise SourceError(
            f"{seg.path}: cannot read {what} {seg.start}..{seg.stop - 1}: {exc}"
        ) from None


def _plain(col: pa.Array) -> pa.Array:
    """Dictionary-encoded columns decoded, so a chunk's columns match the schema's types."""
    return col.dictionary_decode() if pa.types.is_dictionary(col.type) else col


def _fastload_schema(path: str, schema: pa.Schema, sample: pa.RecordBatch | None = None) -> Schema:
    """The file's schema; a column no field can hold is a schema problem (SchemaError, exit 6)."""
    try:
        return schema_from_arrow(schema, sample)
    except (SchemaError, SourceError) as exc:
        raise SchemaError(f"{path}: {exc}") from None


def _check_same_schema(scans: dict[str, _FileScan]) -> None:
    """Every file must hold the same columns with the same fastload types, in any order.

    Comparing fastload fields rather than Arrow schemas lets harmless Arrow differences pass
    (``string`` vs ``large_string``, list item names, nullability, metadata).
    """
    first_path = next(iter(scans))
    first = {f.name: f for f in _fastload_schema(first_path, scans[first_path].schema)}
    for path, scan in scans.items():
        other = {f.name: f for f in _fastload_schema(path, scan.schema)}
        if other == first:
            continue
        missing = sorted(set(first) - set(other))
        extra = sorted(set(other) - set(first))
        changed = [f"{n}: {first[n].spec} -> {other[n].spec}"
                   for n in first if n in other and first[n] != other[n]]
        details = "; ".join(filter(None, [
            missing and f"missing columns {missing}", extra and f"extra columns {extra}",
            changed and f"types differ ({', '.join(changed)})",
        ]))
        raise SchemaError(f"{path}: schema differs from {first_path}: {details}")
