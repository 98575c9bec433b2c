"""Encode one source segment into blocks: the unit of work of a pack worker.

This is also the one place where ``on_error`` is applied to bad rows, whether the source reported
them (unreadable file, invalid line) or they failed to fit the schema.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..errors import SourceError
from ..format.block import BlockBuilder, EncodedBlock, SpilledBlock
from ..format.columns import convert_columns, filter_rows
from ..format.schema import Schema
from .clean import stage
from .clean.options import CleanPlan
from .clean.report import CleanTally
from .clean.rows import Places, take_rows
from .image_options import ImageOptions
from .sources.base import BadRow, Chunk, Source

MAX_SKIP_EXAMPLES = 20


@dataclass(frozen=True)
class EncodeJob:
    """Everything a worker needs to encode one segment (picklable)."""

    source: Source
    segment: Any
    index: int
    schema: Schema
    block_size: int
    codec: int
    level: int
    on_error: str
    spill: str | None = None  # a pack worker writes the encoded blocks here (see encode_segment)
    image_options: ImageOptions | None = None  # re-encode image fields (pack --max-side/--image-format)
    clean: CleanPlan | None = None  # drop invalid, filtered and duplicate records (pack --dedup ...)
    # set by pack.clean.ordered: the rows of the segment as clean_segment left them, and whether
    # each one's hash is a first occurrence (decided in the writing process, in segment order)
    pieces: str | None = None
    first: np.ndarray | None = None
    replay: bool = False  # only count what cleaning drops (a resumed pack's finished segments)


@dataclass
class SegmentResult:
    index: int
    blocks: list[EncodedBlock] | list[SpilledBlock] | Iterator[EncodedBlock]  # iterator: stream_segment
    rows: int = 0
    skipped: int = 0
    skip_examples: list[str] = field(default_factory=list)
    in_bytes: int | None = None
    clean: CleanTally = field(default_factory=CleanTally)  # what cleaning dropped
    hashes: np.ndarray | None = None  # clean_segment: the dedup hash of each row left, in order


@dataclass
class Piece:
    """Converted rows of one chunk after the chunk-local cleaning, before the dedup decision."""

    conv: Any
    n: int
    places: Places
    keep: np.ndarray | None = None  # the rows that passed validation and filters (None: all)
    hashes: np.ndarray | None = None  # dedup: the hash of each kept row


def encode_segment(job: EncodeJob) -> SegmentResult:
    """Read the segment, convert and validate rows, and cut them into encoded blocks.

    With ``job.spill`` (pack workers), the blocks' bytes go to that file and the result holds
    only :class:`SpilledBlock` entries: pickling every block back through the pool's pipe made 2
    workers slower than 1 (the parent waited 1.09 s of 2.1 s for 205 MB of tokens).
    """
    result = stream_segment(job)
    if job.spill is None:
        result.blocks = list(result.blocks)
        return result
    try:
        result.blocks = _write_spill(job.spill, result.blocks)
    except BaseException:
        Path(job.spill).unlink(missing_ok=True)
        raise
    return result


def _write_spill(path: str, blocks: Iterator[EncodedBlock]) -> list[SpilledBlock]:
    """Write each block's stored bytes to a new file at ``path``, back to back."""
    spilled = []
    pos = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        for b in blocks:
            view = memoryview(b.stored).cast("B")
            done = 0
            while done < len(view):
                done += os.write(fd, view[done:])
            spilled.append(SpilledBlock(path, pos, len(view), b.raw_size, b.n_records, b.codec, b.checksum,
                                        b.col_offsets))
            pos += len(view)
    finally:
        os.close(fd)
    return spilled


def stream_segment(job: EncodeJob, decide: Callable[[np.ndarray], np.ndarray] | None = None) -> SegmentResult:
    """Like :func:`encode_segment`, but ``blocks`` is an iterator that encodes blocks as it is read.

    For the writing process itself: a segment can be a whole generator or record stream, which
    is then written as it is read instead of being held in memory. The counts in the result are
    complete once ``blocks`` is exhausted. ``decide`` (dedup) answers, for a batch of hashes in
    source order, which ones occur for the first time (``SeenHashes.first``).
    """
    result = SegmentResult(job.index, [], in_bytes=job.source.segment_bytes(job.segment))
    result.blocks = _encode_blocks(job, result, decide)
    return result


def _encode_blocks(job: EncodeJob, result: SegmentResult,
                   decide: Callable[[np.ndarray], np.ndarray] | None) -> Iterator[EncodedBlock]:
    builder = BlockBuilder(job.schema, job.block_size, job.codec, job.level)
    done = 0  # rows of job.first answered so far
    for piece in (read_pieces(job.pieces) if job.pieces is not None else cleaned_pieces(job, result)):
        conv, n, keep = piece.conv, piece.n, piece.keep
        if piece.hashes is not None:
            if job.first is not None:
                first = job.first[done : done + len(piece.hashes)]
                done += len(piece.hashes)
            else:
                first = decide(piece.hashes)
            keep = stage.drop_duplicates(job.clean, conv, n, piece.places, keep, first, result.clean)
        if keep is not None and not keep.all():
            conv, n = take_rows(conv, keep), int(keep.sum())
        result.rows += n
        if not job.replay:
            yield from builder.add(conv, n)
    if not job.replay:
        yield from builder.flush()


