"""Another source with some of its columns renamed (``fastload pack --rename OLD=NEW``)."""

from __future__ import annotations

from typing import Any, Iterator, Sequence

from ...errors import SchemaError
from ...format.schema import format_name
from .base import BadRow, Chunk, Source, SourceInfo


class RenamedSource(Source):
    """``inner``'s rows with the columns in ``mapping`` (old name -> new name) renamed.

    Everything else (segments, parallelism, resume, the input files) is the inner source's;
    the description names the renames, so a resumed pack checks them too.
    """

    def __init__(self, inner: Source, mapping: dict[str, str]):
        self.inner = inner
        self.mapping = dict(mapping)
        renames = ", ".join(f"{format_name(a)}={format_name(b)}" for a, b in self.mapping.items())
        self.description = f"{inner.description}, renamed {renames}"
        self.parallel_safe = inner.parallel_safe
        self.resumable = getattr(inner, "resumable", True)
        self.mp_context = getattr(inner, "mp_context", None)
        self.paths = getattr(inner, "paths", None)

    def info(self) -> SourceInfo:
        info = self.inner.info()
        if info.schema is not None:
            info.schema = info.schema.renamed(self.mapping)
        return info

    def segments(self) -> Sequence[Any]:
        return self.inner.segments()

    def segment_bytes(self, segment: Any) -> int | None:
        return self.inner.segment_bytes(segment)

    def read(self, segment: Any) -> Iterator[Chunk | BadRow]:
        for item in self.inner.read(segment):
            if isinstance(item, Chunk):
                unknown = sorted(set(self.mapping) - set(item.columns))
                if unknown:
                    raise SchemaError(f"--rename names unknown fields {unknown}; the source has "
                                      f"{list(item.columns)}")
                item = Chunk({self.mapping.get(k, k): v for k, v in item.columns.items()},
                             item.origin, item.first_row, item.row_label)
            yield item
