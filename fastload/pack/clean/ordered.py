"""Parallel dedup with the output of one process: workers clean, this process decides, workers encode.

A block can be cut only once its rows are known, and whether a row survives dedup depends on
every row before it in source order. So a deduplicating pack with workers runs each segment in
two jobs: :func:`~fastload.pack.encode.clean_segment` (read, convert, validate, filter, hash;
the rows go to a hidden file in the output directory), then, once this process has answered the
segment's hashes with :class:`~.dedup.SeenHashes` in segment order,
:func:`~fastload.pack.encode.encode_segment` cuts the rows left into blocks. The blocks, and so
the shards, are the same bytes as with one worker, where the writing process does both halves
itself. Both kinds of job share one pool; later segments are cleaned while earlier ones encode.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Iterator

from ...format.shard_writer import temp_path_for
from ..encode import EncodeJob, SegmentResult, clean_segment, encode_segment
from .dedup import SeenHashes


def encode_in_order(jobs: Iterable[EncodeJob], pool: Executor, workers: int, seen: SeenHashes,
                    root: Path, spills: list[Path]) -> Iterator[SegmentResult]:
    """Segment results in order, deduplicated across segments; every file made is listed in
    ``spills`` (the caller deletes what is left of them)."""
    it = iter(jobs)
    cleaning: deque[tuple[EncodeJob, Path, Future]] = deque()
    encoding: deque[tuple[SegmentResult, Path, Future]] = deque()
    while True:
        while len(cleaning) + len(encoding) < 2 * workers:  # as many jobs ahead as _encode_all keeps
            job = next(it, None)
            if job is None:
                break
            rows = temp_path_for(root / f"segment-{job.index:06d}.rows")
            spills.append(rows)
            cleaning.append((job, rows, pool.submit(clean_segment, replace(job, spill=str(rows)))))
        if not cleaning and not encoding:
            return
        if cleaning and (cleaning[0][2].done() or not encoding):
            job, rows, future = cleaning.popleft()
            cleaned = future.result()
            first = seen.first(cleaned.hashes)  # in segment order: the global decision
            cleaned.hashes = None
            blocks = temp_path_for(root / f"segment-{job.index:06d}.blocks")
            spills.append(blocks)
            encode = replace(job, pieces=str(rows), first=first, spill=str(blocks))
            encoding.append((cleaned, rows, pool.submit(encode_segment, encode)))
            continue
        if encoding and (encoding[0][2].done() or not cleaning):
            cleaned, rows, future = encoding.popleft()
            encoded = future.result()
            rows.unlink(missing_ok=True)  # read by now; its blocks file goes once they are in shards
            yield _joined(cleaned, encoded)
            continue
        wait([cleaning[0][2], encoding[0][2]], return_when=FIRST_COMPLETED)


def _joined(cleaned: SegmentResult, encoded: SegmentResult) -> SegmentResult:
    """One segment's result from its two jobs: counts of bad rows and chunk-local cleaning from
    the first, blocks and dedup drops from the second."""
    encoded.skipped, encoded.skip_examples, encoded.in_bytes = cleaned.skipped, cleaned.skip_examples, cleaned.in_bytes
    tally = cleaned.clean
    tally.merge(encoded.clean)
    encoded.clean = tally
    return encoded