def cleaned_pieces(job: EncodeJob, result: SegmentResult) -> Iterator[Piece]:
    """The segment's rows, converted, with the chunk-local cleaning decided (and dedup hashes)."""
    plan = job.clean
    for conv, n, places in _converted(job, result):
        if plan is None:
            yield Piece(conv, n, places)
            continue
        keep = stage.after_conversion(plan, conv, n, places, result.clean)
        hashes = stage.hashes_of(plan, conv, n)[keep] if plan.dedup is not None else None
        yield Piece(conv, n, places, keep, hashes)


def read_pieces(path: str) -> Iterator[Piece]:
    """The pieces :func:`clean_segment` wrote to ``path``, in order."""
    with open(path, "rb") as f:
        while True:
            try:
                yield pickle.load(f)
            except EOFError:
                return


def clean_segment(job: EncodeJob) -> SegmentResult:
    """The first half of a deduplicating pack worker's job: clean the segment's rows and write
    them to ``job.spill`` (hashes in the result), for :func:`encode_segment` to cut into blocks
    once the writing process has decided which rows are first occurrences."""
    result = SegmentResult(job.index, [], in_bytes=job.source.segment_bytes(job.segment))
    hashes = []
    try:
        with open(job.spill, "xb") as f:
            for piece in cleaned_pieces(job, result):
                pickle.dump(piece, f, protocol=pickle.HIGHEST_PROTOCOL)
                hashes.append(piece.hashes)
    except BaseException:
        Path(job.spill).unlink(missing_ok=True)
        raise
    result.hashes = np.concatenate(hashes) if hashes else np.zeros((0, 2), np.uint64)
    return result


def _converted(job: EncodeJob, result: SegmentResult) -> Iterator[tuple[Any, int, Places]]:
    """Each chunk's good rows, converted, with where they came from (bad rows skipped or raised;
    the rows cleaning's ``image``/``utf8`` rules reject, counted and dropped before conversion)."""
    for item in job.source.read(job.segment):
        if isinstance(item, BadRow):
            _skip_or_raise(job, result, item.where(), item.reason)
            continue
        n = len(item)
        places = Places.of_chunk(item)
        columns, unexpected = _align_to_schema(job.schema, item)
        if job.clean is not None and job.clean.rules_before:
            kept = len(places.rows)
            columns, n, places = stage.before_conversion(job.clean, columns, n, places, result.clean)
            if n < kept and unexpected:  # renumber those rows among the ones left
                position = {int(r): i for i, r in enumerate(places.rows)}
                unexpected = {position[r]: why for r, why in unexpected.items() if r in position}
        bad_images: dict[int, str] = {}
        if job.image_options is not None:
            columns, bad_images = job.image_options.apply(job.schema, columns, n)
        conv, bad = convert_columns(job.schema, columns, n)
        bad = {**bad, **bad_images, **unexpected}
        if bad:
            for row in sorted(bad):
                _skip_or_raise(job, result, places.where(row), bad[row])
            keep = np.ones(n, dtype=bool)
            keep[sorted(bad)] = False
            columns = filter_rows(columns, keep)
            places = places.kept(keep)
            n = int(keep.sum())
            conv, _ = convert_columns(job.schema, columns, n)
        if n:
            yield conv, n, places


def _align_to_schema(schema: Schema, chunk: Chunk) -> tuple[dict[str, Any], dict[int, str]]:
    """The chunk's columns for the schema's fields, and ``{row: reason}`` for rows holding a value
    in a field the schema lacks (a JSON key first seen after the rows the schema was inferred
    from): those rows are bad, the others are not. A field absent from the chunk reads as nulls."""
    unexpected: dict[int, str] = {}
    for name in chunk.columns:
        if name not in schema:
            reason = (f"unexpected field {name!r}: the schema ({schema.describe()}) has no such field; "
                      "pass a full schema that has it to keep such rows")
            for row in _rows_with_values(chunk.columns[name]):
                unexpected.setdefault(int(row), reason)
    columns = {name: col for name, col in chunk.columns.items() if name in schema}
    missing = [f.name for f in schema if f.name not in columns]
    if missing:
        columns.update({name: [None] * len(chunk) for name in missing})
    return columns, unexpected


def _rows_with_values(col: Any) -> Any:
    """Rows of a column that hold a value (not null)."""
    if isinstance(col, np.ndarray):
        return range(len(col))
    if isinstance(col, list):
        return [i for i, v in enumerate(col) if v is not None]
    return np.flatnonzero(col.is_valid().to_numpy(zero_copy_only=False))


def _skip_or_raise(job: EncodeJob, result: SegmentResult, where: str, reason: str) -> None:
    if job.on_error == "raise":
        raise SourceError(f"{where}: {reason} (use on_error='skip' / --on-error skip to skip such rows)")
    result.skipped += 1
    if len(result.skip_examples) < MAX_SKIP_EXAMPLES:
        result.skip_examples.append(f"{where}: {reason}")
