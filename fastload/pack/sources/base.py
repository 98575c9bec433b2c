"""What every pack source provides: deterministic work units, read as column chunks.

A source splits its input into *segments* (picklable descriptions such as "file X, row group 3"),
listed in a fixed order, so that ``fastload pack --workers N`` can read them in parallel and still
write byte-identical shards whatever N is. Reading a segment yields :class:`Chunk` objects (rows as
columns) and :class:`BadRow` markers for rows that cannot be read; the pack driver alone decides
whether a bad row stops the pack or is skipped and counted (``on_error``).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from ...errors import SourceError
from ...format.schema import Schema
from .files import InputFiles


def sorted_paths(paths: str | os.PathLike | Sequence[str | os.PathLike], what: str) -> list[str]:
    """One path or many, as sorted strings, so a pack never depends on how the list was made."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out = sorted(os.fspath(p) for p in paths)
    if not out:
        raise SourceError(f"no {what} to read")
    return out


def describe_files(kind: str, paths: Sequence[str], detail: str = "") -> str:
    """A source's description as users name it: ``Parquet: data/a.parquet (+11 more files)``."""
    more = f"+{len(paths) - 1} more files" if len(paths) > 1 else ""
    notes = ", ".join(filter(None, [more, detail]))
    return f"{kind}: {paths[0]}" + (f" ({notes})" if notes else "")


@dataclass
class Chunk:
    """Consecutive rows of one place of the source, held as columns of equal length.

    A column is a NumPy array whose first dimension is the row (``(n,)`` for scalars,
    ``(n, *shape)`` for fixed-shape arrays), a pyarrow Array/ChunkedArray, or a Python list of
    values (int, float, bool, str, bytes, NumPy arrays, or JSON-able objects).
    """

    columns: dict[str, Any]
    origin: str  # the file, member or object named in error messages
    first_row: int = 0  # number of row 0 within ``origin``, in ``row_label`` units
    row_label: str = "row"  # "row", "line", "member", "index"

    def __len__(self) -> int:
        for col in self.columns.values():
            return len(col)
        return 0

    def where(self, i: int) -> str:
        """Human name of row ``i`` of this chunk, e.g. ``data.jsonl line 17``."""
        return f"{self.origin} {self.row_label} {self.first_row + i}"


@dataclass
class BadRow:
    """A row the source could not read (unreadable file, invalid JSON line, truncated tar...)."""

    origin: str
    reason: str
    row: int | None = None
    row_label: str = "row"

    def where(self) -> str:
        return self.origin if self.row is None else f"{self.origin} {self.row_label} {self.row}"


@dataclass
class SourceInfo:
    """What a source knows before reading: an optional schema and manifest metadata."""

    schema: Schema | None = None  # None: inferred from the first chunk
    metadata: dict[str, Any] = field(default_factory=dict)  # e.g. {"label_map": {...}}
    bytes_hint: int | None = None  # total input bytes (the progress bar sums segment_bytes instead)


class Source(ABC):
    """A readable input of ``fastload.pack``: subclasses read one kind of input."""

    #: short description for the report and errors, e.g. "Parquet: data/a.parquet (+11 more files)"
    description: str = ""

    @abstractmethod
    def segments(self) -> Sequence[Any]:
        """Picklable work units in a fixed order; together they cover the whole input once."""

    @abstractmethod
    def read(self, segment: Any) -> Iterator[Chunk | BadRow]:
        """Yield the rows of one segment in order, as chunks (ideally thousands of rows each)."""

    def info(self) -> SourceInfo:
        """Schema and metadata known up front (default: schema inferred, no metadata)."""
        return SourceInfo()

    def segment_bytes(self, segment: Any) -> int | None:
        """Input bytes of a segment, when known (for progress in MB/s)."""
        return None

    #: False when segments can only be read in the calling process (e.g. a Python generator)
    parallel_safe: bool = True

    _files: InputFiles | None = None

    @property
    def files(self) -> InputFiles:
        """How this source opens its input files (local paths, or URLs with storage options)."""
        return self._files if self._files is not None else InputFiles()

    def use_files(self, files: InputFiles) -> "Source":
        self._files = files
        return self
